"""The report as a folder: for every parameter that varies across runs, its table (mean ± std per value) and
figures; the per-fold table and bars when folds vary; ensembles over trial_num when runs differing only in it have
predictions (``analysis.ensemble``); the best run's confusion matrix; all on ``report.md``.

    python -m analysis.report results/smoke                              # into reports/smoke
    python -m analysis.report results --sweep hop_length --out reports/hop   # one sweep of several

Parameters that vary are Config keys taking more than one value among finished runs, apart from the keys
allowed to differ within a group (``analysis.checks.NUISANCE_KEYS``); ``--by`` names them instead. The sections
are :func:`analysis.plan.sections`; ``analysis/report.ipynb`` shows the same sections from the same functions.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from audiosweep.errors import SourceError
from audiosweep.results import TEST_METRIC

from . import cli, compare, ensemble, importance, interactions, plan, pruned, reproduce
from .checks import comparison_warnings, group_warnings, run_warnings, varying_keys
from .context import context_markdown
from .figures import confused_pairs, save
from .labels import md_escape
from .paths import report_dir
from .runs import finished, warn
from .summarize import display_folds, display_table, fold_table, fold_warnings, group_stats, render, test_column

IMPORTANCE_INTRO = ("Random-forest importance (200 trees on the varying keys, one-hot for categorical ones; sums to "
                    "100 %) and Pearson correlation with the metric; for a categorical key, that of its most "
                    "correlated value's indicator.")
FOLDS_INTRO = ("Rows per fold: mean ± std over its trials; then over all runs, and the mean (± std) of the "
               "per-fold means.")


@dataclass
class Part:
    """One section as written: its title, Markdown text (table, or why nothing is drawn), warnings, figures."""

    title: str
    text: str
    warnings: list[str]
    images: list[tuple[str, Path]]  # (what it shows, PNG file)

    def markdown(self, images: bool = True) -> str:
        """The section's Markdown; ``images``: with links to its PNG files (relative to the report's folder)."""
        lines = [f"## {self.title}", "", self.text, "", *_bullets(self.warnings)]
        for alt, png in self.images if images else []:
            lines += [f"![{alt}]({png.name})", ""]
        return "\n".join(lines)


def report_keys(df: pd.DataFrame, by: list[str] | None = None, metric: str = "accuracy") -> list[str]:
    """The parameters the report covers: ``by``, else every key that varies across finished runs."""
    return list(by) if by else varying_keys(finished(df, metric))


def _bullets(messages: list[str]) -> list[str]:
    return [*(f"> warning: {md_escape(m)}  " for m in messages), ""] if messages else []


def header(df: pd.DataFrame, metric: str = "accuracy", source: str = "") -> str:
    """The page's title, what the runs are and what the numbers mean, and warnings about the runs."""
    ok = finished(df, metric)
    sweeps = md_escape(", ".join(sorted(s or "(no sweep)" for s in df.sweep.unique())))
    return "\n".join([f"# Results{': ' + md_escape(source) if source else ''}", "",
                      f"{len(df)} runs ({len(ok)} finished with {metric}) from sweep(s) {sweeps}. Accuracy is the "
                      f"{_measured(metric)} in %, mean ± sample std over runs; min and max over runs."
                      + _test_note(ok, metric), "", context_markdown(df, metric), *_bullets(run_warnings(df, metric))])


def _measured(metric: str) -> str:
    if metric == TEST_METRIC:
        return "accuracy on the held-out test clips (test_fold or test_pct) of the epoch chosen on validation"
    return f"validation {metric.replace('_', ' ')}"


def _test_note(ok: pd.DataFrame, metric: str) -> str:
    """What the test_accuracy column is, where the tables have one."""
    if not test_column(ok, metric):
        return ""
    return (f" {int(ok[TEST_METRIC].notna().sum())} runs held clips out as a test set (test_fold or test_pct): "
            f"column {TEST_METRIC} is their accuracy there, of the epoch chosen on validation.")


