"""Deep ensembles from result records: average the softmax outputs of runs that differ only in the ``--over``
key(s) (the seed, ``trial_num``; or ``arch,trial_num`` across architectures) and compare with the single runs.

    python -m analysis.ensemble results/stacked --over trial_num --by stacked_win_lengths
    python -m analysis.ensemble results/ensemble_densenet --over trial_num --folds
    python -m analysis.ensemble results/final --over arch,trial_num --folds --format markdown --out reports/ens

A group is the finished runs sharing every config value apart from the ``--over`` keys and the replicate and
environment keys analysis pools (``analysis.checks.NUISANCE_KEYS``), except ``fold``: runs of different folds
have different validation sets and are never averaged. Keys other than ``--by`` that tell groups apart are shown
as columns too. Members are read from their predictions files (``<run_id>.preds.npz``; ``--tta``: the
test-time-augmented ``<run_id>.tta.preds.npz``; ``--test``: the held-out test clips' ``<run_id>.test.preds.npz``,
which runs of other ``test_fold`` never share); a run without one is left out with a warning. Every accuracy is
computed from those files: the single runs' mean ± sample std, the ensemble's (argmax of the mean softmax output)
and the gain in points. Members must hold the same validation clips (``filenames``, realigned when their order
differs), classes and labels; a group whose members do not is refused with an error naming them, never averaged
(exit status 1, after the other groups). ``--folds``: one ensemble per fold, then the mean ± std over folds.

The size table is ensemble accuracy against ensemble size k = 1..M, averaged over every subset of k members when
there are at most 200 of them, else over the first k members of 200 seeded random orderings (column ``subsets``).
k = 1 is the mean single run, k = M the ensemble. ``--out DIR`` writes both tables (CSV) and the size figure.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from audiosweep.config import FIELDS, unknown_key_message
from audiosweep.errors import SourceError
from audiosweep.results import RunFiles, load_predictions

from . import cli
from .checks import NUISANCE_KEYS, run_warnings, varying_keys
from .figures import plot_ensemble_sizes, save
from .labels import format_value
from .paths import is_export
from .runs import finished, is_missing, warn
from .summarize import number_cells, plus_minus, render

MAX_SUBSETS = 200  # subsets of one size averaged exactly up to this many, else as many random orderings
SEED = 0
FOLD_MEAN = "mean over folds"


@dataclass
class Member:
    """One run's validation predictions, rows sorted by clip name."""

    run_id: str
    probs: np.ndarray
    targets: np.ndarray
    classes: tuple[str, ...]
    filenames: tuple[str, ...]


@dataclass
class Ensemble:
    """One group of runs averaged together (``error``: why it was refused instead)."""

    values: dict  # the group's config values (shown columns and fold)
    members: list[Member] = field(default_factory=list)
    error: str | None = None

    @property
    def run_ids(self) -> list[str]:
        return [m.run_id for m in self.members]

    def singles(self) -> np.ndarray:
        return np.array([accuracy(m.probs, m.targets) for m in self.members])

    def accuracy(self) -> float:
        return accuracy(np.mean([m.probs for m in self.members], axis=0), self.members[0].targets)

    def informative(self) -> bool:
        """False when every member predicted the very same probabilities (the ensemble is each of them)."""
        return any(not np.array_equal(m.probs, self.members[0].probs) for m in self.members[1:])

    def sizes(self) -> pd.DataFrame:
        return size_curve(np.stack([m.probs for m in self.members]), self.members[0].targets)


@dataclass
class Result:
    ensembles: list[Ensemble]  # groups of two or more members, averaged
    refused: list[Ensemble]  # groups whose members' validation sets differ
    cols: list[str]  # config columns telling groups apart (without fold)
    warnings: list[str]


def accuracy(probs: np.ndarray, targets: np.ndarray) -> float:
    return float((probs.argmax(1) == targets).mean())


def _subsets(m: int, k: int, rng: np.random.Generator) -> tuple[list, str]:
    n = math.comb(m, k)
    if n <= MAX_SUBSETS:
        return list(itertools.combinations(range(m), k)), f"all {n}"
    return [rng.permutation(m)[:k] for _ in range(MAX_SUBSETS)], f"{MAX_SUBSETS} random"


