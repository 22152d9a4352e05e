"""W&B glue: mode resolution and sweep values from wandb.config folded into the Config."""

from __future__ import annotations

import pytest
import wandb

from audiosweep import tracking
from audiosweep.config import ConfigError, merge


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
