"""Parameter importance of a sweep that varies several keys, as W&B's importance panel: per varying setting key
(``analysis.checks.varying_keys`` of the finished runs: replicate and environment keys left out), its correlation
with the metric and a random forest's importance for predicting it.

    python -m analysis.importance results/grid
    python -m analysis.importance wandb:ENTITY/PROJECT --sweep SWEEP_ID --metric best_accuracy --format markdown

Encoding: a key whose values are all numbers (no None, no booleans) is one numeric column; any other key
(strings, booleans, lists, None among numbers) is categorical, one 0/1 indicator column per value.

correlation: Pearson's r between the metric and the numeric column; for a categorical key, the r of the
indicator with the largest |r| (signed), its value shown in ``correlated_value``: "runs with this value score
higher (or lower)".

Pruned runs (bayes or hyperband sweeps) count where they have a history: every run is then compared at the last
epoch all of them completed (:mod:`analysis.pruned`), and the output says which epoch and how many were pruned.

rf_importance: a random forest (scikit-learn, 200 trees, fixed seed) fitted on those columns to predict the
metric; a key's importance is the sum of its columns' impurity (mean decrease in impurity) importances, so the
keys' importances add up to 1. Impurity importance rather than permutation importance: it is computed on the
training fit at no extra cost and is deterministic, permuting one indicator of a one-hot key breaks the encoding
(a run then has two values or none), and sweeps are too small to hold out runs to permute on. It favours keys
with many values; read it with the correlation.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestRegressor

from audiosweep.errors import SourceError

from . import cli
from .checks import distinct_values, run_warnings, varying_keys
from .figures import sorted_values
from .labels import axis_label, format_value
from .pruned import PRUNED, comparable
from .runs import same_value, warn
from .summarize import render

MIN_RUNS = 5
N_TREES = 200
SEED = 0
NUMERIC, CATEGORICAL = "numeric", "categorical"
COLUMNS = ["key", "label", "kind", "correlation", "correlated_value", "rf_importance"]


def is_numeric(values: pd.Series) -> bool:
    """Numbers only (booleans and None make a key categorical)."""
    return all(isinstance(v, (int, float, np.number)) and not isinstance(v, (bool, np.bool_)) and not pd.isna(v)
               for v in values)


def key_values(df: pd.DataFrame, key: str) -> list:
    """The distinct values of ``key`` in ``df``, in ascending order (None last)."""
    return sorted_values(distinct_values(df[key]))


def encode(df: pd.DataFrame, keys: list[str]) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """The model's inputs: a float column per numeric key, a 0/1 column ``key=value`` per value of a categorical
    key; and each key's columns."""
    columns: dict[str, np.ndarray] = {}
    of_key: dict[str, list[str]] = {}
    for key in keys:
        if is_numeric(df[key]):
            columns[key] = df[key].to_numpy(dtype=float)
            of_key[key] = [key]
            continue
        of_key[key] = []
        for value in key_values(df, key):
            name = f"{key}={format_value(key, value)}"
            columns[name] = np.array([same_value(v, value) for v in df[key]], dtype=float)
            of_key[key].append(name)
    return pd.DataFrame(columns, index=df.index), of_key


def forest(x: pd.DataFrame, y: pd.Series) -> RandomForestRegressor:
    """The random forest of :func:`importance`, fitted."""
    return RandomForestRegressor(n_estimators=N_TREES, random_state=SEED).fit(x.to_numpy(), y.to_numpy())


def correlation(column: pd.Series, y: pd.Series) -> float:
    """Pearson's r (NaN when either side is constant)."""
    if column.nunique() < 2 or y.nunique() < 2:
        return float("nan")
    return float(np.corrcoef(column.to_numpy(dtype=float), y.to_numpy(dtype=float))[0, 1])


def check_enough(ok: pd.DataFrame, keys: list[str], metric: str) -> None:
    if len(ok) < MIN_RUNS:
        raise SourceError(f"parameter importance needs at least {MIN_RUNS} finished (or pruned) runs with {metric}; "
                          f"there are {len(ok)}")
    if len(keys) < 2:
        raise SourceError(f"parameter importance needs at least 2 setting keys that vary across the finished runs; "
                          f"{len(keys)} vary" + (f" ({', '.join(keys)})" if keys else "")
                          + ": use analysis.summarize --by KEY for one key")


def importance(df: pd.DataFrame, metric: str = "accuracy") -> pd.DataFrame:
    """One row per varying setting key of the finished runs: ``key``, ``label`` (its axis label), ``kind``
    (numeric or categorical), ``correlation`` (see the module's docstring), ``correlated_value`` (for a
    categorical key: the value whose indicator that is) and ``rf_importance``. Most important first. The runs
    are :func:`analysis.pruned.comparable`'s."""
    ok = comparable(df, metric).runs
    keys = varying_keys(ok)
    check_enough(ok, keys, metric)
    y = ok[metric].astype(float)
    x, of_key = encode(ok, keys)
    per_column = pd.Series(forest(x, y).feature_importances_, index=x.columns)
    rows = []
    for key in keys:
        r = {col: correlation(x[col], y) for col in of_key[key]}
        top = max(r, key=lambda col: -1.0 if np.isnan(r[col]) else abs(r[col]))
        numeric = of_key[key] == [key]
        rows.append({"key": key, "label": axis_label(key), "kind": NUMERIC if numeric else CATEGORICAL,
                     "correlation": r[top], "correlated_value": "" if numeric else top.split("=", 1)[1],
                     "rf_importance": float(per_column[of_key[key]].sum())})
    out = pd.DataFrame(rows, columns=COLUMNS)
    return out.sort_values("rf_importance", ascending=False, kind="stable").reset_index(drop=True)


def display(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`importance` for people: importance in %, correlation to 3 decimals."""
    out = table[["key", "label", "kind"]].copy()
    out["rf importance %"] = [f"{100 * v:.1f}" for v in table.rf_importance]
    out["correlation"] = ["–" if pd.isna(v) else f"{v:+.3f}" for v in table.correlation]
    out["correlated value"] = [v or "–" for v in table.correlated_value]
    return out


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("analysis.importance", __doc__)
    p.add_argument("--format", choices=["table", "csv", "markdown"], default="table",
                   help="table (default), csv (raw numbers) or markdown")
    p.set_defaults(by=None)  # the shared runner reads --by; importance looks at every varying key
    return p


def command(args: argparse.Namespace, df: pd.DataFrame, by: list[str]) -> int:
    """Print the importance table (after what was compared, where pruned runs count), warnings on stderr."""
    compared = comparable(df, args.metric)
    used = compared.runs.index[compared.runs.status == PRUNED]
    for m in run_warnings(df.drop(used), args.metric):
        warn(m)
    table = importance(df, args.metric)
    if compared.note():
        print(f"{compared.note()}\n", file=sys.stderr if args.format == "csv" else sys.stdout)
    print(render(table if args.format == "csv" else display(table), args.format))
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.run(build_parser(), command, argv, history=False)


if __name__ == "__main__":
    sys.exit(main())