def size_curve(probs: np.ndarray, targets: np.ndarray) -> pd.DataFrame:
    """Accuracy of the mean of ``probs`` (members x clips x classes) over subsets of each size k = 1..M: mean and
    sample std over the subsets (k = 1: the single runs' mean ± std), and which subsets (every one, or the first k
    of seeded random orderings)."""
    rng = np.random.default_rng(SEED)
    rows = []
    for k in range(1, len(probs) + 1):
        subsets, which = _subsets(len(probs), k, rng)
        accs = np.array([accuracy(probs[list(s)].sum(0), targets) for s in subsets])
        std = accs.std(ddof=1) if len(accs) > 1 else 0.0
        rows.append({"k": k, "subsets": which, "mean": accs.mean(), "std": std})
    return pd.DataFrame(rows)


def parse_over(text: str, by: list[str]) -> list[str]:
    """``--over a,b``: known Config keys, not fold (see ``--folds``) and none of ``--by``."""
    keys = [k.strip() for k in text.split(",") if k.strip()]
    if not keys:
        raise SourceError("--over: give the key(s) the ensemble's members differ in, e.g. --over trial_num")
    bad = [unknown_key_message(k) for k in keys if k not in FIELDS]
    if bad:
        raise SourceError("--over: " + "; ".join(bad))
    if "fold" in keys:
        raise SourceError("--over fold: runs of different folds have different validation clips and cannot be "
                          "averaged; pass --folds for one ensemble per fold and the mean over folds")
    both = [k for k in keys if k in by]
    if both:
        raise SourceError(f"{', '.join(both)}: in both --over and --by; a key the members differ in is no group "
                          "column")
    return keys


def load_member(row: pd.Series, tta: bool = False, test: bool = False) -> Member | None:
    """The run's predictions sorted by clip name, None when it has no file; a RecordError for a broken one."""
    if not isinstance(row.record_path, str):
        return None
    path = RunFiles(Path(row.record_path)).predictions(tta, test)
    if not path.is_file():
        return None
    probs, targets, classes, names = load_predictions(path)
    n = len(names)
    if len(set(names.tolist())) != n:
        raise SourceError(f"{path}: repeats clip names, so its rows cannot be matched with other runs'")
    order = np.argsort(names, kind="stable")
    return Member(str(row.run_id), probs[order].astype(np.float64), targets[order],
                  tuple(map(str, classes)), tuple(map(str, names[order])))


def _clips(sample: set[str]) -> str:
    shown = sorted(sample)[:3]
    return ", ".join(shown) + (", ..." if len(sample) > 3 else "")


def mismatch(members: list[Member]) -> str | None:
    """Why ``members`` cannot be averaged (other clips, classes or labels than the first member's), or None."""
    ref, problems = members[0], []
    for m in members[1:]:
        mine, theirs = set(m.filenames), set(ref.filenames)
        if mine != theirs:
            extra, missing = mine - theirs, theirs - mine
            problems.append(f"{m.run_id} ({len(mine)} clips) vs {ref.run_id} ({len(theirs)} clips): "
                            + "; ".join(filter(None, [extra and f"{len(extra)} only in {m.run_id} ({_clips(extra)})",
                                                      missing and f"{len(missing)} only in {ref.run_id} "
                                                                  f"({_clips(missing)})"])))
        elif m.classes != ref.classes:
            problems.append(f"{m.run_id} vs {ref.run_id}: other classes or class order")
        elif not np.array_equal(m.targets, ref.targets):
            problems.append(f"{m.run_id} vs {ref.run_id}: labels differ for {int((m.targets != ref.targets).sum())} "
                            "clips")
    return "; ".join(problems) or None


def _key(values) -> str:
    return json.dumps([None if is_missing(v) else v for v in values], default=str)


def _label(values: dict) -> str:
    return " ".join(f"{k}={'none' if is_missing(v) else v}" for k, v in values.items())


