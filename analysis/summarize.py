"""Tables of runs: mean with its 95 % confidence interval, sample std, min and max of accuracy and validation loss
(and the held-out test accuracy, where runs have one) per value of any parameter(s), and the final study's per-fold
table.

    python -m analysis.summarize results/smoke --by n_mels
    python -m analysis.summarize results/final --folds --by arch --format markdown --ci bootstrap --seed 1
    python -m analysis.summarize wandb:ENTITY/PROJECT --sweep SWEEP_ID --by hop_length --format csv
    python -m analysis.summarize results/smoke --by n_mels --runs_csv runs.csv

Intervals (--ci): Student t over the runs (default), or a bootstrap of the mean (scipy.stats.bootstrap, BCa,
9999 resamples, seeded by --seed). The mean of fold means has its interval over the fold means (n = folds). A
group of fewer than 3 runs (3 folds) gets none. The line above the table (csv: column ci_method) says which.
--runs_csv also writes one row per run: its id, sweep and status, the parameters that vary, fold, trial_num and
its summary metrics.

Only finished runs count; warnings (stderr) name runs left out, groups of unequal size, pooled sweeps,
parameters that differ within a group, groups compared that ran different numbers of epochs or on different
datasets, and groups too small for an interval. Allowed to differ within a group: the Config keys whose role is
replicate (trial_num, fold) or environment (where things live, how a run executes),
``analysis.checks.NUISANCE_KEYS``.
"""

from __future__ import annotations

import argparse
import re
import sys

import numpy as np
import pandas as pd
import scipy.stats

from audiosweep.errors import SourceError
from audiosweep.results import TEST_METRIC

from . import cli
from .checks import (
    MIN_CI_RUNS,
    check,
    comparison_warnings,
    group_warnings,
    interval_warnings,
    require_folds,
    run_warnings,
    varying_keys,
)
from .labels import format_value, group_sample_rate, md_escape
from .runs import finished, overview, warn

STATS = ["mean", "std", "min", "max"]
FOLD_ALL, FOLD_MEANS = "all runs", "mean of fold means"
CI_LEVEL, CI_METHODS, RESAMPLES = 0.95, ("t", "bootstrap"), 9999
LOW, HIGH = "ci95_low", "ci95_high"


def ci_method(ci: str, seed: int = 0, over: str = "runs") -> str:
    """How the intervals were computed, in words (the header line, the csv's ``ci_method``)."""
    if ci == "t":
        return f"Student t over {over}"
    return f"bootstrap over {over} (BCa, {RESAMPLES} resamples, seed {seed})"


def interval(values, ci: str = "t", seed: int = 0) -> tuple[float, float]:
    """The 95 % confidence interval of the mean of ``values`` (NaNs dropped): Student t, or a BCa bootstrap with
    a generator seeded afresh by ``seed`` (each group's interval does not depend on the others). NaN for fewer
    than :data:`~analysis.checks.MIN_CI_RUNS` values."""
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    if len(x) < MIN_CI_RUNS:
        return float("nan"), float("nan")
    if np.ptp(x) == 0:  # every run the same: the interval is that value (scipy would divide by a zero spread)
        return float(x[0]), float(x[0])
    if ci == "t":
        low, high = scipy.stats.t.interval(CI_LEVEL, len(x) - 1, loc=np.mean(x), scale=scipy.stats.sem(x))
    else:
        low, high = scipy.stats.bootstrap((x,), np.mean, n_resamples=RESAMPLES, confidence_level=CI_LEVEL,
                                          method="BCa", rng=np.random.default_rng(seed)).confidence_interval
    return float(low), float(high)


