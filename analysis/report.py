"""The report as a folder: for every parameter that varies across runs, its table (mean ± std per value) and
figures; the per-fold table and bars when folds vary; the best run's confusion matrix; all on ``report.md``.

    python -m analysis.report results/smoke --out reports/smoke
    python -m analysis.report results --sweep hop_length --out reports/hop   # one sweep of several

Parameters that vary are Config keys taking more than one value among finished runs, apart from trial_num,
fold and keys saying where things live (``analysis.runs.NUISANCE_KEYS``); ``--by`` names them instead.
``analysis/report.ipynb`` builds the same from the same functions.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from . import plots
from .runs import SourceError, finished, group_warnings, run_warnings, varying_keys, warn
from .summarize import (
    add_source_args,
    display_folds,
    display_table,
    fold_table,
    fold_warnings,
    group_stats,
    load_from_args,
    parse_keys,
    render,
)


def report_keys(df: pd.DataFrame, by: list[str] | None = None, metric: str = "accuracy") -> list[str]:
    """The parameters the report covers: ``by``, else every key that varies across finished runs."""
    return list(by) if by else varying_keys(finished(df, metric))


def _figure(out: Path, fig, name: str, alt: str) -> list[str]:
    png = plots.save(fig, out, name)[0]
    return [f"![{alt}]({png.name})", ""]


def _bullets(messages: list[str]) -> list[str]:
    return [*(f"> warning: {m}  " for m in messages), ""] if messages else []


def build_report(df: pd.DataFrame, out: str | Path, by: list[str] | None = None, metric: str = "accuracy",
                 run_id: str | None = None, source: str = "") -> Path:
    """Write figures (PNG and SVG), tables (CSV) and ``report.md`` into ``out``; return the page's path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ok = finished(df, metric)
    if ok.empty:
        raise SourceError(f"no finished runs with {metric} in {source or 'the runs given'}: nothing to report")
    keys = report_keys(df, by, metric)
    sweeps = ", ".join(sorted(s or "(no sweep)" for s in df.sweep.unique()))
    md = [f"# Results{': ' + source if source else ''}", "",
          f"{len(df)} runs ({len(ok)} finished with {metric}) from sweep(s) {sweeps}. Accuracy is the validation "
          f"{metric.replace('_', ' ')} in %, mean ± sample std over runs; min and max over runs.", "",
          *_bullets(run_warnings(df, metric))]
    for key in keys or [None]:
        group = [key] if key else []
        stats = group_stats(df, group, metric)
        stats.to_csv(out / f"{metric}_by_{key or 'all'}.csv", index=False)
        md += [f"## {key}" if key else "## All runs", "", render(display_table(stats, group, df, metric), "markdown"),
               "", *_bullets(group_warnings(df, group, metric))]
        if key:
            md += _figure(out, plots.plot_param(df, key, metric), f"{metric}_by_{key}", f"{metric} by {key}")
        md += _figure(out, plots.plot_curves(df, key), f"curves_by_{key}" if key else "curves",
                      "accuracy and loss per epoch")
    if ok.fold.nunique() > 1:
        fold_by = [k for k in keys if k != "fold"]
        table = fold_table(df, fold_by, metric)
        table.to_csv(out / "folds.csv", index=False)
        md += ["## Per fold", "", "Rows per fold: mean ± std over its trials; then over all runs, and the mean "
               "(± std) of the per-fold means.", "", render(display_folds(table, fold_by, df, metric), "markdown"),
               "", *_bullets(fold_warnings(df, fold_by, metric))]
        md += _figure(out, plots.plot_folds(df, fold_by[0] if len(fold_by) == 1 else None, metric), "folds",
                      "accuracy per fold")
    try:
        row = plots.pick_run(df, run_id, metric)
    except SourceError as e:
        if run_id is not None:
            raise
        md += ["## Confusion matrix", "", f"Not drawn: {e}", ""]
    else:
        what = "chosen" if run_id else f"best (highest {metric})"
        md += ["## Confusion matrix", "", f"The {what} run, {row.run_id}: rows are true classes, normalised to 1.", "",
               *_figure(out, plots.plot_confusion(row), f"confusion_{row.run_id}", f"confusion matrix {row.run_id}")]
    page = out / "report.md"
    page.write_text("\n".join(md).rstrip("\n") + "\n")
    return page


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m analysis.report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_source_args(p)
    p.add_argument("--out", metavar="DIR", default="report", help="output folder (default: report)")
    p.add_argument("--by", metavar="KEY[,KEY...]", help="parameters to report (default: those that vary)")
    p.add_argument("--run", metavar="RUN_ID", help="confusion matrix of this run (default: the best run)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        by = parse_keys(args.by)
        df = load_from_args(args, history=True)
        for m in run_warnings(df, args.metric):
            warn(m)
        page = build_report(df, args.out, by, args.metric, args.run, args.source)
    except SourceError as e:
        print(f"analysis.report: {e}", file=sys.stderr)
        return 1
    print(page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
