"""Does a reproduction agree with published runs? Per group of ``--by KEYS``: n, mean and 95 % interval of our runs
and of the published ones, the difference ours − published with its 95 % interval (Welch's t-test), the
Holm-corrected p over the groups tested, a verdict, and each side's median run time.

    python -m analysis.reproduce results/report_hop --published fastaudio_esc50_1430_runs.csv \\
        --published_sweep zy4tbf3s --by hop_length,n_epochs
    python -m analysis.reproduce results/final --published wandb:ENTITY/PROJECT --published_sweep ID --by n_epochs \\
        --format markdown --out reports/reproduce

Where our runs held out a test set (test_fold, test_pct), their test_accuracy is compared instead of the validation
accuracy (the papers report test accuracy); so is the published side's, where it has one: the header and the columns
name what each side was measured by. Our runs (SOURCE) and the published ones (--published) come from any analysis
source; --sweep selects ours,
--published_sweep theirs. Verdicts: consistent (Holm p >= 0.05), differs (below), no test (fewer than 2 runs on
a side, or no spread), "ours only" or "published only" for groups found on one side (listed, not tested).
Warnings (stderr) name the groups whose held-fixed settings differ between the sides (Config settings other than
KEYS, constant within the group on each side; a key without a value on one side, like most of ours in a W&B
export, is not compared), and what analysis.summarize warns about each side. --out DIR writes the table
(reproduce.csv) and the figure (reproduce.png, .svg). Differences are a finding, not an error: the exit status
is 0 whatever the verdicts.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from audiosweep.config import FIELDS, SETTING, gate_keys, keys_with_role
from audiosweep.errors import SourceError
from audiosweep.results import TEST_METRIC

from . import cli
from .checks import check, distinct_values
from .compare import ALPHA, diff_cells, holm, p_cells, welch
from .figures import plot_reproduction, save, sorted_values
from .labels import format_value, group_sample_rate, md_escape
from .runs import finished, is_missing, same_value, warn
from .summarize import HIGH, LOW, interval, render

SIDES = ("ours", "published")
CONSISTENT, DIFFERS, NO_TEST = "consistent", "differs", "no test"
ONE_SIDE = {"ours": "ours only", "published": "published only"}  # the verdict of a group the other side lacks
RUNS = {"ours": "our runs", "published": "the published runs"}
NAME = "reproduce"  # the files --out (and the report's section) write: reproduce.csv, .png, .svg
HEADER = ("{metric}: ours against the published runs per group of {keys}; mean and 95 % interval (Student t over "
          "runs) of each side; differences are ours − published, Welch's t-test with its 95 % interval; Holm "
          "correction over {m} group{s} tested; consistent: Holm p >= {alpha:g}")


def add_published_args(p: argparse.ArgumentParser, required: bool) -> None:
    """``--published SOURCE`` and ``--published_sweep ID``, for this command and analysis.report."""
    p.add_argument("--published", metavar="SOURCE", required=required, help="the published runs: a folder of "
                   "result records, wandb:ENTITY/PROJECT or a W&B runs export (.csv)")
    p.add_argument("--published_sweep", metavar="ID", help="only this sweep of the published runs")


def load_published(args: argparse.Namespace) -> pd.DataFrame:
    """The runs ``--published`` and ``--published_sweep`` select, loaded as our own (``--tags`` and
    ``--filters`` select our W&B runs only)."""
    published = {"source": args.published, "sweep": args.published_sweep, "tags": None, "filters": None}
    try:
        return cli.load_from_args(argparse.Namespace(**{**vars(args), **published}), history=False)
    except SourceError as e:
        raise SourceError(f"--published: {e}") from e


def _groups(df: pd.DataFrame, by: list[str]) -> dict[tuple, pd.DataFrame]:
    """Finished runs per group of ``by`` (a missing value as None, so both sides' groups match)."""
    if not by:
        return {(): df} if len(df) else {}
    return {tuple(None if is_missing(v) else v for v in name): g
            for name, g in df.groupby(by, dropna=False, sort=False)}


def _side(runs: pd.DataFrame | None, metric: str) -> dict:
    if runs is None:
        return {"n": 0, "mean": np.nan, "std": np.nan, LOW: np.nan, HIGH: np.nan, "median_time_s": np.nan}
    low, high = interval(runs[metric])
    return {"n": len(runs), "mean": runs[metric].mean(), "std": runs[metric].std(), LOW: low, HIGH: high,
            "median_time_s": runs.wall_time_s.median()}


def _needs(key: str) -> list[str]:
    """The keys that decide whether ``key`` has an effect (an augmentation's probability, the schedule)."""
    return [*gate_keys(key), *(FIELDS[key].metadata.get("when") or {})]


def held_fixed(runs: pd.DataFrame, by: list[str]) -> dict:
    """The settings other than ``by`` that every run of ``runs`` holds, with one value each."""
    fixed = {}
    for key in keys_with_role(SETTING):
        values = distinct_values(runs[key])
        if key not in by and len(values) == 1 and not is_missing(values[0]):
            fixed[key] = values[0]
    return fixed


def fixed_differences(ours: pd.DataFrame, published: pd.DataFrame, by: list[str]) -> list[str]:
    """``key A (ours) vs B (published)`` for each setting both sides hold fixed at different values. A key counts
    only when both sides hold it (a W&B export lacks most of ours), and one whose effect hangs on others
    (gain_db on gain_p) only where those agree: else their difference says it."""
    a, b = held_fixed(ours, by), held_fixed(published, by)
    both = [k for k in a if k in b and all(n in by or (n in a and n in b and same_value(a[n], b[n]))
                                           for n in _needs(k))]
    return [f"{k} {format_value(k, a[k])} (ours) vs {format_value(k, b[k])} (published)"
            for k in both if not same_value(a[k], b[k])]


def _label(by: list[str], key: tuple) -> str:
    return " ".join(f"{k}={format_value(k, v)}" for k, v in zip(by, key, strict=True)) or "all runs"


def compared_metric(runs: pd.DataFrame, metric: str) -> str:
    """The metric a side is compared on: its held-out test accuracy where its runs have one and ``metric`` is
    the (validation) accuracy, as papers publish test accuracy; else ``metric``."""
    return TEST_METRIC if metric == "accuracy" and not finished(runs, TEST_METRIC).empty else metric


def reproduction_table(ours: pd.DataFrame, published: pd.DataFrame, by: list[str], metric: str = "accuracy"
                       ) -> tuple[pd.DataFrame, list[str]]:
    """One row per group of ``by`` found on either side (in order of the keys' values): each side's ``n``,
    ``mean``, ``std``, 95 % interval and median ``wall_time_s``; for groups on both sides the Welch test of ours
    against published (``diff``, its interval, Cohen's d, ``p``), ``p_holm`` over those tested, and ``verdict``.
    Each side is measured by :func:`compared_metric` (columns ``ours_metric``, ``published_metric``). Also the
    warnings: each side's (``analysis.checks.check``), and the groups held fixed differently."""
    loaded = {"ours": ours, "published": published}
    metrics = {side: compared_metric(df, metric) for side, df in loaded.items()}
    sides = {side: finished(df, metrics[side]) for side, df in loaded.items()}
    for side, df in sides.items():
        if df.empty:
            raise SourceError(f"no finished runs with {metrics[side]} in {RUNS[side]}")
    messages = [f"{side}: {m}" for side, df in loaded.items() for m in check(df, by, metrics[side])]
    groups = {side: _groups(df, by) for side, df in sides.items()}
    keys = sorted_values(dict.fromkeys([*groups["ours"], *groups["published"]]))
    rows = []
    for key in keys:
        a, b = groups["ours"].get(key), groups["published"].get(key)
        row = {**dict(zip(by, key, strict=True)), **{f"ours_{k}": v for k, v in _side(a, metrics["ours"]).items()},
               **{f"published_{k}": v for k, v in _side(b, metrics["published"]).items()}}
        if a is None or b is None:
            rows.append({**row, "verdict": ONE_SIDE["ours" if b is None else "published"], "note": ""})
            continue
        test = welch(a[metrics["ours"]], b[metrics["published"]])
        rows.append({**row, "diff": test["diff"], "diff_ci95_low": test["ci_low"], "diff_ci95_high": test["ci_high"],
                     "cohen_d": test["effect"], "p": test["p"], "note": test["note"]})
        differences = fixed_differences(a, b, by)
        if differences:
            messages.append(f"held-fixed settings differ: {_label(by, key)}: {'; '.join(differences)}")
    columns = [*by, *(f"{s}_{k}" for s in SIDES for k in _side(None, metric)), "diff", "diff_ci95_low",
               "diff_ci95_high", "cohen_d", "p", "p_holm", "verdict", "note", *(f"{s}_metric" for s in SIDES)]
    table = pd.DataFrame(rows, columns=columns).assign(**{f"{s}_metric": metrics[s] for s in SIDES})
    table["p_holm"] = holm(table.p.tolist())  # over the groups tested (NaN: none)
    table["verdict"] = [v if isinstance(v, str) else NO_TEST if pd.isna(p) else DIFFERS if p < ALPHA else CONSISTENT
                        for v, p in zip(table.verdict, table.p_holm, strict=True)]
    one_side = [f"{_label(by, k)} ({v})" for k, v in zip(keys, table.verdict, strict=True) if v in ONE_SIDE.values()]
    if one_side:
        messages.append(f"groups found on one side only, not tested: {', '.join(one_side)}")
    return table, messages


def _mean_cells(table: pd.DataFrame, side: str) -> list[str]:
    """``mean [low, high]`` in %, no brackets below 3 runs, "–" for a side without runs."""
    return ["–" if pd.isna(m) else f"{100 * m:.2f}" + ("" if pd.isna(lo) else f" [{100 * lo:.2f}, {100 * hi:.2f}]")
            for m, lo, hi in zip(table[f"{side}_mean"], table[f"{side}_{LOW}"], table[f"{side}_{HIGH}"], strict=True)]


def _duration(seconds: float) -> str:
    return "–" if pd.isna(seconds) else f"{seconds:.1f} s" if seconds < 60 else f"{seconds / 60:.1f} min"


def display(table: pd.DataFrame, by: list[str], df: pd.DataFrame, metric: str = "accuracy") -> pd.DataFrame:
    """``reproduction_table`` for people: values with units (sample rates from ``df``, our runs), accuracies and
    differences in points, run times in s or min."""
    out = pd.DataFrame({k: [format_value(k, v, group_sample_rate(df, k, v)) for v in table[k]] for k in by},
                       index=table.index)
    for side in SIDES:
        out[f"n {side}"] = table[f"{side}_n"].astype(int).astype(str)
        out[f"{_measured(table, side, metric)} % {side} [95 % CI]"] = _mean_cells(table, side)
    out["diff pts [95 % CI]"] = ["–" if pd.isna(d) else cell for d, cell in
                                 zip(table["diff"], diff_cells(table["diff"], table.diff_ci95_low,
                                                               table.diff_ci95_high), strict=True)]
    out["p Holm"] = p_cells(table.p_holm)
    out["verdict"] = [f"{v} ({n})" if isinstance(n, str) and n else v for v, n in zip(table.verdict, table.note,
                                                                                      strict=True)]
    for side in SIDES:
        out[f"median time {side}"] = [_duration(s) for s in table[f"{side}_median_time_s"]]
    return out


def _measured(table: pd.DataFrame, side: str, metric: str) -> str:
    """The metric ``side`` was measured by (its column, or ``metric`` for a table without one)."""
    column = f"{side}_metric"
    return str(table[column].iloc[0]) if column in table and len(table) else metric


def header(by: list[str], table: pd.DataFrame, metric: str = "accuracy") -> str:
    """The line above the table: what is compared, how, and over how many groups Holm corrects."""
    m = int(table.p.notna().sum())
    ours, theirs = (_measured(table, side, metric) for side in SIDES)
    compared = ours if ours == theirs else f"{ours} (ours) against {theirs} (published)"
    return HEADER.format(metric=compared, keys=", ".join(by) or "(all runs)", m=m, s="s" * (m != 1), alpha=ALPHA)


def write_files(table: pd.DataFrame, by: list[str], out: str | Path, metric: str = "accuracy") -> list[Path]:
    """The table as ``reproduce.csv`` and the figure as ``reproduce.png`` and ``.svg`` in ``out``; the PNG first."""
    out = Path(out)
    paths = save(plot_reproduction(table, by, metric), out, NAME)
    table.to_csv(out / f"{NAME}.csv", index=False)
    return [*paths, out / f"{NAME}.csv"]


def section(ours: pd.DataFrame, published: pd.DataFrame, by: list[str], out: str | Path, metric: str = "accuracy",
            source: str = "") -> tuple[str, str, list[str], list[tuple[str, Path]]]:
    """analysis.report's section: its title, Markdown text (the header and the table), warnings and figure, the
    files written into ``out``."""
    table, messages = reproduction_table(ours, published, by, metric)
    png = write_files(table, by, out, metric)[0]
    text = f"{header(by, table, metric)}\n\n{render(display(table, by, ours, metric), 'markdown')}"
    return (f"Reproduction: against {md_escape(source) if source else 'the published runs'}", text, messages,
            [("ours vs the published runs", png)])


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("analysis.reproduce", __doc__)
    p.add_argument("--by", metavar="KEY[,KEY...]", required=True, help="the groups compared, e.g. "
                   "hop_length,n_epochs")
    add_published_args(p, required=True)
    p.add_argument("--format", choices=["table", "csv", "markdown"], default="table",
                   help="table (default), csv (raw numbers, accuracy and differences as fractions) or markdown")
    p.add_argument("--out", metavar="DIR", help="also write the table (reproduce.csv) and the figure "
                   "(reproduce.png, .svg) into DIR")
    return p


def command(args: argparse.Namespace, df: pd.DataFrame, by: list[str]) -> int:
    """Print the comparison (with csv, the header line and the files written go to stderr); 0 even when groups
    differ."""
    table, messages = reproduction_table(df, load_published(args), by, args.metric)
    for m in messages:
        warn(m)
    notes = sys.stderr if args.format == "csv" else sys.stdout
    print(header(by, table, args.metric) + ("" if args.format == "csv" else "\n"), file=notes)
    print(render(table if args.format == "csv" else display(table, by, df, args.metric), args.format))
    for path in write_files(table, by, args.out, args.metric) if args.out else []:
        print(path, file=notes)
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.run(build_parser(), command, argv, history=False)


if __name__ == "__main__":
    sys.exit(main())
