"""Pruned runs beside finished ones (analysis.pruned): compared at the last epoch every run completed."""

from __future__ import annotations

import pandas as pd
import pytest

from analysis import importance, pruned, runs
from tests.analysis_records import write_bayes_sweep, write_run

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_pruned_runs_are_compared_at_the_last_common_epoch(tmp_path):
    df = runs.load_runs(str(write_bayes_sweep(tmp_path / "bayes", n=6, pruned=4, epochs=6, rung=2)))
    compared = pruned.comparable(df)
    assert (compared.epoch, compared.pruned, len(compared.runs)) == (2, 4, 6)
    expected = [h[1]["accuracy"] for h in compared.runs.history]  # epoch 2's, for the finished runs too
    assert compared.runs.accuracy.tolist() == pytest.approx(expected)
    assert compared.note() == ("4 pruned runs included: every run's metric after epoch 2, the last epoch all 6 runs "
                               "completed")
    best = pruned.comparable(df, "best_accuracy").runs.best_accuracy  # the best up to epoch 2: epoch 2's here
    assert best.tolist() == pytest.approx(expected)
    assert pruned.comparable(df, "test_accuracy").epoch is None  # pruned runs never reach the test clips


def test_without_pruned_runs_the_final_metric_of_finished_runs(tmp_path):
    write_run(tmp_path, "a", 0.8)
    write_run(tmp_path, "b", None, status="failed")
    df = runs.load_runs(str(tmp_path))
    compared = pruned.comparable(df)
    assert compared.epoch is None and compared.note() == ""
    pd.testing.assert_frame_equal(compared.runs, runs.finished(df))


def test_importance_accepts_a_bayes_sweep_mostly_pruned(tmp_path, capsys):
    folder = write_bayes_sweep(tmp_path / "bayes", n=6, pruned=4, epochs=6, rung=2)
    assert len(runs.finished(runs.load_runs(str(folder)))) == 2  # too few on their own
    assert importance.main([str(folder)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("4 pruned runs included: every run's metric after epoch 2, the last epoch all 6 runs")
    assert out.splitlines()[4].split()[0] == "mix_up"  # the key that drives the accuracy, first
    assert "left out" not in err  # the pruned runs count
    assert importance.main([str(folder), "--format", "csv"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("key,") and "4 pruned runs included" in err  # the CSV stays clean
