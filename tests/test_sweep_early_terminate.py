"""early_terminate hyperband on grid and random sweeps run locally: the pruner's rungs in the sweep's journal, a
pruned run recorded ``stopped`` with its history, and a resumed sweep that does not run it again."""

from __future__ import annotations

import optuna
import pytest

from audiosweep.sweep.cli import main
from audiosweep.sweep.early_terminate import metric_at
from tests.conftest import TINY_SWEEP_RUN, read_records, run_sweep_cli, write_sweep

HYPERBAND = {"type": "hyperband", "min_iter": 1, "eta": 2}


def test_metric_at_reads_the_metric_after_each_epoch():
    rows = [{"epoch": 1, "accuracy": 0.5, "valid_loss": 1.0}, {"epoch": 2, "accuracy": 0.25, "valid_loss": None}]
    assert metric_at(rows, "best_accuracy") == 0.5 and metric_at(rows, "accuracy") == 0.25
    assert metric_at(rows, "valid_loss") is None and metric_at([], "accuracy") is None


def test_a_dry_run_says_how_early_terminate_runs_and_writes_nothing(tmp_path, capsys):
    path = write_sweep(tmp_path / "g.yaml", {"trial_num": {"values": [1, 2]}}, early_terminate=HYPERBAND)
    assert main(["run", str(path), "--results-dir", str(tmp_path / "res"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "early_terminate: SuccessiveHalvingPruner on accuracy per epoch" in out
    assert "W&B's controller only" not in out and not (tmp_path / "res" / "g" / "optuna.journal").exists()


@pytest.mark.slow
def test_a_grid_sweep_stops_the_run_that_learns_nothing_and_resumes_without_it(tmp_path, synth):
    path = write_sweep(tmp_path / "hb.yaml", {**TINY_SWEEP_RUN, **synth, "n_epochs": 4,
                                               "learning_rate": {"values": [2e-2, 1e-8]}},
                       early_terminate=HYPERBAND)
    args = ("run", str(path), "--results-dir", str(tmp_path / "res"), "--wandb-mode", "disabled")
    out = run_sweep_cli(*args)
    assert out.returncode == 0, out.stdout + out.stderr
    folder = tmp_path / "res" / "hb"
    good, bad = sorted(read_records(folder), key=lambda r: -r["config"]["learning_rate"])
    assert good["status"] == "finished" and len(good["history"]) == 4
    assert bad["status"] == "stopped" and bad["error"] is None and bad["stopped_by"] == "audiosweep.sweep", bad
    assert list(bad) == [*list(good), "stopped_by"]  # marked in place: train.py's fields in their order
    epoch = int(bad["reason"].removeprefix("pruned at epoch "))
    # the pruner's SIGTERM may land after one more epoch ended: the record keeps every epoch the run completed
    ran = [h["epoch"] for h in bad["history"]]
    assert epoch < 4 and len(ran) < 4 and ran == list(range(1, len(ran) + 1)) and len(ran) >= epoch
    assert f"stopped  pruned at epoch {epoch}" in out.stdout and "1 stopped early now" in out.stdout

    study = optuna.load_study(study_name="hb:hyperband", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(folder / "optuna.journal"))))
    trials = study.get_trials()
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED]
    assert [t.user_attrs["config_id"] for t in trials] == [good["config_id"], bad["config_id"]]
    assert trials[0].value == good["summary"]["accuracy"] and len(trials[1].intermediate_values) == epoch

    again = run_sweep_cli(*args)  # a stopped run is done: resuming runs nothing
    assert again.returncode == 0 and "2 finished before" in again.stdout and "0 to run" in again.stdout
    assert len(read_records(folder)) == 2


def test_unreadable_progress_lines_are_skipped_with_one_warning_each(tmp_path, capsys):
    import json
    import time
    from types import SimpleNamespace

    from audiosweep.sweep.early_terminate import Hyperband
    from audiosweep.sweep.spec import Run

    rows = [{"epoch": e, "accuracy": a, "launch": "L1"} for e, a in ((1, 0.5), (2, 0.25), (3, 0.75))]
    lines = [json.dumps(rows[0]).encode(), b"\xc3\x28 torn", json.dumps(rows[1]).encode(), b'["not", "a row"]',
             b'{"epoch": "3", "accuracy": 0.1}', b'{"epoch": 3, "accuracy": "high"}', json.dumps(rows[2]).encode()]
    (tmp_path / "20260101-000000-aaaaaa.progress.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
    trial = study.ask()
    job = SimpleNamespace(run=Run({}, "cid"), started=time.time() - 5, launch="L1")
    hb = Hyperband(tmp_path, "best_accuracy", lambda run: trial)
    for _ in range(2):  # read twice: warned once
        assert hb.watch([job]) == []
    assert study.trials[0].intermediate_values == {1: 0.5, 2: 0.5, 3: 0.75}
    err = capsys.readouterr().err
    assert [int(w.split(", line ")[1].split(":")[0]) for w in err.splitlines()] == [2, 4, 5, 6]
    assert all("unreadable progress line, skipped" in w for w in err.splitlines())
