"""The cost of a sweep before it runs: device-hours from the epoch times of earlier records, per file and in total,
a calibration run offered when there are none, and the runner's first ETA from the same model."""

from __future__ import annotations

import platform
import shlex
from pathlib import Path

from audiosweep.config import Config
from audiosweep.results import Record, RunFiles, write_json_atomic
from audiosweep.sweep.cli import main, prior_seconds
from audiosweep.sweep.cost import CostModel, device_label, this_device
from audiosweep.sweep.runner import eta_seconds
from audiosweep.sweep.spec import expand, load_sweep
from tests.conftest import write_sweep

HERE = f"cpu on {platform.node()}"


def write_record(folder: Path, run_id: str, times: list[float], wall: float, host: str | None = None,
                 **config) -> None:
    """A finished record of ``times`` (seconds of each epoch) and ``wall`` seconds in all, trained on this CPU."""
    cfg = {**Config().to_dict(), "pretrained": False, **config}
    history = [{"epoch": i + 1, "train_loss": 1.0, "valid_loss": 1.0, "accuracy": 0.5, "time_s": t}
               for i, t in enumerate(times)]
    rec = Record.finished(cfg, run_id, history, evaluated_epoch=len(times), accuracy=0.5, tta_accuracy=None,
                          norm_stats=None, pretrained_weights=False, n_train=80, n_valid=20, feature_s=0.5,
                          wall_time_s=wall, env={"device": "cpu", "hostname": host or platform.node()},
                          classes=["a", "b"], files={})
    write_json_atomic(RunFiles.of(folder, run_id).record, rec.to_dict())


def test_a_run_costs_the_median_epoch_times_its_epochs_plus_the_median_rest(tmp_path):
    results = tmp_path / "results"
    write_record(results / "a", "r1", [5.0, 2.0, 2.0], wall=19.0, arch="simple_cnn")  # 10 s besides the epochs
    write_record(results / "b", "r2", [3.0, 2.5], wall=11.5, arch="simple_cnn")  # 6 s besides
    write_record(results / "b", "r3", [1.0, 1.0], wall=4.0, arch="simple_cnn", n_mels=64)  # another input shape
    write_record(results / "b", "r4", [9.0, 9.0], wall=20.0, arch="simple_cnn", host="elsewhere")  # another CPU
    model = CostModel.from_records(results)
    cfg = Config(arch="simple_cnn", pretrained=False, n_epochs=30).effective_dict()
    assert model.run_seconds(cfg, HERE) == 8.0 + 30 * 2.5  # median of 5, 2, 2, 3, 2.5 and of 10, 6
    assert model.run_seconds({**cfg, "n_mels": 64}, HERE) == 2.0 + 30 * 1.0
    assert model.run_seconds({**cfg, "arch": "resnet18"}, HERE) is None
    assert model.run_seconds(cfg, "cpu on elsewhere") == 2.0 + 30 * 9.0
    pretrained = Config(arch="simple_cnn", n_epochs=30, freeze_epochs=2).effective_dict()
    assert pretrained["freeze_epochs"] == 0  # no pretrained weights: effective configs hold no frozen epochs
    assert device_label({"device": "cuda:0", "gpu": "NVIDIA H100"}) == "NVIDIA H100" and device_label({}) is None
    assert this_device("cpu") == HERE


def test_check_estimate_prints_device_hours_per_file_and_in_all(tmp_path, capsys):
    results = tmp_path / "results"
    write_record(results / "old", "r1", [2.0, 2.0], wall=10.0, arch="simple_cnn")  # 2 s an epoch, 6 s besides
    one = write_sweep(tmp_path / "one.yaml", {"arch": "simple_cnn", "n_epochs": {"values": [100, 200]}})
    two = write_sweep(tmp_path / "two.yaml", {"arch": "simple_cnn", "n_epochs": 897})
    assert main(["check", str(one), str(two), "--estimate", "--results-dir", str(results), "--no-weights"]) == 0
    out = capsys.readouterr().out
    # one: (6 + 200) + (6 + 400) s = 0.17 h; two: 6 + 1794 s = 0.50 h; in all 2418 s = 0.67 h
    assert f"estimate: 2 of 2 runs, 0.17 device-hours on {HERE}" in out
    assert f"estimate: 1 of 1 runs, 0.50 device-hours on {HERE}" in out
    assert "simple_cnn [1, 224, 716]: 2.00 s an epoch, 6.0 s a run besides (medians of 2 epochs of 1 records)" in out
    assert out.rstrip().endswith("3 runs in the bounded ones; estimated 0.67 device-hours for those with "
                                 "matching records")


def test_without_records_check_estimate_says_so_and_offers_a_calibration_run(tmp_path, capsys):
    sweep = write_sweep(tmp_path / "s.yaml", {"arch": {"values": ["resnet18", "simple_cnn"]}, "n_epochs": 40})
    assert main(["check", str(sweep), "--estimate", "--results-dir", str(tmp_path / "none"), "--no-weights"]) == 0
    out = capsys.readouterr().out
    assert f"estimate: 0 of 2 runs, 0.00 device-hours on {HERE}; 2 runs without an estimate" in out
    assert f"no records of resnet18 [1, 224, 716], simple_cnn [1, 224, 716] on {HERE} under {tmp_path / 'none'}" \
        in out
    command = shlex.split(out.split("calibration run of the first such run: ")[1].splitlines()[0])
    assert command[-6:] == ["--arch=resnet18", "--n_epochs=40", "--n_epochs=2", "--freeze_epochs=0",
                            f"--results_dir={tmp_path / 'none' / 'calibration'}", "--wandb_mode=disabled"]
    assert command[-7] == "train.py"  # the first grid point's command, cut to 2 epochs


def test_the_runners_first_eta_comes_from_the_model_then_from_ended_runs(tmp_path):
    results = tmp_path / "results"
    write_record(results / "old", "r1", [2.0, 2.0], wall=10.0, arch="simple_cnn")
    plan = expand(load_sweep(write_sweep(tmp_path / "s.yaml", {"arch": "simple_cnn",
                                                               "n_epochs": {"values": [10, 30]}})))
    prior = prior_seconds(plan, results, None)
    assert prior == ((6 + 20) + (6 + 60)) / 2
    assert prior_seconds(plan, tmp_path / "nothing", None) is None
    assert eta_seconds([], [10.0], pending=1, workers=1, prior=prior) == 46 + 36  # before a run ended
    assert eta_seconds([100.0], [10.0], pending=1, workers=1, prior=prior) == 100 + 90  # measured durations win
    assert eta_seconds([], [10.0], pending=1, workers=1) is None  # no model: as before