def write_section(df: pd.DataFrame, section: plan.Section, out: str | Path, metric: str = "accuracy") -> Part:
    """Write ``section``'s table (CSV) and figures (PNG and SVG) into ``out``; return what the page shows."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    text, warnings = section.note, []
    if section.kind == plan.PARAMETER:
        stats = group_stats(df, section.by, metric)
        stats.to_csv(out / f"{metric}_by_{section.by[0] if section.by else 'all'}.csv", index=False)
        text = render(display_table(stats, section.by, df, metric), "markdown")
        warnings = group_warnings(df, section.by, metric) + comparison_warnings(df, section.by, metric)
        if section.by and len(stats) > 1:
            key = section.by[0]
            table, ref, why, messages = compare.compare_table(df, key, metric)
            table.to_csv(out / f"compare_{key}.csv", index=False)
            text += (f"\n\n{md_escape(compare.header(key, ref, why, metric, table))}\n\n"
                     + render(compare.display_compare(table, key, df, metric), "markdown"))
            warnings += messages
    elif section.kind == plan.IMPORTANCE:
        table = importance.importance(df, metric)
        table.to_csv(out / "importance.csv", index=False)
        means = interactions.display_table(*interactions.mean_table(df, *section.by, metric))
        note = pruned.comparable(df, metric).note()
        text = (f"{IMPORTANCE_INTRO}{' ' + note.capitalize() + '.' if note else ''}\n\n"
                f"{render(importance.display(table), 'markdown')}\n\nMean {metric} by "
                f"{section.by[0]} (rows) and {section.by[1]} (columns), the two most important keys:\n\n"
                + render(means.reset_index(), "markdown"))
    elif section.kind == plan.FOLDS:
        table = fold_table(df, section.by, metric)
        table.to_csv(out / "folds.csv", index=False)
        text = f"{FOLDS_INTRO}\n\n{render(display_folds(table, section.by, df, metric), 'markdown')}"
        warnings = fold_warnings(df, section.by, metric)
    elif section.kind == plan.CONFUSION and section.run is not None:
        pairs = confused_pairs(section.run)
        pairs.to_csv(out / f"confused_pairs_{section.run.run_id}.csv", index=False)
        shown = pairs.assign(share_of_true=[f"{100 * v:.0f} %" for v in pairs.share_of_true])
        text += ("\n\nIts most confused pairs (clips of the true class predicted as the other; share of the true "
                 "class's clips):\n\n" + (render(shown, "markdown") if len(pairs) else "none: every clip right."))
    elif section.kind == plan.ENSEMBLE:
        found = ensemble.report_result(df)
        if found:
            text, warnings = ensemble.report_text(*found, out)
    images = [(figure.alt, save(figure.draw(), out, figure.name)[0]) for figure in section.figures]
    return Part(section.title, text, warnings, images)


def write_page(out: str | Path, head: str, parts: list[Part]) -> Path:
    """``report.md`` in ``out``: ``head``, then every part."""
    page = Path(out) / "report.md"
    page.write_text("\n".join([head, *(part.markdown() for part in parts)]).rstrip("\n") + "\n")
    return page


def build_report(df: pd.DataFrame, out: str | Path, by: list[str] | None = None, metric: str = "accuracy",
                 run_id: str | None = None, source: str = "", published: pd.DataFrame | None = None,
                 published_source: str = "") -> Path:
    """Write figures (PNG and SVG), tables (CSV) and ``report.md`` into ``out``; return the page's path. With
    ``published`` runs, a last section compares ours with them per group of the report's keys
    (``analysis.reproduce``)."""
    if finished(df, metric).empty:
        raise SourceError(f"no finished runs with {metric} in {source or 'the runs given'}: nothing to report")
    keys = report_keys(df, by, metric)
    parts = [write_section(df, s, out, metric) for s in plan.sections(df, keys, metric, run_id)]
    if published is not None:
        parts.append(Part(*reproduce.section(df, published, keys, out, metric, published_source)))
    return write_page(out, header(df, metric, source), parts)


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("analysis.report", __doc__)
    p.add_argument("--out", metavar="DIR", help="output folder (default: reports/NAME, NAME being --sweep or the "
                   "name of SOURCE's folder)")
    p.add_argument("--by", metavar="KEY[,KEY...]", help="parameters to report (default: those that vary)")
    p.add_argument("--run", metavar="RUN_ID", help="confusion matrix of this run (default: the best run)")
    reproduce.add_published_args(p, required=False)
    return p


def command(args: argparse.Namespace, df: pd.DataFrame, by: list[str]) -> int:
    """Warn about the runs, write the report and print its page's path."""
    for m in run_warnings(df, args.metric):
        warn(m)
    out = args.out or report_dir(args.source, args.sweep)
    published = reproduce.load_published(args) if args.published else None
    print(build_report(df, out, by, args.metric, args.run, args.source, published, args.published))
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.run(build_parser(), command, argv)


if __name__ == "__main__":
    sys.exit(main())
