"""analysis.reproduce: ours against published runs per group, on record folders and on W&B CSV exports: the
statistics recomputed with scipy, verdicts, groups on one side, held-fixed settings that differ, the figure and
the report's section."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis import report, reproduce, runs
from tests.analysis_records import is_png, write_run

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

# Five trials per group, in another order in each group (trial_num pairs no two groups by a constant difference).
TRIALS = [0.800, 0.820, 0.840, 0.810, 0.830]
MEANS = {10: 0.70, 20: 0.75, 40: 0.78, 80: 0.80}
EPOCHS = (10, 20, 80)


def accuracies(n_epochs: int, shift: float = 0.0) -> list[float]:
    i = list(MEANS).index(n_epochs)
    return [round(a - 0.82 + MEANS[n_epochs] + shift, 4) for a in TRIALS[i:] + TRIALS[:i]]


def write_side(folder: Path, shifts: dict[int, float] | None = None, epochs=EPOCHS, **config) -> Path:
    """Record folder: 5 runs per n_epochs of ``epochs`` (values of :func:`accuracies`, moved by ``shifts``)."""
    for n_epochs in epochs:
        for trial, acc in enumerate(accuracies(n_epochs, (shifts or {}).get(n_epochs, 0.0)), 1):
            write_run(folder, f"e{n_epochs}-t{trial}", acc, n_epochs=n_epochs, trial_num=trial, **config)
    return folder


def run_csv(capsys, ours, published, *args) -> tuple[pd.DataFrame, str]:
    assert reproduce.main([str(ours), "--published", str(published), "--by", "n_epochs", "--format", "csv",
                           *args]) == 0
    out, err = capsys.readouterr()
    return pd.read_csv(io.StringIO(out)).set_index("n_epochs"), err


def test_identical_distributions_are_consistent(tmp_path, capsys):
    table, err = run_csv(capsys, write_side(tmp_path / "ours"), write_side(tmp_path / "published"))
    assert table.index.tolist() == [10, 20, 80] and set(table.verdict) == {"consistent"}
    assert "Holm correction over 3 groups tested" in err and "warning" not in err
    for n_epochs, row in table.iterrows():
        acc = accuracies(n_epochs)
        low, high = stats.t.interval(0.95, 4, loc=np.mean(acc), scale=stats.sem(acc))
        assert row.ours_n == row.published_n == 5 and row.ours_mean == pytest.approx(np.mean(acc))
        assert [row.published_ci95_low, row.published_ci95_high] == pytest.approx([low, high])
        assert row["diff"] == pytest.approx(0, abs=1e-12) and row.p == pytest.approx(1) and row.p_holm == 1
        assert row.ours_median_time_s == row.published_median_time_s == 3.5  # write_run's wall_time_s


def test_a_group_shifted_by_5_points_differs_alone(tmp_path, capsys):
    ours, published = write_side(tmp_path / "ours"), write_side(tmp_path / "published", {80: 0.05})
    table, _ = run_csv(capsys, ours, published)
    assert table.verdict.to_dict() == {10: "consistent", 20: "consistent", 80: "differs"}
    a, b = accuracies(80), accuracies(80, 0.05)
    res = stats.ttest_ind(a, b, equal_var=False)
    ci = res.confidence_interval(0.95)
    row = table.loc[80]
    assert row["diff"] == pytest.approx(-0.05) and [row.diff_ci95_low, row.diff_ci95_high] == pytest.approx(
        [ci.low, ci.high])
    assert row.p == pytest.approx(res.pvalue) and row.p_holm == pytest.approx(3 * res.pvalue)  # the smallest of 3

    assert reproduce.main([str(ours), "--published", str(published), "--by", "n_epochs"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("accuracy: ours against the published runs per group of n_epochs")
    line = next(line for line in out.splitlines() if line.lstrip().startswith("80"))
    assert "80.00 [78.04, 81.96]" in line and "85.00 [83.04, 86.96]" in line and "-5.00 [" in line
    assert "differs" in line and "3.5 s" in line


def test_groups_on_one_side_are_listed_not_tested(tmp_path, capsys):
    ours = write_side(tmp_path / "ours", epochs=(10, 20, 40))
    published = write_side(tmp_path / "published", epochs=(10, 20, 80))
    table, err = run_csv(capsys, ours, published)
    assert table.verdict.to_dict() == {10: "consistent", 20: "consistent", 40: "ours only", 80: "published only"}
    assert table.p_holm.isna().tolist() == [False, False, True, True]
    assert table.loc[40, "published_n"] == 0 and np.isnan(table.loc[80, "ours_mean"])
    assert "Holm correction over 2 groups tested" in err
    assert "groups found on one side only, not tested: n_epochs=40 (ours only), n_epochs=80 (published only)" in err


def test_held_fixed_settings_that_differ_are_warned(tmp_path, capsys):
    ours = write_side(tmp_path / "ours", batch_size=64)
    published = write_side(tmp_path / "published", epochs=(10, 20), batch_size=64)
    write_side(published, epochs=(80,), batch_size=32, learning_rate=0.001)
    table, err = run_csv(capsys, ours, published)
    assert set(table.verdict) == {"consistent"}  # same accuracies: the warning is the finding
    assert ("warning: held-fixed settings differ: n_epochs=80: batch_size 64 (ours) vs 32 (published); "
            "learning_rate 0.01 (ours) vs 0.001 (published)") in err
    assert "n_epochs=10" not in err and "n_epochs=20" not in err


def test_keys_one_side_lacks_are_no_difference(tmp_path):
    """A W&B export holds a few of our keys: one without a value is not compared, nor one whose effect hangs on
    it (gain_db on gain_p)."""
    ours = runs.load_runs(str(write_side(tmp_path / "ours", gain_p=0.5, gain_db=3.0)))
    published = runs.load_runs(str(write_side(tmp_path / "published", batch_size=32)))
    fixed = [ours.n_epochs == 80, published.n_epochs == 80]
    assert reproduce.fixed_differences(ours[fixed[0]], published[fixed[1]], ["n_epochs"]) == [
        "batch_size 64 (ours) vs 32 (published)", "gain_p 0.5 (ours) vs 0 (published)"]
    ours.loc[ours.n_epochs == 80, "gain_db"] = 4.0  # gain_p agrees: now gain_db counts
    assert reproduce.fixed_differences(ours[fixed[0]], published[fixed[1]].assign(gain_p=0.5), ["n_epochs"]) == [
        "batch_size 64 (ours) vs 32 (published)", "gain_db 4 (ours) vs 6 (published)"]
    published[["batch_size", "gain_p", "gain_db"]] = None
    assert reproduce.fixed_differences(ours[fixed[0]], published[fixed[1]], ["n_epochs"]) == []


def test_figure_and_table_files(tmp_path, capsys):
    ours, published = write_side(tmp_path / "ours"), write_side(tmp_path / "published", {80: 0.05})
    out = tmp_path / "out"
    assert reproduce.main([str(ours), "--published", str(published), "--by", "n_epochs", "--out", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()[-3:]
    assert printed == [str(out / f"reproduce.{ext}") for ext in ("png", "svg", "csv")]
    assert is_png(out / "reproduce.png") and (out / "reproduce.svg").stat().st_size > 0
    assert pd.read_csv(out / "reproduce.csv").verdict.tolist() == ["consistent", "consistent", "differs"]


def test_report_gets_a_section_with_published(tmp_path, capsys):
    ours, published = write_side(tmp_path / "ours"), write_side(tmp_path / "published", {80: 0.05})
    assert report.main([str(ours), "--published", str(published), "--by", "n_epochs", "--out",
                        str(tmp_path / "r")]) == 0
    text = Path(capsys.readouterr().out.strip()).read_text()
    section = text[text.index(f"## Reproduction: against {published}"):]
    assert "Holm correction over 3 groups tested" in section and "| differs" in section
    assert "![ours vs the published runs](reproduce.png)" in section and is_png(tmp_path / "r" / "reproduce.png")

    assert report.main([str(ours), "--by", "n_epochs", "--out", str(tmp_path / "plain")]) == 0
    assert "Reproduction" not in Path(capsys.readouterr().out.strip()).read_text()


def test_refused_input_exits_2(tmp_path, capsys):
    ours = write_side(tmp_path / "ours")
    assert reproduce.main([str(ours), "--published", str(tmp_path / "nothing"), "--by", "n_epochs"]) == 2
    assert "analysis.reproduce: --published: " in capsys.readouterr().err
    assert reproduce.main([str(ours), "--published", str(ours), "--by", "n_epoch"]) == 2
    assert "n_epochs" in capsys.readouterr().err  # the suggestion for the typo


def write_export(path: Path, shifts: dict[int, float] | None = None) -> Path:
    """A W&B runs-table export as the report's (columns Name, ID, Runtime, Sweep, then summary and config): 5 runs
    per n_epochs at hop_length 308."""
    with path.open("w", newline="") as f:
        w = csv.writer(f, quoting=csv.QUOTE_ALL)
        w.writerow(["Name", "ID", "Runtime", "Sweep", "accuracy", "epoch", "n_epochs", "batch_size", "hop_length",
                    "normalize", "arch"])
        for n_epochs in EPOCHS:
            for trial, acc in enumerate(accuracies(n_epochs, (shifts or {}).get(n_epochs, 0.0)), 1):
                w.writerow([f"run-sweep-{n_epochs}-{trial}", f"id{n_epochs}x{trial}", 30 * n_epochs, "hopsweep", acc,
                            n_epochs + 1, n_epochs, 64, 308, "true", "resnet18"])
    return path


def test_two_csv_exports_with_one_group_shifted(tmp_path, capsys):
    """The issue's acceptance test: on two W&B exports where one group was shifted by 5 points, that group only
    differs."""
    ours, published = write_export(tmp_path / "ours.csv"), write_export(tmp_path / "published.csv", {20: -0.05})
    table, err = run_csv(capsys, ours, published, "--sweep", "hopsweep", "--published-sweep", "hopsweep")
    assert table.verdict.to_dict() == {10: "consistent", 20: "differs", 80: "consistent"}
    assert table.loc[20, "diff"] == pytest.approx(0.05) and table.published_median_time_s.tolist() == [300, 600,
                                                                                                        2400]
    assert "held-fixed" not in err
    assert reproduce.main([str(ours), "--published", str(published), "--by", "n_epochs"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.lstrip().startswith("20"))
    assert "+5.00 [" in line and line.split()[-5:] == ["differs", "10.0", "min", "10.0", "min"]  # Runtime 600 s


def test_our_test_accuracy_is_compared_with_the_published_number_where_we_have_one(tmp_path, capsys):
    ours, published = tmp_path / "ours", write_side(tmp_path / "published", epochs=(10,))
    for trial, acc in enumerate(accuracies(10), 1):  # validation 10 points above the test accuracy
        write_run(ours, f"e10-t{trial}", acc + 0.1, n_epochs=10, trial_num=trial, test_fold=trial, test_acc=acc)
    table, err = run_csv(capsys, ours, published)
    assert "test_accuracy (ours) against accuracy (published)" in err
    row = table.loc[10]
    assert (row.ours_metric, row.published_metric) == ("test_accuracy", "accuracy")
    assert row.ours_mean == pytest.approx(np.mean(accuracies(10))) and row["diff"] == pytest.approx(0, abs=1e-12)
    table, err = run_csv(capsys, ours, published, "--metric", "best_accuracy")  # asked for: as asked
    assert table.loc[10].ours_metric == "best_accuracy" and "(ours) against" not in err
