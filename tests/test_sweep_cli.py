"""The sweep command's refusals before any run starts."""

from __future__ import annotations

import os

import pytest

from audiosweep.sweep.cli import main
from tests.conftest import TINY_SWEEP_RUN, run_sweep_cli, write_sweep


@pytest.fixture
def no_credentials(tmp_path, monkeypatch) -> dict:
    """No W&B API key: no WANDB_* variable, an empty netrc. Returns that environment for subprocesses."""
    (tmp_path / "netrc").write_text("")
    for key in [k for k in os.environ if k.startswith("WANDB_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    return dict(os.environ)


def test_a_local_sweep_online_without_credentials_is_refused_before_any_run(tmp_path, synth, no_credentials):
    sweep = write_sweep(tmp_path / "s.yaml", {**TINY_SWEEP_RUN, **synth, "trial_num": {"values": [1, 2]}}, name="s")
    out = run_sweep_cli("run", str(sweep), "--wandb-mode", "online", "--results_dir", str(tmp_path / "results"),
                        env=no_credentials)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    line, = out.stderr.strip().splitlines()
    assert "--wandb_mode online: no W&B API key" in line and "wandb login" in line and "WANDB_API_KEY" in line
    assert "--wandb_mode offline" in line
    assert not (tmp_path / "results").exists()  # no run, no log, no lock


def test_a_dry_run_online_needs_no_credentials(tmp_path, synth, no_credentials, capsys):
    sweep = write_sweep(tmp_path / "s.yaml", {**TINY_SWEEP_RUN, **synth}, name="s")
    assert main(["run", str(sweep), "--wandb_mode", "online", "--dry_run", "--results_dir",
                 str(tmp_path / "results")]) == 0
    assert "--wandb_mode=online" in capsys.readouterr().out


def test_agents_without_credentials_are_refused_before_any_agent_starts(tmp_path, no_credentials, capsys):
    assert main(["agents", "me/proj/abc123", "--gpus", "0,", "--log_dir", str(tmp_path / "logs")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: agents: no W&B API key") and "wandb login" in err and "--wandb_mode offline" in err
    assert not (tmp_path / "logs").exists()


def test_agents_with_an_api_key_pass_that_check(tmp_path, no_credentials, monkeypatch, capsys):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setattr("audiosweep.sweep.agents.run_agents", lambda agents: len(agents))  # start nothing
    assert main(["agents", "me/proj/abc123", "--gpus", "0,1", "--log_dir", str(tmp_path / "logs")]) == 2
    assert "no W&B API key" not in capsys.readouterr().err
