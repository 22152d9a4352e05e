"""Is a value of one parameter better than another? Each value of ``--by KEY`` against a reference value, with a
significance test, a 95 % interval of the difference, an effect size and Holm-corrected p-values.

    python -m analysis.compare results/final --by arch
    python -m analysis.compare results/final --by n_mels --baseline 64 --format markdown

The reference is ``--baseline VALUE`` or else the value with the best mean metric. When every run of both groups
has exactly one partner with the same (fold, trial_num), the runs are compared in pairs: a paired t-test, with a
Wilcoxon signed-rank test beside it; otherwise Welch's t-test (a warning says which runs lack a partner).
Differences are value − reference; the table shows them in accuracy points, csv as fractions like summarize.
Only finished runs count; warnings (stderr) as in analysis.summarize.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from audiosweep.config import coerce
from audiosweep.errors import ConfigError, SourceError

from . import cli
from .checks import check
from .labels import format_value, group_sample_rate
from .runs import finished, same_value, select, warn
from .summarize import group_stats, number_cells, plus_minus, render

PAIR_KEYS = ["fold", "trial_num"]
ALPHA = 0.05
PAIRED, WELCH, NO_TEST, REFERENCE = "paired t", "Welch t", "none", "reference"
HEADER = ("{metric}: each {key} against the reference {key}={ref} ({why}); differences are value − reference; "
          "paired t-test where runs match on fold and trial_num (effect size Cohen's d_z, Wilcoxon signed-rank "
          "beside it), else Welch's t-test (effect size Cohen's d, pooled sd); 95 % intervals from the t-test; "
          "Holm correction over {m} comparison{s}")


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjustment of ``pvalues`` (NaN stays NaN and is not counted). Written here because scipy
    has none (its false_discovery_control is Benjamini-Hochberg) and statsmodels is no dependency."""
    p = np.asarray(pvalues, dtype=float)
    valid = np.flatnonzero(~np.isnan(p))
    order = valid[np.argsort(p[valid], kind="stable")]
    m = len(order)
    adjusted = np.full(len(p), np.nan)
    running = 0.0
    for rank, i in enumerate(order):  # the k-th smallest p times (m - k + 1), kept non-decreasing
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted.tolist()


def pairs(group: pd.DataFrame, ref: pd.DataFrame, metric: str) -> tuple[pd.DataFrame | None, str]:
    """The runs of ``group`` and ``ref`` side by side (columns ``value``, ``reference``) when they match one to one
    on (fold, trial_num); else None and why not."""
    keyed = [g.set_index(PAIR_KEYS)[metric] for g in (group, ref)]
    repeated = [k for k, s in zip(("this value", "the reference"), keyed, strict=True) if s.index.duplicated().any()]
    if repeated:
        return None, f"{' and '.join(repeated)} repeat (fold, trial_num)"
    only_here, only_ref = keyed[0].index.difference(keyed[1].index), keyed[1].index.difference(keyed[0].index)
    if len(only_here) or len(only_ref):
        listed = ", ".join(f"fold {f} trial {t}" for f, t in [*only_here, *only_ref][:4])
        more = ", ..." if len(only_here) + len(only_ref) > 4 else ""
        return None, (f"{len(only_here)} of its runs and {len(only_ref)} of the reference's have no partner "
                      f"({listed}{more})")
    return pd.DataFrame({"value": keyed[0], "reference": keyed[1]}).dropna(), ""


def _wilcoxon(diffs: np.ndarray) -> tuple[float, str]:
    if not np.any(diffs):
        return float("nan"), "all paired differences are zero: no Wilcoxon test"
    p = float(stats.wilcoxon(diffs).pvalue)
    n = int(np.count_nonzero(diffs))
    smallest = 2 / 2**n  # the exact two-sided test's smallest p
    return p, (f"Wilcoxon with {n} nonzero differences cannot reach p < {ALPHA:g}" if smallest >= ALPHA else "")


def _no_test(a: pd.Series, b: pd.Series, note: str) -> dict[str, Any]:
    return {"test": NO_TEST, "diff": a.mean() - b.mean(), "ci_low": np.nan, "ci_high": np.nan, "effect": np.nan,
            "p": np.nan, "p_wilcoxon": np.nan, "note": note}


