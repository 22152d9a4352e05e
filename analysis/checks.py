"""Warnings about summarising runs: runs left out of the statistics, sweeps pooled, groups of unequal size or
whose runs differ in parameters other than those allowed to (:data:`NUISANCE_KEYS`), groups compared that ran
different numbers of epochs or on different datasets, and groups too small for a confidence interval."""

from __future__ import annotations

import json

import pandas as pd

from audiosweep.config import ENVIRONMENT, FIELDS, REPLICATE, keys_with_role
from audiosweep.display import short_number
from audiosweep.errors import SourceError

from .runs import finished, is_missing

# Keys allowed to differ between runs pooled in one group: the replicates (trial, fold) and the keys that say
# where things live and how a run executes, not what it computes.
NUISANCE_KEYS = frozenset(keys_with_role(REPLICATE, ENVIRONMENT))

# A t interval from 2 runs is formally defined but so wide (t = 12.7) that it says nothing: ask for 3.
MIN_CI_RUNS = 3

# What must match between groups compared: the epochs asked for, those run (the summary's ``epochs``, or the
# history's length), and the dataset.
COMPARED = {"n_epochs": "numbers of epochs (n_epochs)", "epochs": "numbers of epochs run",
            "dataset": "datasets (dataset)"}


def distinct_values(values) -> list:
    """Distinct values in first-seen order (None, floats and tuples alike)."""
    seen = {}
    for v in values:
        seen.setdefault(_cell_key(v), v)
    return list(seen.values())


def _cell_key(v) -> object:
    """A key equal for values JSON writes alike: scalars by type and value (a float by its repr, as JSON writes
    it: every NaN alike, -0.0 apart from 0.0), anything else (tuples, lists, dicts) by its JSON text, slower."""
    t = type(v)
    if v is None or t is str or t is int or t is bool:
        return t, v
    if t is float:
        return t, repr(v)
    return json.dumps(v, sort_keys=True, default=str)


def varying_keys(df: pd.DataFrame, ignore: set[str] = NUISANCE_KEYS) -> list[str]:
    """Config keys (in Config order) taking more than one value across ``df``."""
    return [k for k in FIELDS if k not in ignore and len(distinct_values(df[k])) > 1]


def sweep_message(df: pd.DataFrame) -> str | None:
    """A warning when ``df`` pools runs of more than one sweep."""
    counts = df.sweep.value_counts(sort=False)
    if len(counts) < 2:
        return None
    listed = ", ".join(f"{name or '(no sweep)'} ({n} runs)" for name, n in sorted(counts.items()))
    return f"runs from {len(counts)} sweeps are pooled: {listed}; pass --sweep NAME to analyse one"


def run_warnings(df: pd.DataFrame, metric: str = "accuracy") -> list[str]:
    """Warnings about the runs themselves: sweeps pooled, runs left out of the statistics."""
    messages = [m for m in [sweep_message(df)] if m]
    left_out = df[~df.index.isin(finished(df, metric).index)]
    if len(left_out):
        states = left_out.status.where(left_out.status != "finished", f"finished without {metric}")
        counts = ", ".join(f"{s}: {n}" for s, n in states.value_counts().items())
        ids = ", ".join(left_out.run_id.head(5)) + (", ..." if len(left_out) > 5 else "")
        messages.append(f"{len(left_out)} of {len(df)} runs left out of the statistics ({counts}): {ids}")
    return messages


