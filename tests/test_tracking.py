"""W&B glue: mode resolution and sweep values from wandb.config folded into the Config."""

from __future__ import annotations

import pytest
import wandb

from audiosweep import tracking
from audiosweep.config import merge
from audiosweep.errors import ConfigError
from audiosweep.results import config_id


class FakeConfig(dict):
    def update(self, d, allow_val_change=False):
        super().update(d)


class FakeRun:
    """What wandb.init returns under an agent: the sweep's values override the config passed in."""

    def __init__(self, config, sweep_values):
        self.config = FakeConfig({**config, **sweep_values})
        self.id = "sweeprun1"


@pytest.fixture
def fake_init(monkeypatch):
    calls = []

    def init(sweep_values):
        def _init(**kwargs):
            calls.append(kwargs)
            return FakeRun(kwargs["config"], sweep_values)
        monkeypatch.setattr(wandb, "init", _init)
    return init, calls


def test_sweep_values_override_cli_config(fake_init, tmp_path):
    init, calls = fake_init
    init({"n_mels": 128, "hop_length_ms": 10.0})
    cfg = merge([{"wandb_mode": "offline", "results_dir": str(tmp_path)}])
    run, swept = tracking.start(cfg, "r1")
    assert calls[0]["mode"] == "offline" and calls[0]["config"]["n_mels"] == 224
    assert swept.n_mels == 128 and swept.hop_length is None and swept.hop_samples == 441
    assert run.config["hop_length"] is None  # the W&B config is brought in line with the resolved Config


def test_wandb_config_holds_effective_values(fake_init, tmp_path):
    init, calls = fake_init
    init({"pretrained": True, "freeze_epochs": 2})  # a sweep asking simple_cnn for what it cannot do
    cfg = merge([{"wandb_mode": "offline", "results_dir": str(tmp_path), "arch": "simple_cnn"}])
    run, swept = tracking.start(cfg, "r1")
    assert calls[0]["config"]["pretrained"] is False
    assert (run.config["pretrained"], run.config["freeze_epochs"]) == (False, 0)


def test_the_reports_keys_set_by_a_sweep_are_applied(fake_init, tmp_path):
    """A sweep file of the report's whose command passes no arguments: its keys reach us through wandb.config."""
    init, _ = fake_init
    init({"pitch_shift": True, "trial": 4, "mix_up": True})
    run, swept = tracking.start(merge([{"wandb_mode": "offline", "results_dir": str(tmp_path)}]), "r1")
    assert (swept.pitch_p, swept.trial_num, swept.mix_up) == (1.0, 4, 0.4)
    assert (run.config["pitch_p"], run.config["trial_num"]) == (1.0, 4)


def test_invalid_sweep_values_are_rejected(fake_init, tmp_path):
    init, _ = fake_init
    init({"fold": 7})
    with pytest.raises(ConfigError, match="fold"):
        tracking.start(merge([{"wandb_mode": "offline", "results_dir": str(tmp_path)}]), "r1")


def test_mode_resolution(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    assert tracking.resolve_mode(merge([])) == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert tracking.resolve_mode(merge([])) == "online"
    assert tracking.resolve_mode(merge([{"wandb_mode": "disabled"}])) == "disabled"
    monkeypatch.delenv("WANDB_API_KEY")
    (tmp_path / "netrc").write_text("machine api.wandb.ai login user password " + "y" * 40 + "\n")
    assert tracking.resolve_mode(merge([])) == "online"
    assert tracking.start(merge([{"wandb_mode": "disabled"}]), "r1")[0] is None


LOCAL_RUN_ENV = {"WANDB_RUN_GROUP": "hop", "WANDB_NAME": "hop_length=160 trial_num=3",
                 "WANDB_TAGS": "hop,audiosweep-local", "AUDIOSWEEP_SWEEP": "hop"}


def test_a_local_sweep_run_gets_its_group_name_tags_and_labels(fake_init, tmp_path, monkeypatch):
    init, calls = fake_init
    init({})
    cfg = merge([{"wandb_mode": "offline", "results_dir": str(tmp_path)}])
    tracking.start(cfg, "r1")  # a run of its own: no group, no sweep name
    assert (calls[0]["group"], calls[0]["name"], calls[0]["tags"]) == (None, None, None)
    assert "sweep_name" not in calls[0]["config"] and calls[0]["config"]["config_id"] == config_id(cfg.effective_dict())
    for k, v in LOCAL_RUN_ENV.items():
        monkeypatch.setenv(k, v)
    tracking.start(cfg, "r2")
    assert (calls[1]["group"], calls[1]["name"], calls[1]["tags"]) == ("hop", "hop_length=160 trial_num=3",
                                                                       ["hop", "audiosweep-local"])
    assert calls[1]["config"]["sweep_name"] == "hop"


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_an_offline_run_started_by_the_runner_is_grouped_in_wandb(tmp_path, synth_root, cache_dir, monkeypatch):
    """A real offline W&B run: what wandb.init made of the runner's variables, and the run folder it wrote."""
    import train
    from tests.conftest import TINY, read_records

    for k, v in LOCAL_RUN_ENV.items():
        monkeypatch.setenv(k, v)
    real, seen = wandb.init, []

    def spy(**kwargs):
        run = real(**kwargs)
        seen.append((run.group, run.name, tuple(run.tags), dict(run.config)))
        return run

    monkeypatch.setattr(wandb, "init", spy)
    out = tmp_path / "res"
    assert train.main(["--data_dir", str(synth_root), "--allow_missing", "true", "--esc10", "true", "--cache_dir",
                       str(cache_dir), "--results_dir", str(out), *TINY, "--n_epochs", "1",
                       "--wandb_mode", "offline"]) == 0
    (rec,) = read_records(out)
    group, name, tags, config = seen[0]
    assert (group, name, tags) == ("hop", "hop_length=160 trial_num=3", ("hop", "audiosweep-local"))
    assert config["sweep_name"] == "hop" and config["config_id"] == config_id(rec["config"])
    assert list((out / "wandb").glob(f"offline-run-*-{rec['run_id']}/run-*.wandb"))