def welch(a: pd.Series, b: pd.Series) -> dict[str, Any]:
    """Welch's t-test of ``a`` against ``b``: the difference of means a − b with its 95 % interval, Cohen's d
    (pooled sd) and p; no test (NaN, and a note why) below 2 values on either side or without any spread."""
    if len(a) < 2 or len(b) < 2:
        return _no_test(a, b, "n < 2: no test possible")
    x, y = a.to_numpy(), b.to_numpy()
    pooled = np.sqrt(((len(x) - 1) * x.var(ddof=1) + (len(y) - 1) * y.var(ddof=1)) / (len(x) + len(y) - 2))
    if pooled == 0:
        return _no_test(a, b, "no spread in either group: no t-test possible")
    res = stats.ttest_ind(x, y, equal_var=False)
    return {"test": WELCH, "diff": x.mean() - y.mean(), **_interval(res), "effect": (x.mean() - y.mean()) / pooled,
            "p": float(res.pvalue), "p_wilcoxon": np.nan, "note": ""}


def test_row(group: pd.DataFrame, ref: pd.DataFrame, metric: str) -> tuple[dict[str, Any], str]:
    """Statistics of ``group`` against ``ref`` (a table row) and, when they cannot be paired, why."""
    row = {"n": len(group), "n_reference": len(ref), "mean": group[metric].mean(), "std": group[metric].std()}
    if len(group) < 2 or len(ref) < 2:
        return {**row, **welch(group[metric], ref[metric])}, ""
    matched, why = pairs(group, ref, metric)
    if matched is not None:
        diffs = (matched.value - matched.reference).to_numpy()
        if np.std(diffs) == 0:
            return {**row, **_no_test(group[metric], ref[metric], "every paired difference is the same: no t-test "
                                      "possible")}, ""
        res = stats.ttest_rel(matched.value, matched.reference)
        p_w, note = _wilcoxon(diffs)
        return {**row, "test": PAIRED, "pairs": len(diffs), "diff": diffs.mean(), **_interval(res),
                "effect": diffs.mean() / diffs.std(ddof=1), "p": float(res.pvalue), "p_wilcoxon": p_w,
                "note": note}, ""
    return {**row, **welch(group[metric], ref[metric])}, why


def _interval(res) -> dict[str, float]:
    ci = res.confidence_interval(confidence_level=0.95)
    return {"ci_low": float(ci.low), "ci_high": float(ci.high)}


def verdict(row: dict[str, Any]) -> str:
    """better / worse where the Holm-corrected t-test p is below 0.05, else what the runs cannot tell."""
    if row["test"] == NO_TEST:
        return "no test"
    if row["p_holm"] < ALPHA:
        return "better" if row["diff"] > 0 else "worse"
    n = f"{int(row['pairs'])} pairs" if row["test"] == PAIRED else f"{row['n']} vs {row['n_reference']}"
    return f"no detectable difference at n={n}"


def reference_value(table: pd.DataFrame, key: str, baseline: str | None) -> tuple[Any, str]:
    """The reference value of ``key`` (``table`` is group_stats', best first) and why it is the reference."""
    if baseline is None:
        return table[key].iloc[0], "best mean"
    try:
        wanted = coerce(key, baseline)
    except ConfigError as e:
        raise SourceError(f"--baseline: {e}") from e
    for value in table[key]:
        if same_value(value, wanted):
            return value, "--baseline"
    available = ", ".join(str(v) for v in table[key])
    raise SourceError(f"--baseline: no finished runs with {key}={baseline}; values there: {available}")


def compare_table(df: pd.DataFrame, key: str, metric: str = "accuracy", baseline: str | None = None
                  ) -> tuple[pd.DataFrame, Any, str, list[str]]:
    """One row per value of ``key`` (the reference first, then best mean first) with the tests against the
    reference; the reference value, why it is it, and warnings."""
    ok = finished(df, metric)
    if ok.empty:
        raise SourceError(f"no finished runs with {metric}")
    order = group_stats(ok, [key], metric)
    ref_value, why = reference_value(order, key, baseline)
    ref = select(ok, key, ref_value)
    rows = [{key: ref_value, "n": len(ref), "n_reference": len(ref), "mean": ref[metric].mean(),
             "std": ref[metric].std(), "test": REFERENCE, "note": ""}]
    messages = []
    for value in order[key]:
        if same_value(value, ref_value):
            continue
        row, unpaired = test_row(select(ok, key, value), ref, metric)
        rows.append({key: value, **row})
        if unpaired:
            messages.append(f"{key}={value} against {key}={ref_value}: Welch's t-test, not paired, because "
                            f"{unpaired}")
        if row["note"].startswith("n < 2"):
            messages.append(f"{key}={value} against {key}={ref_value}: {row['n']} vs {row['n_reference']} "
                            "finished runs, no test possible")
    table = pd.DataFrame(rows, columns=[key, "n", "n_reference", "pairs", "mean", "std", "test", "diff", "ci_low",
                                        "ci_high", "effect", "p", "p_holm", "p_wilcoxon", "p_wilcoxon_holm",
                                        "verdict", "note"])
    table["pairs"] = table["pairs"].astype("Int64")  # a count; missing for unpaired rows
    tested = table.test != REFERENCE
    table.loc[tested, "p_holm"] = holm(table.p[tested].tolist())
    table.loc[tested, "p_wilcoxon_holm"] = holm(table.p_wilcoxon[tested].tolist())
    table["verdict"] = [REFERENCE if t == REFERENCE else verdict(row) for t, row in
                        zip(table.test, table.to_dict("records"), strict=True)]
    return table, ref_value, why, messages