def group_stats(df: pd.DataFrame, by: list[str], metric: str = "accuracy", ci: str | None = None,
                seed: int = 0) -> pd.DataFrame:
    """One row per group of finished runs: ``by`` columns, ``n``, then mean/std/min/max of ``metric`` and of
    ``valid_loss`` (std with ddof=1: NaN for a single run). Best mean ``metric`` first. With ``ci`` (a method of
    :func:`interval`), each mean is followed by ``<col>_ci95_low`` and ``<col>_ci95_high``, and a last column
    ``ci_method`` says how."""
    ok = finished(df, metric)
    cols = [metric, *test_column(ok, metric), "valid_loss"]
    if by:
        g = ok.groupby(by, dropna=False, sort=False)[cols]
        out, n = g.agg(STATS), g.size().to_numpy()
    else:
        out, n = ok[cols].agg(STATS).unstack().to_frame().T, [len(ok)]
    out.columns = [f"{col}_{stat}" for col, stat in out.columns]
    if ci:
        groups = [f for _, f in g] if by else [ok]  # the order agg gave the rows: first seen
        for col in cols:
            bounds = [interval(f[col], ci, seed) for f in groups]
            at = out.columns.get_loc(f"{col}_mean") + 1
            out.insert(at, f"{col}_{LOW}", [low for low, _ in bounds])
            out.insert(at + 1, f"{col}_{HIGH}", [high for _, high in bounds])
        out["ci_method"] = ci_method(ci, seed)
    out.insert(0, "n", n)
    out = out.reset_index() if by else out
    return out.sort_values(f"{metric}_mean", ascending=False, kind="stable").reset_index(drop=True)


def test_column(df: pd.DataFrame, metric: str) -> list[str]:
    """``[test_accuracy]`` when runs of ``df`` hold a held-out test accuracy and it is not ``metric`` already."""
    return [TEST_METRIC] if metric != TEST_METRIC and df[TEST_METRIC].notna().any() else []


def _stats_row(values: pd.Series, ci: str | None, seed: int, over: str = "runs") -> dict:
    row = {"n": len(values), "mean": values.mean()}
    if ci:
        row[LOW], row[HIGH] = interval(values, ci, seed)
    row.update(std=values.std(), min=values.min(), max=values.max())
    return {**row, "ci_method": ci_method(ci, seed, over)} if ci else row


def fold_table(df: pd.DataFrame, by: list[str] | None = None, metric: str = "accuracy", ci: str | None = None,
               seed: int = 0) -> pd.DataFrame:
    """The final study's table, per group of ``by``: one row per fold (statistics over its trials), then
    ``all runs`` (over every run) and ``mean of fold means`` (mean and std of the per-fold means, n = folds).
    With ``ci``, columns ``ci95_low`` and ``ci95_high`` follow ``mean`` (for the mean of fold means: over the
    fold means), and ``ci_method`` comes last."""
    ok = finished(df, metric)
    by = [k for k in by or [] if k != "fold"]
    blocks = []
    for name, g in ok.groupby(by, dropna=False, sort=False) if by else [((), ok)]:
        keys = dict(zip(by, name, strict=True))
        rows = [{**keys, "fold": str(fold), **_stats_row(f[metric], ci, seed)}
                for fold, f in g.groupby("fold", sort=True)]
        means = pd.Series([r["mean"] for r in rows], dtype=float)
        rows += [{**keys, "fold": FOLD_ALL, **_stats_row(g[metric], ci, seed)},
                 {**keys, "fold": FOLD_MEANS, **_stats_row(means, ci, seed, "fold means")}]
        blocks.append(rows)
    blocks.sort(key=lambda rows: -rows[-2]["mean"])  # best group first
    columns = [*by, "fold", "n", "mean", *([LOW, HIGH] if ci else []), *STATS[1:], *(["ci_method"] if ci else [])]
    return pd.DataFrame([r for rows in blocks for r in rows], columns=columns)


def fold_warnings(df: pd.DataFrame, by: list[str], metric: str = "accuracy") -> list[str]:
    """Per-fold tables pool trials per fold: check for other differences, and for splits where fold is moot."""
    messages = group_warnings(df, [*by, "fold"], metric)
    ok = finished(df, metric)
    folds = sorted(ok.fold.unique())
    if len(folds) == 1:
        messages.append(f"every run used fold {', '.join(map(str, folds))}: the per-fold table has one fold")
    stratified = int((ok.split != "official").sum())
    if stratified:
        messages.append(f"{stratified} runs use split=stratified, where fold does not choose the validation set")
    return messages