def analyse(df: pd.DataFrame, over: list[str], by: list[str] | None = None, tta: bool = False,
            test: bool = False) -> Result:
    """Every ensemble of ``df``'s finished runs over the keys ``over`` (one per fold), grouped as the module says;
    ``test``: of their held-out test clips' predictions."""
    by = [k for k in by or [] if k != "fold"]
    ok = finished(df)
    if ok.empty:
        raise SourceError("no finished runs: nothing to ensemble")
    pooled = (NUISANCE_KEYS - {"fold", "test_fold"}) | set(over)  # other held-out clips: never averaged
    keys = [k for k in FIELDS if k not in pooled]
    cols = by + varying_keys(ok, pooled | {"fold", *by})
    warnings = []
    groups: dict[str, list[pd.Series]] = {}
    for _, row in ok.iterrows():
        groups.setdefault(_key(row[k] for k in keys), []).append(row)
    ensembles, refused, missing, singles = [], [], [], []
    for rows in groups.values():
        rows.sort(key=lambda r: (_key(r[k] for k in over), str(r.run_id)))
        members = []
        for row in rows:
            member = load_member(row, tta, test)
            if member is None:
                missing.append(str(row.run_id))
            else:
                members.append(member)
        group = Ensemble({**{k: rows[0][k] for k in cols}, "fold": rows[0].fold}, members)
        if len(members) < 2:
            singles.append(_label(group.values))
            continue
        group.error = mismatch(members)
        (refused if group.error else ensembles).append(group)
    name = RunFiles.of("", "<run_id>").predictions(tta, test).name
    if missing:
        warnings.append(f"{len(missing)} finished run(s) left out, no {name} beside the record: "
                        + ", ".join(missing[:8]) + (", ..." if len(missing) > 8 else ""))
    if singles:
        warnings.append(f"{len(singles)} group(s) with fewer than 2 runs with predictions, no ensemble: "
                        + "; ".join(singles[:4]) + ("; ..." if len(singles) > 4 else ""))
    return Result(ensembles, refused, cols, warnings)


def ensemble_table(result: Result) -> pd.DataFrame:
    """One row per ensemble: its columns, fold, members, single runs' mean and std, ensemble, gain (fractions)."""
    rows = []
    for e in result.ensembles:
        singles = e.singles()
        acc = e.accuracy()
        rows.append({**e.values, "members": len(e.members), "single_mean": singles.mean(),
                     "single_std": singles.std(ddof=1), "ensemble": acc, "gain": acc - singles.mean(),
                     "run_ids": " ".join(e.run_ids)})
    table = pd.DataFrame(rows, columns=[*result.cols, "fold", "members", "single_mean", "single_std", "ensemble",
                                        "gain", "run_ids"])
    return table.sort_values("ensemble", ascending=False, kind="stable").reset_index(drop=True)


def _blocks(table: pd.DataFrame, cols: list[str]) -> list[tuple[dict, pd.DataFrame]]:
    """``table``'s rows per group of ``cols`` (e.g. every fold of one configuration), in first-seen order."""
    blocks: dict[str, tuple[dict, list]] = {}
    for i, row in table.iterrows():
        blocks.setdefault(_key(row[k] for k in cols), ({k: row[k] for k in cols}, []))[1].append(i)
    return [(values, table.loc[idx]) for values, idx in blocks.values()]


def fold_table(result: Result) -> pd.DataFrame:
    """Per group of the shown columns: one row per fold, then the mean ± std over folds of the per-fold single
    means (``single_std``: their std) and of the per-fold ensembles (``ensemble_std``), ``members`` = folds."""
    table = ensemble_table(result)
    rows = []
    blocks = sorted(_blocks(table, result.cols), key=lambda b: -b[1].ensemble.mean())  # best first
    for values, g in blocks:
        g = g.sort_values("fold", kind="stable")
        rows += [{**r, "fold": str(r["fold"]), "ensemble_std": float("nan")} for r in g.to_dict("records")]
        rows.append({**values, "fold": FOLD_MEAN, "members": len(g), "single_mean": g.single_mean.mean(),
                     "single_std": g.single_mean.std(), "ensemble": g.ensemble.mean(),
                     "ensemble_std": g.ensemble.std(), "gain": g.gain.mean(), "run_ids": ""})
    return pd.DataFrame(rows, columns=[*result.cols, "fold", "members", "single_mean", "single_std", "ensemble",
                                       "ensemble_std", "gain", "run_ids"])


