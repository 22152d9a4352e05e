"""Tables of runs: mean ± std (sample std) of accuracy and validation loss per value of any parameter(s), and the
final study's per-fold table.

    python -m analysis.summarize results/smoke --by n_mels
    python -m analysis.summarize results/final --folds --by arch --format markdown
    python -m analysis.summarize wandb:ENTITY/PROJECT --sweep SWEEP_ID --by hop_length --format csv

Only finished runs count; warnings (stderr) name runs left out, groups of unequal size, pooled sweeps, and
parameters that differ within a group. Allowed to differ: the Config keys whose role is replicate (trial_num,
fold) or environment (where things live, how a run executes), ``analysis.checks.NUISANCE_KEYS``.
"""

from __future__ import annotations

import argparse
import re
import sys

import pandas as pd

from . import cli
from .checks import check, group_warnings, run_warnings
from .labels import format_value, group_sample_rate
from .runs import SourceError, finished, warn

STATS = ["mean", "std", "min", "max"]
FOLD_ALL, FOLD_MEANS = "all runs", "mean of fold means"


def group_stats(df: pd.DataFrame, by: list[str], metric: str = "accuracy") -> pd.DataFrame:
    """One row per group of finished runs: ``by`` columns, ``n``, then mean/std/min/max of ``metric`` and of
    ``valid_loss`` (std with ddof=1: NaN for a single run). Best mean ``metric`` first."""
    ok = finished(df, metric)
    cols = [metric, "valid_loss"]
    if by:
        g = ok.groupby(by, dropna=False, sort=False)[cols]
        out, n = g.agg(STATS), g.size().to_numpy()
    else:
        out, n = ok[cols].agg(STATS).unstack().to_frame().T, [len(ok)]
    out.columns = [f"{col}_{stat}" for col, stat in out.columns]
    out.insert(0, "n", n)
    out = out.reset_index() if by else out
    return out.sort_values(f"{metric}_mean", ascending=False, kind="stable").reset_index(drop=True)


def _stats_row(values: pd.Series) -> dict:
    return {"n": len(values), "mean": values.mean(), "std": values.std(), "min": values.min(), "max": values.max()}


def fold_table(df: pd.DataFrame, by: list[str] | None = None, metric: str = "accuracy") -> pd.DataFrame:
    """The final study's table, per group of ``by``: one row per fold (statistics over its trials), then
    ``all runs`` (over every run) and ``mean of fold means`` (mean and std of the per-fold means, n = folds)."""
    ok = finished(df, metric)
    by = [k for k in by or [] if k != "fold"]
    blocks = []
    for name, g in ok.groupby(by, dropna=False, sort=False) if by else [((), ok)]:
        keys = dict(zip(by, name, strict=True))
        rows = [{**keys, "fold": str(fold), **_stats_row(f[metric])} for fold, f in g.groupby("fold", sort=True)]
        means = pd.Series([r["mean"] for r in rows], dtype=float)
        rows += [{**keys, "fold": FOLD_ALL, **_stats_row(g[metric])},
                 {**keys, "fold": FOLD_MEANS, **_stats_row(means)}]
        blocks.append(rows)
    blocks.sort(key=lambda rows: -rows[-2]["mean"])  # best group first
    return pd.DataFrame([r for rows in blocks for r in rows], columns=[*by, "fold", "n", *STATS])


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


def _values(table: pd.DataFrame, by: list[str], df: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({k: [format_value(k, v, group_sample_rate(df, k, v)) for v in table[k]] for k in by},
                        index=table.index)


def display_table(stats: pd.DataFrame, by: list[str], df: pd.DataFrame, metric: str = "accuracy") -> pd.DataFrame:
    """``group_stats`` for people: values with units, accuracy in % as ``mean ± std``, min and max."""
    out = _values(stats, by, df)
    out["n"] = stats["n"].astype(int).astype(str)
    out[f"{metric} % (mean ± std)"] = plus_minus(stats[f"{metric}_mean"], stats[f"{metric}_std"], 100, 2)
    out["min %"] = number_cells(stats[f"{metric}_min"], 100, 2)
    out["max %"] = number_cells(stats[f"{metric}_max"], 100, 2)
    out["valid_loss (mean ± std)"] = plus_minus(stats.valid_loss_mean, stats.valid_loss_std, 1, 4)
    return out


def display_folds(table: pd.DataFrame, by: list[str], df: pd.DataFrame, metric: str = "accuracy") -> pd.DataFrame:
    """``fold_table`` for people, like :func:`display_table`."""
    out = _values(table, by, df)
    out["fold"] = table["fold"]
    out["n"] = [f"{n} fold{'s' * (n != 1)}" if f == FOLD_MEANS else str(n)
                for f, n in zip(table.fold, table.n, strict=True)]
    out[f"{metric} % (mean ± std)"] = plus_minus(table["mean"], table["std"], 100, 2)
    out["min %"] = number_cells(table["min"], 100, 2)
    out["max %"] = number_cells(table["max"], 100, 2)
    return out


def render(table: pd.DataFrame, fmt: str = "table") -> str:
    """A table as aligned text, a Markdown pipe table, or CSV."""
    if fmt == "csv":
        return table.to_csv(index=False).rstrip("\n")
    cells = [list(map(str, table.columns))] + [[str(v) for v in row] for row in table.itertuples(index=False)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(table.columns))]
    numeric = [all(_numeric(r[i]) for r in cells[1:]) for i in range(len(widths))]

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
    return re.fullmatch(r"[-+–\d.e ±%]*\d[-+–\d.e ±%]*|–", text) is not None


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("analysis.summarize", __doc__)
    p.add_argument("--by", metavar="KEY[,KEY...]", help="group by these config keys (default: all runs in one "
                   "group)")
    p.add_argument("--folds", action="store_true", help="the final study's per-fold table (per group of --by)")
    p.add_argument("--format", choices=["table", "csv", "markdown"], default="table",
                   help="table (default), csv (raw numbers, accuracy as a fraction) or markdown")
    return p


def command(args: argparse.Namespace, df: pd.DataFrame, by: list[str]) -> int:
    """Print the table ``args`` ask for, warnings on stderr."""
    if args.folds:
        by = [k for k in by if k != "fold"]
        messages = run_warnings(df, args.metric) + fold_warnings(df, by, args.metric)
        table = fold_table(df, by, args.metric)
        shown = table if args.format == "csv" else display_folds(table, by, df, args.metric)
    else:
        messages, table = check(df, by, args.metric), group_stats(df, by, args.metric)
        shown = table if args.format == "csv" else display_table(table, by, df, args.metric)
    for m in messages:
        warn(m)
    if finished(df, args.metric).empty:  # (with no --by, the table still has its one, empty, row)
        raise SourceError(f"no finished runs with {args.metric} in {args.source}")
    print(render(shown, args.format))
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.run(build_parser(), command, argv, history=False)


if __name__ == "__main__":
    sys.exit(main())