def plus_minus(mean: pd.Series, std: pd.Series, scale: float, digits: int) -> list[str]:
    """``mean ± std`` cells ("–" for a std of a single run)."""
    return ["–" if pd.isna(m) else f"{m * scale:.{digits}f} ± " + ("–" if pd.isna(s) else f"{s * scale:.{digits}f}")
            for m, s in zip(mean, std, strict=True)]


def number_cells(values: pd.Series, scale: float, digits: int) -> list[str]:
    return ["–" if pd.isna(v) else f"{v * scale:.{digits}f}" for v in values]


def _mean_cells(out: pd.DataFrame, table: pd.DataFrame, prefix: str, name: str, scale: float, digits: int) -> None:
    """Column ``name (mean ± std)`` into ``out``; where ``table`` has intervals, ``name (mean ± std [95 % CI])``
    with cells ``mean ± std [low, high]`` (no brackets where a group is too small for an interval)."""
    cells = plus_minus(table[f"{prefix}mean"], table[f"{prefix}std"], scale, digits)
    if f"{prefix}{LOW}" not in table:
        out[f"{name} (mean ± std)"] = cells
        return
    out[f"{name} (mean ± std [95 % CI])"] = [
        cell + ("" if pd.isna(low) else f" [{low * scale:.{digits}f}, {high * scale:.{digits}f}]")
        for cell, low, high in zip(cells, table[f"{prefix}{LOW}"], table[f"{prefix}{HIGH}"], strict=True)]


def _values(table: pd.DataFrame, by: list[str], df: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({k: [format_value(k, v, group_sample_rate(df, k, v)) for v in table[k]] for k in by},
                        index=table.index)


def display_table(stats: pd.DataFrame, by: list[str], df: pd.DataFrame, metric: str = "accuracy") -> pd.DataFrame:
    """``group_stats`` for people: values with units, accuracy in % as ``mean ± std`` (and ``[low, high]`` where
    there are intervals), min and max."""
    out = _values(stats, by, df)
    out["n"] = stats["n"].astype(int).astype(str)
    _mean_cells(out, stats, f"{metric}_", f"{metric} %", 100, 2)
    out["min %"] = number_cells(stats[f"{metric}_min"], 100, 2)
    out["max %"] = number_cells(stats[f"{metric}_max"], 100, 2)
    if f"{TEST_METRIC}_mean" in stats:
        _mean_cells(out, stats, f"{TEST_METRIC}_", f"{TEST_METRIC} %", 100, 2)
    _mean_cells(out, stats, "valid_loss_", "valid_loss", 1, 4)
    return out


def display_folds(table: pd.DataFrame, by: list[str], df: pd.DataFrame, metric: str = "accuracy") -> pd.DataFrame:
    """``fold_table`` for people, like :func:`display_table`."""
    out = _values(table, by, df)
    out["fold"] = table["fold"]
    out["n"] = [f"{n} fold{'s' * (n != 1)}" if f == FOLD_MEANS else str(n)
                for f, n in zip(table.fold, table.n, strict=True)]
    _mean_cells(out, table, "", f"{metric} %", 100, 2)
    out["min %"] = number_cells(table["min"], 100, 2)
    out["max %"] = number_cells(table["max"], 100, 2)
    return out


def _span(counts) -> str:
    low, high = int(min(counts)), int(max(counts))
    return str(low) if low == high else f"{low} to {high}"


def header(table: pd.DataFrame, ci: str, seed: int, folds: bool = False) -> str:
    """The line above a table: what the interval is and over how many runs (folds) it was computed."""
    if not folds:
        return f"95 % CI: {ci_method(ci, seed)}; n = {_span(table.n)} runs per group"
    per_fold = table.n[~table.fold.isin([FOLD_ALL, FOLD_MEANS])]
    return (f"95 % CI: {ci_method(ci, seed)}; n = {_span(per_fold)} runs per fold, "
            f"{_span(table.n[table.fold == FOLD_ALL])} runs per group; mean of fold means: over "
            f"n = {_span(table.n[table.fold == FOLD_MEANS])} fold means")


def run_table(df: pd.DataFrame, metric: str = "accuracy") -> pd.DataFrame:
    """One row per run (failed ones too): id, sweep, status, the parameters that vary across ``df``, fold,
    trial_num and the summary metrics."""
    table = overview(df, varying_keys(df), metric)
    return table[["run_id", "sweep", *table.columns.drop(["run_id", "sweep"])]]


def render(table: pd.DataFrame, fmt: str = "table") -> str:
    """A table as aligned text, a Markdown pipe table (every cell escaped: one line, no Markdown or HTML of its
    own, so each row keeps the table's columns), or CSV."""
    if fmt == "csv":
        return table.to_csv(index=False).rstrip("\n")
    cells = [list(map(str, table.columns))] + [[str(v) for v in row] for row in table.itertuples(index=False)]
    numeric = [all(_numeric(r[i]) for r in cells[1:]) for i in range(len(table.columns))]
    if fmt == "markdown":
        cells = [[md_escape(c) for c in row] for row in cells]
    widths = [max(len(r[i]) for r in cells) for i in range(len(table.columns))]

    def line(row):
        padded = [c.rjust(w) if num else c.ljust(w) for c, w, num in zip(row, widths, numeric, strict=True)]
        return "| " + " | ".join(padded) + " |" if fmt == "markdown" else "  ".join(padded).rstrip()

    if fmt == "markdown":
        rule = "|" + "|".join("-" * (w + 1) + ":" if num else "-" * (w + 2)
                              for w, num in zip(widths, numeric, strict=True)) + "|"
    else:
        rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule, *map(line, cells[1:])])


