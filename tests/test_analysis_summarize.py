"""Tables (analysis.summarize) checked against hand-computed numbers and intervals recomputed with scipy, the
honesty warnings (analysis.checks), the per-run export, and what the commands share (analysis.cli): options, --by,
one-line errors."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from analysis import cli, plots, report, runs, summarize
from analysis.runs import finished
from audiosweep.results import METRIC_GOALS, SUMMARY_METRICS, write_json_atomic
from tests.analysis_records import write_final_study, write_run, write_study

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def cells(line: str) -> list[str]:
    """The cells of a line of the text table (columns are two spaces apart or more)."""
    return re.split(r"\s{2,}", line.strip())


def test_group_stats_match_hand_computed(tmp_path):
    study = write_study(tmp_path)
    stats = summarize.group_stats(runs.load_runs(str(study)), ["n_mels"])
    assert list(stats.n_mels) == [128, 64] and list(stats.n) == [3, 2]  # best first, failed run left out
    assert stats.accuracy_mean.tolist() == pytest.approx([0.82, 0.72])
    assert stats.accuracy_std.tolist() == pytest.approx([0.02, 0.0282842712])
    assert stats.accuracy_min.tolist() == pytest.approx([0.80, 0.70])
    assert stats.accuracy_max.tolist() == pytest.approx([0.84, 0.74])
    assert stats.valid_loss_mean.tolist() == pytest.approx([0.6, 0.9])
    assert stats.valid_loss_std[0] == pytest.approx(0.1)


def test_summarize_cli_formats_and_warnings(tmp_path, capsys):
    study = write_study(tmp_path)
    assert summarize.main([str(study), "--by", "n_mels"]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0] == "95 % CI: Student t over runs; n = 2 to 3 runs per group" and lines[1] == ""
    assert cells(lines[2]) == ["n_mels", "n", "accuracy % (mean ± std [95 % CI])", "min %", "max %",
                               "valid_loss (mean ± std [95 % CI])"]
    assert cells(lines[4]) == ["128", "3", "82.00 ± 2.00 [77.03, 86.97]", "80.00", "84.00",
                               "0.6000 ± 0.1000 [0.3516, 0.8484]"]
    assert cells(lines[5])[:3] == ["64", "2", "72.00 ± 2.83"]  # n < 3: no interval
    assert "1 of 6 runs left out of the statistics (failed: 1" in err and "r64-3" in err
    assert "unequal group sizes: 3 runs: n_mels=128; 2 runs: n_mels=64" in err

    assert summarize.main([str(study), "--by", "n_mels", "--format", "csv"]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert table.n_mels.tolist() == [128, 64]
    assert table.accuracy_std.tolist() == pytest.approx([0.02, 0.0282842712])

    assert summarize.main([str(study), "--by", "n_mels", "--format", "markdown"]) == 0
    md = capsys.readouterr().out.splitlines()
    assert md[0].startswith("95 % CI: Student t over runs") and md[1] == ""
    assert md[2].startswith("| n_mels |") and set(md[3]) <= set("|-: ") and md[4].startswith("|    128 | 3 |")


def test_folds_table_matches_hand_computed(tmp_path, capsys):
    final_study = write_final_study(tmp_path)
    table = summarize.fold_table(runs.load_runs(str(final_study))).set_index("fold")
    assert table.loc["1", ["n", "mean", "std"]].tolist() == pytest.approx([2, 0.85, 0.0707106781])
    assert table.loc["2", ["n", "mean", "std"]].tolist() == pytest.approx([3, 0.74, 0.04])
    assert table.loc["all runs", ["n", "mean", "std"]].tolist() == pytest.approx([5, 0.784, 0.0753657747])
    assert table.loc["mean of fold means", ["n", "mean", "std"]].tolist() == pytest.approx([2, 0.795, 0.0777817459])

    assert summarize.main([str(final_study), "--folds"]) == 0
    out, err = capsys.readouterr()
    rows = {cells(line)[0]: cells(line)[1:3] for line in out.splitlines()[4:]}
    assert rows["1"] == ["2", "85.00 ± 7.07"] and rows["2"] == ["3", "74.00 ± 4.00 [64.06, 83.94]"]
    assert rows["all runs"] == ["5", "78.40 ± 7.54 [69.04, 87.76]"]
    assert rows["mean of fold means"] == ["2 folds", "79.50 ± 7.78"]
    assert "2 folds" in rows["mean of fold means"]
    assert "unequal group sizes: 3 runs: fold=2; 2 runs: fold=1" in err


def test_bad_arguments(tmp_path, capsys):
    study = write_study(tmp_path)
    assert summarize.main([str(study), "--by", "n_mel"]) == 2
    assert "did you mean n_mels?" in capsys.readouterr().err
    assert summarize.main([str(study), "--tags", "a"]) == 2
    assert "wandb:ENTITY/PROJECT" in capsys.readouterr().err
    assert summarize.main([str(study), "--filters", "{nope"]) == 2
    assert capsys.readouterr().err.startswith("analysis.summarize: --filters: not valid JSON")
    with pytest.raises(SystemExit):
        summarize.main([str(study), "--format", "html"])
    with pytest.raises(SystemExit):
        summarize.main([str(study), "--metric", "valid_loss"])


def test_commands_share_options_and_report_errors_in_one_line(tmp_path, capsys):
    assert cli.ACCURACY_METRICS == [*(m for m, goal in METRIC_GOALS.items() if goal == "maximize"), "test_accuracy"]
    assert cli.ACCURACY_METRICS == ["accuracy", "best_accuracy", "test_accuracy"]
    assert "test_accuracy" not in METRIC_GOALS  # analysed, never a metric a sweep selects on
    for module in (summarize, plots, report):
        parser = module.build_parser()
        options = {a.dest: a for a in parser._actions}
        assert {"source", "sweep", "tags", "filters", "skip_bad", "metric", "by"} <= options.keys()
        assert options["metric"].choices == cli.ACCURACY_METRICS and options["metric"].default == "accuracy"
        assert module.main([str(tmp_path / "nope"), "--by", "n_mels"]) == 2
        err = capsys.readouterr().err
        assert err == f"{module.__name__}: {tmp_path / 'nope'}: no such folder (give a folder of result records, " \
                      "a W&B export FILE.csv, or wandb:ENTITY/PROJECT)\n"


def test_parse_keys():
    assert cli.parse_keys(None) == [] and cli.parse_keys(" n_mels, hop_length ,") == ["n_mels", "hop_length"]
    with pytest.raises(runs.SourceError, match="--by: unknown config key 'hop'"):
        cli.parse_keys("n_mels,hop")


def write_folds_study(root: Path, **config) -> Path:
    """Sweep folder ``root/grid``: n_mels 64 and 128, each 5 folds x 5 trials, accuracies spread over 0.70-0.85
    (no two folds alike), valid_loss 2 - 2 * accuracy; ``config`` changes every run."""
    folder = root / "grid"
    for n_mels, bonus in ((64, 0.0), (128, 0.05)):
        for fold in range(1, 6):
            for trial in range(1, 6):
                acc = 0.70 + bonus + 0.01 * ((fold * 7 + trial * 3 + fold * trial) % 11)
                write_run(folder, f"m{n_mels}-f{fold}-t{trial}", acc, 2 - 2 * acc, n_mels=n_mels, fold=fold,
                          trial_num=trial, **config)
    return folder


def scipy_interval(values, ci: str, seed: int) -> tuple[float, float]:
    """The interval recomputed here, another way than the code where scipy offers one."""
    x = np.asarray(values, dtype=float)
    if ci == "t":
        return tuple(scipy.stats.ttest_1samp(x, 0).confidence_interval(0.95))
    res = scipy.stats.bootstrap((x,), np.mean, n_resamples=9999, method="BCa", rng=np.random.default_rng(seed))
    return res.confidence_interval.low, res.confidence_interval.high


def csv_of(argv: list[str], capsys) -> pd.DataFrame:
    assert summarize.main([*argv, "--format", "csv"]) == 0
    return pd.read_csv(io.StringIO(capsys.readouterr().out))


METHODS = [("t", 0, "Student t over {}"), ("bootstrap", 3, "bootstrap over {} (BCa, 9999 resamples, seed 3)")]


@pytest.mark.parametrize(("ci", "seed", "method"), METHODS)
def test_group_intervals_match_scipy(tmp_path, capsys, ci, seed, method):
    study = write_folds_study(tmp_path)
    df = finished(runs.load_runs(str(study)))
    table = csv_of([str(study), "--by", "n_mels", "--ci", ci, "--seed", str(seed)], capsys).set_index("n_mels")
    assert list(table.columns[:4]) == ["n", "accuracy_mean", "accuracy_ci95_low", "accuracy_ci95_high"]
    assert table.columns[-1] == "ci_method" and set(table.ci_method) == {method.format("runs")}
    for n_mels in (64, 128):
        runs_of = df[df.n_mels == n_mels]
        for col in ("accuracy", "valid_loss"):
            low, high = scipy_interval(runs_of[col], ci, seed)
            assert table.loc[n_mels, [f"{col}_ci95_low", f"{col}_ci95_high"]].tolist() == \
                pytest.approx([low, high], rel=1e-12)
            assert low < table.loc[n_mels, f"{col}_mean"] < high
    if ci == "bootstrap":  # the seed is used: another one resamples otherwise
        other = csv_of([str(study), "--by", "n_mels", "--ci", ci, "--seed", "4"], capsys)
        assert other.accuracy_ci95_low.tolist() != table.accuracy_ci95_low.tolist()


@pytest.mark.parametrize(("ci", "seed", "method"), METHODS)
def test_fold_intervals_match_scipy(tmp_path, capsys, ci, seed, method):
    study = write_folds_study(tmp_path)
    df = finished(runs.load_runs(str(study)))
    table = csv_of([str(study), "--folds", "--by", "n_mels", "--ci", ci, "--seed", str(seed)], capsys)
    assert list(table.columns) == ["n_mels", "fold", "n", "mean", "ci95_low", "ci95_high", "std", "min", "max",
                                   "ci_method"]
    assert len(table) == 2 * 7 and table.ci95_low.notna().all()
    for (n_mels, fold), row in table.set_index(["n_mels", "fold"]).iterrows():
        group = df[df.n_mels == n_mels]
        if fold == summarize.FOLD_MEANS:
            # each fold's mean as pandas computes it: BCa on 5 values is sensitive to their last bit
            values = [group[group.fold == k].accuracy.mean() for k in range(1, 6)]
            assert row.n == 5 and row.ci_method == method.format("fold means")
        else:
            values = group.accuracy if fold == summarize.FOLD_ALL else group[group.fold == int(fold)].accuracy
            assert row.ci_method == method.format("runs")
        assert row.n == len(values) and row["mean"] == pytest.approx(np.mean(values), rel=1e-12)
        assert [row.ci95_low, row.ci95_high] == pytest.approx(scipy_interval(values, ci, seed), rel=1e-12)

    assert summarize.main([str(study), "--folds", "--by", "n_mels", "--ci", ci, "--seed", str(seed)]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0] == f"95 % CI: {method.format('runs')}; n = 5 runs per fold, 25 runs per group; mean of fold " \
                       "means: over n = 5 fold means"
    shown = table[table.fold == summarize.FOLD_MEANS].iloc[0]
    expected = f"{shown['mean'] * 100:.2f} ± {shown['std'] * 100:.2f} [{shown.ci95_low * 100:.2f}, " \
               f"{shown.ci95_high * 100:.2f}]"
    assert cells(next(line for line in lines[4:] if summarize.FOLD_MEANS in line))[3] == expected
    assert "no 95 % CI" not in err and "different" not in err


def test_small_groups_get_no_interval_and_a_warning(tmp_path, capsys):
    study = write_study(tmp_path)
    table = csv_of([str(study), "--by", "n_mels"], capsys).set_index("n_mels")
    assert table.loc[64, ["accuracy_ci95_low", "accuracy_ci95_high", "valid_loss_ci95_low"]].isna().all()
    assert table.loc[128, ["accuracy_ci95_low", "accuracy_ci95_high"]].notna().all()
    assert summarize.main([str(study), "--by", "n_mels"]) == 0
    assert "warning: no 95 % CI for n_mels=64 (2 runs): an interval needs at least 3 runs" in capsys.readouterr().err

    final_study = write_final_study(tmp_path)
    table = csv_of([str(final_study), "--folds"], capsys).set_index("fold")
    assert table.loc[["1", summarize.FOLD_MEANS], ["ci95_low", "ci95_high"]].isna().all().all()
    assert table.loc[["2", summarize.FOLD_ALL], ["ci95_low", "ci95_high"]].notna().all().all()
    assert summarize.main([str(final_study), "--folds"]) == 0
    err = capsys.readouterr().err
    assert "no 95 % CI for fold=1 (2 runs): an interval needs at least 3 runs" in err
    assert "no 95 % CI for the mean of fold means of all runs (2 folds): an interval needs at least 3 folds" in err


def test_groups_with_different_epochs_or_datasets_warn(tmp_path, capsys):
    folder = tmp_path / "mixed"
    for trial in range(1, 4):
        write_run(folder, f"a{trial}", 0.8 + trial / 100, n_mels=64, trial_num=trial)
        write_run(folder, f"b{trial}", 0.7 + trial / 100, n_mels=128, trial_num=trial, n_epochs=40, dataset="esc10")
    assert summarize.main([str(folder), "--by", "n_mels"]) == 0
    err = capsys.readouterr().err
    assert "the runs compared ran different numbers of epochs (n_epochs): n_mels=64: 80; n_mels=128: 40; " \
           "compare like with like or add n_epochs to --by" in err
    assert "the runs compared ran different datasets (dataset): n_mels=64: esc50; n_mels=128: esc10" in err
    assert summarize.main([str(folder), "--by", "n_mels,n_epochs,dataset"]) == 0
    assert "the runs compared ran different" not in capsys.readouterr().err  # compared on purpose
    assert summarize.main([str(write_study(tmp_path)), "--by", "n_mels"]) == 0
    assert "the runs compared ran different" not in capsys.readouterr().err


def test_different_n_epochs_warn_once_not_again_for_the_epochs_run(tmp_path, capsys):
    folder = tmp_path / "epochs"
    for trial in range(1, 4):
        write_run(folder, f"a{trial}", 0.8, n_mels=64, trial_num=trial, n_epochs=2)
        b = write_run(folder, f"b{trial}", 0.7, n_mels=128, trial_num=trial, n_epochs=4)
        b["summary"]["epochs"] = 4  # ran its 4 epochs, where the a runs ran 2
        write_json_atomic(folder / f"b{trial}.json", b)
    assert summarize.main([str(folder), "--by", "n_mels"]) == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if "ran different numbers of epochs" in line]
    assert len(warned) == 1 and "(n_epochs): n_mels=64: 2; n_mels=128: 4;" in warned[0]
    for trial in range(1, 4):  # stopped early, with the same n_epochs as the others: epochs run are named
        b = json.loads((folder / f"b{trial}.json").read_text())
        b["summary"]["epochs"], b["config"]["n_epochs"] = 3, 2
        write_json_atomic(folder / f"b{trial}.json", b)
    assert summarize.main([str(folder), "--by", "n_mels"]) == 0
    assert "ran different numbers of epochs run: n_mels=64: 2; n_mels=128: 3;" in capsys.readouterr().err


def test_runs_csv_has_one_row_per_run(tmp_path, capsys):
    study = write_study(tmp_path)
    out = tmp_path / "runs.csv"
    assert summarize.main([str(study), "--by", "n_mels", "--runs-csv", str(out)]) == 0
    assert "82.00 ± 2.00 [77.03, 86.97]" in capsys.readouterr().out  # the table is printed as well
    table = pd.read_csv(out)
    assert list(table.columns) == ["run_id", "sweep", "status", "n_mels", "fold", "test_fold", "trial_num",
                                   *SUMMARY_METRICS]
    assert table.run_id.tolist() == ["r128-1", "r128-2", "r128-3", "r64-1", "r64-2", "r64-3"]
    assert table.status.tolist() == ["finished"] * 5 + ["failed"] and set(table.sweep) == {"nmels"}
    assert table.n_mels.tolist() == [128] * 3 + [64] * 3 and table.trial_num.tolist() == [1, 2, 3] * 2
    assert table.accuracy.tolist()[:5] == pytest.approx([0.80, 0.82, 0.84, 0.70, 0.74])
    assert pd.isna(table.accuracy[5]) and table.valid_loss.tolist()[:3] == pytest.approx([0.5, 0.6, 0.7])


def test_list_valued_knobs_group_runs(tmp_path, capsys):
    schedule = [[0, 2], [30, 4]]
    for i, (views, unfreeze) in enumerate([(["original"], None), (["original", "augmented"], schedule)] * 3):
        write_run(tmp_path, f"r{i}", 0.5 + 0.01 * i, arch="cnn_gpt2", trial_num=i + 1, view_channels=views,
                  unfreeze_schedule=unfreeze)
    assert summarize.main([str(tmp_path), "--by", "unfreeze_schedule,view_channels"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert ["0:2", "30:4", "original/augmented", "3"] in [r[:4] for r in rows]
    assert ["none", "original", "3"] in [r[:3] for r in rows]


def test_a_test_accuracy_column_appears_where_runs_hold_out_a_test_set(tmp_path, capsys):
    folder = tmp_path / "rotation"
    for fold, (acc, test) in enumerate([(0.80, 0.70), (0.84, 0.72), (0.82, 0.77)], 1):
        write_run(folder, f"t{fold}", acc, test_fold=fold, test_acc=test)
    stats = summarize.group_stats(runs.load_runs(str(folder)), [], ci="t")
    assert stats.test_accuracy_mean[0] == pytest.approx(0.73) and stats.test_accuracy_std[0] == pytest.approx(0.03606,
                                                                                                             abs=1e-5)
    assert summarize.main([str(folder)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert cells(lines[2])[4] == "test_accuracy % (mean ± std [95 % CI])"
    assert cells(lines[4])[4] == "73.00 ± 3.61 [64.04, 81.96]"  # three test folds pooled, as folds are
    assert summarize.main([str(folder), "--metric", "test_accuracy", "--by", "test_fold"]) == 0
    assert [cells(line)[:3] for line in capsys.readouterr().out.splitlines()[4:]] == [
        ["3", "1", "77.00 ± –"], ["2", "1", "72.00 ± –"], ["1", "1", "70.00 ± –"]]
    assert "test_accuracy" not in summarize.group_stats(runs.load_runs(str(write_study(tmp_path))), ["n_mels"])