def _signed(values: pd.Series, digits: int) -> list[str]:
    return ["–" if pd.isna(v) else f"{v:+.{digits}f}" for v in values]


def p_cells(values: pd.Series) -> list[str]:
    """p-values for people: 4 decimals, ``<0.0001`` below that, "–" for no test."""
    return ["–" if pd.isna(p) else "<0.0001" if p < 1e-4 else f"{p:.4f}" for p in values]


def diff_cells(diff: pd.Series, low: pd.Series, high: pd.Series) -> list[str]:
    """Differences (fractions) in points with their 95 % interval: ``+1.20 [+0.40, +2.00]``."""
    ci = [f"[{lo}, {hi}]" for lo, hi in zip(_signed(low * 100, 2), _signed(high * 100, 2), strict=True)]
    return [f"{d} {c}" for d, c in zip(_signed(diff * 100, 2), ci, strict=True)]


def display_compare(table: pd.DataFrame, key: str, df: pd.DataFrame, metric: str = "accuracy") -> pd.DataFrame:
    """``compare_table`` for people: values with units, accuracy and differences in points, d with its kind."""
    out = pd.DataFrame({key: [format_value(key, v, group_sample_rate(df, key, v)) for v in table[key]]})
    out["n"] = [f"{int(p)} pairs" if t == PAIRED else str(n) if t == REFERENCE else f"{n} vs {r}"
                for t, n, r, p in zip(table.test, table.n, table.n_reference, table.pairs, strict=True)]
    out[f"{metric} % (mean ± std)"] = plus_minus(table["mean"], table["std"], 100, 2)
    out["diff pts [95 % CI]"] = [c if t != REFERENCE else "–" for c, t in
                                 zip(diff_cells(table["diff"], table.ci_low, table.ci_high), table.test, strict=True)]
    out["test"] = table.test
    out["effect"] = [("d_z " if t == PAIRED else "d ") + e if e != "–" else e
                     for t, e in zip(table.test, number_cells(table.effect, 1, 2), strict=True)]
    out["p"], out["p Holm"] = p_cells(table.p), p_cells(table.p_holm)
    out["p Wilcoxon"], out["p Wilcoxon Holm"] = p_cells(table.p_wilcoxon), p_cells(table.p_wilcoxon_holm)
    out["verdict"] = [f"{v} ({n})" if n else v for v, n in zip(table.verdict, table.note, strict=True)]
    return out


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("analysis.compare", __doc__)
    p.add_argument("--by", metavar="KEY", required=True, help="the config key whose values are compared")
    p.add_argument("--baseline", metavar="VALUE", help="the reference value of KEY (default: best mean metric)")
    p.add_argument("--format", choices=["table", "csv", "markdown"], default="table",
                   help="table (default), csv (raw numbers, accuracy and differences as fractions) or markdown")
    return p


def header(key: str, ref: Any, why: str, metric: str, table: pd.DataFrame) -> str:
    """The line above a comparison: the reference, the tests, the correction over the tested rows."""
    m = int(table.p.notna().sum())  # rows with no test possible are not corrected for
    return HEADER.format(metric=metric, key=key, ref=format_value(key, ref), why=why, m=m, s="s" * (m != 1))


def command(args: argparse.Namespace, df: pd.DataFrame, by: list[str]) -> int:
    """Print the comparison; the header line goes to stdout, or to stderr with csv so stdout stays csv."""
    if len(by) != 1:
        raise SourceError(f"--by: give one key, not {len(by)}")
    key = by[0]
    messages = check(df, by, args.metric)
    table, ref, why, more = compare_table(df, key, args.metric, args.baseline)
    for m in messages + more:
        warn(m)
    text = header(key, ref, why, args.metric, table)
    if args.format == "csv":
        print(text, file=sys.stderr)
        print(render(table, "csv"))
    else:
        print(text + "\n")
        print(render(display_compare(table, key, df, args.metric), args.format))
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.run(build_parser(), command, argv, history=False)


if __name__ == "__main__":
    sys.exit(main())