def _numeric(text: str) -> bool:
    return re.fullmatch(r"[-+–\d.e ±%,\[\]]*\d[-+–\d.e ±%,\[\]]*|–", text) is not None


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("analysis.summarize", __doc__)
    p.add_argument("--by", metavar="KEY[,KEY...]", help="group by these config keys (default: all runs in one "
                   "group)")
    p.add_argument("--folds", action="store_true", help="the final study's per-fold table (per group of --by)")
    p.add_argument("--format", choices=["table", "csv", "markdown"], default="table",
                   help="table (default), csv (raw numbers, accuracy as a fraction) or markdown")
    p.add_argument("--ci", choices=CI_METHODS, default="t",
                   help="95 %% confidence interval of each mean: t (Student t over runs, default) or bootstrap "
                   f"(BCa, {RESAMPLES} resamples); none for groups of fewer than {MIN_CI_RUNS} runs")
    p.add_argument("--seed", type=int, default=0, help="seed of --ci bootstrap (default 0)")
    p.add_argument("--runs_csv", metavar="FILE", help="also write one row per run (id, sweep, status, the "
                   "parameters that vary, fold, trial_num, summary metrics) to FILE")
    return p


def command(args: argparse.Namespace, df: pd.DataFrame, by: list[str]) -> int:
    """Print the table ``args`` ask for, warnings on stderr."""
    if args.folds:
        require_folds(df, args.metric)
        by = [k for k in by if k != "fold"]
        messages = run_warnings(df, args.metric) + fold_warnings(df, by, args.metric)
        table = fold_table(df, by, args.metric, args.ci, args.seed)
        shown = table if args.format == "csv" else display_folds(table, by, df, args.metric)
    else:
        messages = check(df, by, args.metric)
        table = group_stats(df, by, args.metric, args.ci, args.seed)
        shown = table if args.format == "csv" else display_table(table, by, df, args.metric)
    messages += comparison_warnings(df, by, args.metric) + interval_warnings(df, by, args.metric, args.folds)
    for m in messages:
        warn(m)
    if finished(df, args.metric).empty:  # (with no --by, the table still has its one, empty, row)
        raise SourceError(f"no finished runs with {args.metric} in {args.source}")
    if args.format != "csv":  # csv states the method in its ci_method column
        print(header(table, args.ci, args.seed, args.folds) + "\n")
    print(render(shown, args.format))
    if args.runs_csv:
        run_table(df, args.metric).to_csv(args.runs_csv, index=False)
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.run(build_parser(), command, argv, history=False)


if __name__ == "__main__":
    sys.exit(main())