def sizes_table(result: Result, folds: bool = False) -> pd.DataFrame:
    """Ensemble accuracy per size k for each ensemble; ``folds``: the mean over folds of the per-fold curves of
    each group (k up to its smallest fold's number of members)."""
    rows = []
    for e in result.ensembles:
        rows += [{**e.values, **r} for r in e.sizes().to_dict("records")]
    table = pd.DataFrame(rows, columns=[*result.cols, "fold", "k", "subsets", "mean", "std"])
    if not folds or table.empty:
        return table
    rows = []
    for values, g in _blocks(table, result.cols):
        smallest = g.groupby("fold").k.max().min()  # sizes every fold has
        for k, gk in g[g.k <= smallest].groupby("k"):
            rows.append({**values, "k": k, "folds": len(gk), "subsets": " / ".join(dict.fromkeys(gk.subsets)),
                         "mean": gk["mean"].mean(), "std": gk["mean"].std()})
    return pd.DataFrame(rows, columns=[*result.cols, "k", "folds", "subsets", "mean", "std"])


def _values(table: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    return pd.DataFrame({k: [format_value(k, v) for v in table[k]] for k in cols}, index=table.index)


def display(table: pd.DataFrame, cols: list[str], folds: bool = False) -> pd.DataFrame:
    """``ensemble_table`` / ``fold_table`` for people: values with units, accuracies in %, gain in points."""
    out = _values(table, cols)
    out["fold"] = table.fold.astype(str)
    out["members"] = [f"{n} folds" if f == FOLD_MEAN else str(n) for f, n in zip(table.fold, table.members,
                                                                                   strict=True)]
    out["single % (mean ± std)"] = plus_minus(table.single_mean, table.single_std, 100, 2)
    out["ensemble %"] = (plus_minus(table.ensemble, table.ensemble_std, 100, 2) if folds else
                         number_cells(table.ensemble, 100, 2))
    out["ensemble %"] = [e.removesuffix(" ± –") for e in out["ensemble %"]]
    out["gain (points)"] = [f"{100 * g:+.2f}" for g in table.gain]
    return out


def display_sizes(table: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    out = _values(table, cols)
    for col in ("fold", "folds"):
        if col in table:
            out[col] = table[col].astype(str)
    out["k"] = table.k.astype(str)
    out["subsets"] = table.subsets
    out["ensemble % (mean ± std over subsets)" if "fold" in table else "ensemble % (mean ± std over folds)"] = \
        plus_minus(table["mean"], table["std"], 100, 2)
    return out


def refusals(result: Result) -> list[str]:
    return [f"{_label(e.values)}: not averaged, validation sets differ: {e.error}" for e in result.refused]


REPORT_OVER = ["trial_num"]
REPORT_INTRO = ("Deep ensembles over trial_num: the runs of one configuration (and fold) that differ only in their "
                "seed, their softmax outputs averaged. Single: mean ± sample std of the members' accuracies; gain: "
                "ensemble minus mean single, in points; all from the runs' predictions files.")


def report_result(df: pd.DataFrame) -> tuple[Result, bool] | None:
    """The report's ensembles (over trial_num, per fold, summarised over folds when there are several), or None
    when no group has two runs with predictions that differ."""
    try:
        result = analyse(df, REPORT_OVER)
    except SourceError:
        return None
    if not any(e.informative() for e in result.ensembles):
        return None
    return result, len({_key([e.values["fold"]]) for e in result.ensembles}) > 1


def write_tables(result: Result, folds: bool, out: Path) -> pd.DataFrame:
    """``ensembles.csv`` and ``ensemble_sizes.csv`` (raw numbers) in ``out``; returns the size table."""
    out.mkdir(parents=True, exist_ok=True)
    raw, raw_sizes = tables(result, folds, "csv")
    raw.to_csv(out / "ensembles.csv", index=False)
    raw_sizes.to_csv(out / "ensemble_sizes.csv", index=False)
    return raw_sizes


def report_text(result: Result, folds: bool, out: Path) -> tuple[str, list[str]]:
    """Write the report section's tables (``ensembles.csv``, ``ensemble_sizes.csv``) into ``out``; return its
    Markdown and warnings."""
    write_tables(result, folds, out)
    table, sizes = tables(result, folds, "markdown")
    text = (f"{REPORT_INTRO}\n\n{render(table, 'markdown')}\n\nEnsemble accuracy by ensemble size k:\n\n"
            f"{render(sizes, 'markdown')}")
    return text, result.warnings + refusals(result)


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("analysis.ensemble", __doc__)
    p.add_argument("--over", metavar="KEY[,KEY...]", required=True, help="keys the members differ in, e.g. "
                   "trial_num (seeds) or arch,trial_num (across architectures)")
    p.add_argument("--by", metavar="KEY[,KEY...]", help="group columns shown first (not in --over)")
    p.add_argument("--folds", action="store_true", help="one ensemble per fold, then mean ± std over folds")
    p.add_argument("--tta", action="store_true", help="average the test-time-augmented predictions "
                   "(<run_id>.tta.preds.npz) instead")
    p.add_argument("--test", action="store_true", help="average the held-out test clips' predictions "
                   "(<run_id>.test.preds.npz, with --tta <run_id>.test.tta.preds.npz) of runs with test_fold or "
                   "test_pct instead")
    p.add_argument("--sizes", action="store_true", help="print only the ensemble-size table")
    p.add_argument("--format", choices=["table", "csv", "markdown"], default="table",
                   help="table (default), csv (raw numbers, accuracy as a fraction) or markdown")
    p.add_argument("--out", metavar="DIR", help="write ensembles.csv, ensemble_sizes.csv and the figure "
                   "ensemble_sizes (PNG, SVG) here")
    return p


def tables(result: Result, folds: bool, fmt: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ensemble and size tables as printed: raw for csv, for people otherwise."""
    table = fold_table(result) if folds else ensemble_table(result)
    sizes = sizes_table(result, folds)
    if fmt == "csv":
        return table, sizes
    return display(table, result.cols, folds), display_sizes(sizes, result.cols)


def command(args: argparse.Namespace, df: pd.DataFrame, by: list[str]) -> int:
    """Print the ensemble table and the size table (``--sizes``: only that), warnings and refusals on stderr."""
    if args.metric != "accuracy":
        raise SourceError(f"--metric {args.metric}: predictions files hold the final epoch's outputs; ensembles "
                          "compare final accuracies")
    if is_export(args.source):
        raise SourceError(f"{args.source}: a W&B runs-table export holds no predictions; ensembles average the "
                          f"{RunFiles.of('', '<run_id>').preds.name} files beside result records (give their folder)")
    result = analyse(df, parse_over(args.over, by), by, args.tta, args.test)
    for m in run_warnings(df) + result.warnings:
        warn(m)
    errors = refusals(result)
    for m in errors:
        print(f"error: {m}", file=sys.stderr)
    if not result.ensembles:
        raise SourceError(f"no group of two or more runs with predictions to average over {args.over}"
                          + (" (every group was refused)" if errors else ""))
    table, sizes = tables(result, args.folds, args.format)
    if args.sizes:
        print(render(sizes, args.format))
    elif args.format == "csv":
        print(render(table, "csv"))
    else:
        title = "mean over folds of the per-fold curves" if args.folds else "mean over subsets"
        print(f"{render(table, args.format)}\n\nEnsemble accuracy by size k ({title}):\n\n"
              f"{render(sizes, args.format)}")
    if args.out:
        sizes = write_tables(result, args.folds, Path(args.out))
        for path in save(plot_ensemble_sizes(sizes, result.cols), Path(args.out), "ensemble_sizes"):
            print(path, file=sys.stderr)
    return 1 if errors else 0


def main(argv: list[str] | None = None) -> int:
    return cli.run(build_parser(), command, argv, history=False)


if __name__ == "__main__":
    sys.exit(main())