def group_warnings(df: pd.DataFrame, by: list[str], metric: str = "accuracy") -> list[str]:
    """Warnings about pooling finished runs into groups ``by``: groups of unequal size, and runs in one group
    whose other parameters differ (apart from :data:`NUISANCE_KEYS`)."""
    ok = finished(df, metric)
    if ok.empty:
        return []
    messages = []
    groups = list(ok.groupby(by, dropna=False, sort=False)) if by else [((), ok)]
    by_size: dict[int, list[str]] = {}
    for name, g in groups:
        by_size.setdefault(len(g), []).append(_label(by, name))
    if len(by_size) > 1:
        listed = "; ".join(f"{n} runs: {', '.join(names[:6])}{', ...' if len(names) > 6 else ''}"
                           for n, names in sorted(by_size.items(), reverse=True))
        messages.append(f"unequal group sizes: {listed}")
    differing: dict[str, list] = {}
    for _, g in groups:
        for key in varying_keys(g, NUISANCE_KEYS | set(by)):
            differing[key] = distinct_values([*differing.get(key, []), *g[key]])
    if differing:
        listed = "; ".join(f"{k} ({', '.join(map(str, v[:5]))}{', ...' if len(v) > 5 else ''})"
                           for k, v in differing.items())
        messages.append(f"runs within a group differ in other parameters: {listed}; add them to --by or select "
                        "runs of one configuration")
    return messages


def check(df: pd.DataFrame, by: list[str], metric: str = "accuracy") -> list[str]:
    """Every warning about summarising ``df`` in groups ``by``."""
    return run_warnings(df, metric) + group_warnings(df, by, metric)


def require_folds(df: pd.DataFrame, metric: str = "accuracy") -> None:
    """Per-fold results need runs that say which fold they used: a SourceError when no finished run does (a W&B
    export without a fold column)."""
    ok = finished(df, metric)
    if len(ok) and ok.fold.isna().all():
        raise SourceError("--folds: no run says which fold it used (the source has no fold values); leave --folds "
                          "out")


def _label(by: list[str], name: tuple) -> str:
    """``key=value ...`` of a group (pandas turns a None group key into NaN: shown as none)."""
    return " ".join(f"{k}={'none' if is_missing(v) else v}" for k, v in zip(by, name, strict=True)) or "all runs"


def _groups(ok: pd.DataFrame, by: list[str]) -> list[tuple[str, pd.DataFrame]]:
    return [(_label(by, name), g) for name, g in ok.groupby(by, dropna=False, sort=False)] if by else \
        [("all runs", ok)]


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'s' * (n != 1)}"


def _shown(values: list) -> str:
    return ", ".join(map(short_number, values))


def comparison_warnings(df: pd.DataFrame, by: list[str], metric: str = "accuracy") -> list[str]:
    """Warnings when the finished runs compared ran different numbers of epochs or used different datasets,
    naming each group's values. Keys in ``by`` are compared on purpose; n_epochs also explains epochs run, so
    epochs run are only named when n_epochs is the same (or compared on purpose)."""
    ok = finished(df, metric)
    skip = set(by) | ({"epochs"} if "n_epochs" in by else set())
    messages = []
    for key, what in COMPARED.items():
        if key in skip or len(distinct_values(ok[key])) < 2:
            continue
        if key == "n_epochs":
            skip.add("epochs")
        listed = "; ".join(f"{label}: {_shown(distinct_values(g[key]))}" for label, g in _groups(ok, by))
        messages.append(f"the runs compared ran different {what}: {listed}; compare like with like or add "
                        f"{key if key != 'epochs' else 'n_epochs'} to --by")
    return messages


def interval_warnings(df: pd.DataFrame, by: list[str], metric: str = "accuracy", folds: bool = False) -> list[str]:
    """Which groups get no confidence interval (fewer than :data:`MIN_CI_RUNS` runs); with ``folds``, which folds,
    and which groups have too few folds for an interval of the mean of fold means."""
    ok = finished(df, metric)
    if ok.empty:  # run_warnings already says why
        return []
    small = [f"{label} ({_count(len(g), 'run')})"
             for label, g in _groups(ok, [*by, "fold"] if folds else by) if len(g) < MIN_CI_RUNS]
    messages = [f"no 95 % CI for {'; '.join(small)}: an interval needs at least {MIN_CI_RUNS} runs"] if small else []
    if folds:
        few = [f"{label} ({_count(g.fold.nunique(), 'fold')})" for label, g in _groups(ok, by)
               if g.fold.nunique() < MIN_CI_RUNS]
        if few:
            messages.append(f"no 95 % CI for the mean of fold means of {'; '.join(few)}: an interval needs at "
                            f"least {MIN_CI_RUNS} folds")
    return messages
