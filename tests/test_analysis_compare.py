"""analysis.compare: every statistic in its csv recomputed with scipy from the records' accuracies, the paired and
Welch paths, --baseline, and its errors."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis import compare
from tests.analysis_records import write_paired_study

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def accuracies(n_mels: int, drop=()) -> pd.Series:
    """The accuracies write_paired_study writes, by (fold, trial), recomputed here from its formula."""
    values = {}
    for fold in range(1, 6):
        for trial in range(1, 6):
            i = 5 * (fold - 1) + trial - 1
            offset = {64: 0.0, 128: 0.03 + 0.005 * (i % 3 - 1), 32: -0.006 * (-1) ** i}[n_mels]
            if (n_mels, fold, trial) not in drop:
                values[fold, trial] = round(0.70 + 0.02 * fold + 0.004 * trial + offset, 4)
    return pd.Series(values)


def run_csv(capsys, *args) -> tuple[pd.DataFrame, str]:
    assert compare.main([*map(str, args), "--format", "csv"]) == 0
    out, err = capsys.readouterr()
    return pd.read_csv(io.StringIO(out)).set_index("n_mels"), err


def holm_by_hand(p: list[float]) -> list[float]:
    """Holm for two p-values, written out: the smaller times 2, the larger times 1 but not below the first."""
    lo, hi = sorted(p)
    adj = {lo: min(1, 2 * lo), hi: max(min(1, 2 * lo), min(1, hi))}
    return [adj[x] for x in p]


def test_paired_statistics_match_scipy(tmp_path, capsys):
    study = write_paired_study(tmp_path)
    table, err = run_csv(capsys, study, "--by", "n_mels", "--baseline", "64")
    assert "reference n_mels=64 (--baseline)" in err and "Holm correction over 2 comparisons" in err
    assert table.index.tolist() == [64, 128, 32] and table.loc[64, "test"] == "reference"
    ref = accuracies(64)
    p, p_w = [], []
    for value in (128, 32):
        row, acc = table.loc[value], accuracies(value)
        res = stats.ttest_rel(acc, ref)
        diffs = acc - ref
        ci = res.confidence_interval()
        assert row.test == "paired t" and row.n == row.n_reference == row.pairs == 25
        assert row["diff"] == pytest.approx(diffs.mean(), abs=1e-12)
        assert [row.ci_low, row.ci_high] == pytest.approx([ci.low, ci.high], abs=1e-12)
        assert row.effect == pytest.approx(diffs.mean() / diffs.std(ddof=1))
        assert row.p == pytest.approx(res.pvalue, rel=1e-9)
        assert row.p_wilcoxon == pytest.approx(stats.wilcoxon(diffs).pvalue, rel=1e-9)
        p.append(res.pvalue)
        p_w.append(stats.wilcoxon(diffs).pvalue)
    assert table.loc[[128, 32], "p_holm"].tolist() == pytest.approx(holm_by_hand(p), rel=1e-9)
    assert table.loc[[128, 32], "p_wilcoxon_holm"].tolist() == pytest.approx(holm_by_hand(p_w), rel=1e-9)
    assert table.loc[128, "verdict"] == "better" and table.loc[128, "diff"] == pytest.approx(0.0298)
    assert table.loc[32, "verdict"] == "no detectable difference at n=25 pairs"


def test_holm_adjustment():
    assert compare.holm([0.01, 0.04, 0.03, float("nan")]) == pytest.approx([0.03, 0.06, 0.06, float("nan")],
                                                                           nan_ok=True)
    assert compare.holm([0.5, 0.01]) == pytest.approx([0.5, 0.02])
    assert compare.holm([0.04, 0.03]) == pytest.approx([0.06, 0.06])  # not 0.04: adjusted p never decrease
    assert compare.holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])  # capped at 1


def test_best_mean_is_the_default_reference_and_table_output(tmp_path, capsys):
    study = write_paired_study(tmp_path)
    assert compare.main([str(study), "--by", "n_mels"]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].startswith("accuracy: each n_mels against the reference n_mels=128 (best mean)")
    assert lines[2].split()[:2] == ["n_mels", "n"] and "verdict" in lines[2]
    rows = {line.split()[0]: line for line in lines[4:]}
    assert rows.keys() == {"128", "64", "32"} and rows["128"].rstrip().endswith("reference")
    assert "25 pairs" in rows["64"] and "-2.98 [" in rows["64"] and rows["64"].rstrip().endswith("worse")
    assert err == ""


def test_welch_when_partners_are_missing(tmp_path, capsys):
    drop = ((128, 1, 1), (128, 2, 3), (32, 5, 5))
    study = write_paired_study(tmp_path, drop=drop)
    table, err = run_csv(capsys, study, "--by", "n_mels", "--baseline", "64")
    assert "n_mels=128 against n_mels=64: Welch's t-test, not paired, because 0 of its runs and 2 of the " \
           "reference's have no partner (fold 1 trial 1, fold 2 trial 3)" in err
    assert "unequal group sizes" in err
    ref = accuracies(64).to_numpy()
    p = []
    for value in (128, 32):
        row, acc = table.loc[value], accuracies(value, drop).to_numpy()
        res = stats.ttest_ind(acc, ref, equal_var=False)
        ci = res.confidence_interval()
        pooled = np.sqrt(((len(acc) - 1) * acc.var(ddof=1) + 24 * ref.var(ddof=1)) / (len(acc) + 23))
        assert row.test == "Welch t" and pd.isna(row.pairs) and pd.isna(row.p_wilcoxon)
        assert (row.n, row.n_reference) == (len(acc), 25)
        assert row["diff"] == pytest.approx(acc.mean() - ref.mean(), abs=1e-12)
        assert [row.ci_low, row.ci_high] == pytest.approx([ci.low, ci.high], abs=1e-12)
        assert row.effect == pytest.approx((acc.mean() - ref.mean()) / pooled)
        assert row.p == pytest.approx(res.pvalue, rel=1e-9)
        p.append(res.pvalue)
    assert table.loc[[128, 32], "p_holm"].tolist() == pytest.approx(holm_by_hand(p), rel=1e-9)
    assert table.loc[32, "verdict"] == "no detectable difference at n=24 vs 25"
    assert table.loc[128, "verdict"] == "better"


def test_single_run_group_gets_no_test(tmp_path, capsys):
    drop = tuple((32, f, t) for f in range(1, 6) for t in range(1, 6) if (f, t) != (1, 1))
    study = write_paired_study(tmp_path, drop=drop)
    table, err = run_csv(capsys, study, "--by", "n_mels", "--baseline", "64")
    assert table.loc[32, "test"] == "none" and table.loc[32, "verdict"] == "no test"
    assert table.loc[32, "note"] == "n < 2: no test possible" and pd.isna(table.loc[32, "p"])
    assert "n_mels=32 against n_mels=64: 1 vs 25 finished runs, no test possible" in err
    assert err.rstrip().endswith("Holm correction over 1 comparison")  # the untested row is not counted
    assert table.loc[128, "p_holm"] == pytest.approx(table.loc[128, "p"])


def test_unknown_baseline_and_bad_by(tmp_path, capsys):
    study = write_paired_study(tmp_path)
    assert compare.main([str(study), "--by", "n_mels", "--baseline", "96"]) == 2
    assert capsys.readouterr().err == "analysis.compare: --baseline: no finished runs with n_mels=96; values " \
                                      "there: 128, 64, 32\n"
    assert compare.main([str(study), "--by", "n_mels", "--baseline", "many"]) == 2
    assert capsys.readouterr().err.startswith("analysis.compare: --baseline: n_mels: expected")
    assert compare.main([str(study), "--by", "n_mels,fold"]) == 2
    assert capsys.readouterr().err == "analysis.compare: --by: give one key, not 2\n"
    with pytest.raises(SystemExit):
        compare.main([str(study)])  # --by is required


def test_help_runs(capsys):
    with pytest.raises(SystemExit) as exit_:
        compare.main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "--baseline VALUE" in out and "Welch" in out and "Holm" in out
