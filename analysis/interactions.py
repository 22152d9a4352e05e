"""How two or more parameters act together: the mean metric per pair of values of two keys (a table and an
annotated heatmap), and a parallel-coordinates figure of every finished run across the varying setting keys.

    python -m analysis.interactions results/grid --by n_mels,hop_length --out figures/
    python -m analysis.interactions wandb:ENTITY/PROJECT --sweep SWEEP_ID --by arch,lr --out figures/

Writes ``heatmap_<a>_<b>.png`` and ``parallel_coordinates.png`` into ``--out``, prints the heatmap's table
(mean % and n per cell) and then the files' paths.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.collections import LineCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from audiosweep.errors import SourceError

from . import cli
from .checks import check, varying_keys
from .figures import save, sweep_title
from .importance import is_numeric, key_values
from .labels import axis_label, format_value, group_sample_rate
from .runs import finished, same_value, select, warn
from .summarize import render

# A numeric key whose largest value is more than this times its smallest (all > 0) gets a log axis.
LOG_SPAN = 10
CMAP = "viridis"


def _names(ok: pd.DataFrame, key: str, values: list) -> list[str]:
    return [format_value(key, v, group_sample_rate(ok, key, v)) for v in values]


def mean_table(df: pd.DataFrame, a: str, b: str, metric: str = "accuracy") -> tuple[pd.DataFrame, pd.DataFrame]:
    """The mean ``metric`` of the finished runs and their number per value of ``a`` (rows) and ``b`` (columns),
    labelled with the values as :func:`analysis.labels.format_value` shows them, in ascending order; NaN and 0
    for pairs no run tried."""
    ok = finished(df, metric)
    rows, cols = key_values(ok, a), key_values(ok, b)
    means = np.full((len(rows), len(cols)), np.nan)
    counts = np.zeros((len(rows), len(cols)), dtype=int)
    for i, u in enumerate(rows):  # by value, not groupby: list-valued keys (tuples) make no index
        sub = select(ok, a, u)
        for j, v in enumerate(cols):
            cell = select(sub, b, v)[metric]
            counts[i, j] = len(cell)
            means[i, j] = cell.mean() if len(cell) else np.nan
    index = pd.Index(_names(ok, a, rows), name=a)
    columns = pd.Index(_names(ok, b, cols), name=b)
    return pd.DataFrame(means, index, columns), pd.DataFrame(counts, index, columns)


def display_table(means: pd.DataFrame, counts: pd.DataFrame) -> pd.DataFrame:
    """:func:`mean_table` for people: a column of ``a``'s values, cells ``mean % (n=N)``."""
    out = pd.DataFrame({f"{means.index.name} \\ {means.columns.name}": means.index})
    for col in means.columns:
        out[col] = ["–" if n == 0 else f"{100 * m:.2f} (n={n})" for m, n in zip(means[col], counts[col], strict=True)]
    return out


def plot_heatmap(df: pd.DataFrame, a: str, b: str, metric: str = "accuracy") -> Figure:
    """Mean ``metric`` per value of ``a`` (rows) and ``b`` (columns), each cell annotated with the mean and n."""
    means, counts = mean_table(df, a, b, metric)
    fig = Figure(figsize=(max(6.0, 1.3 * len(means.columns) + 3.5), max(4.0, 0.7 * len(means) + 2.2)),
                 layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(means.to_numpy(), cmap=CMAP, aspect="auto")
    ax.set_xticks(range(len(means.columns)), means.columns)
    ax.set_yticks(range(len(means)), means.index)
    norm = im.norm
    for i in range(len(means)):
        for j in range(len(means.columns)):
            m, n = means.iat[i, j], counts.iat[i, j]
            text = "no runs" if n == 0 else f"{100 * m:.1f}%\nn={n}"
            dark = n > 0 and norm(m) < 0.5  # viridis is dark at its low end
            ax.text(j, i, text, ha="center", va="center", fontsize=9, color="white" if dark else "black")
    ax.set_xlabel(axis_label(b))
    ax.set_ylabel(axis_label(a))
    label = f"mean validation {metric.replace('_', ' ')}"
    fig.colorbar(im, ax=ax, shrink=0.85, label=label, format=PercentFormatter(1.0))
    ax.set_title(f"{label[0].upper()}{label[1:]} by {a} and {b}{sweep_title(finished(df, metric))}\n"
                 "each cell: mean over its n finished runs", fontsize=11)
    return fig


def _positions(ok: pd.DataFrame, key: str) -> tuple[np.ndarray, list[float], list[str], bool]:
    """Where each run sits on ``key``'s axis (0 to 1), the ticks and their labels, and whether the axis is log:
    categorical values evenly spaced, numbers scaled to their range."""
    values = key_values(ok, key)
    names = _names(ok, key, values)
    if not is_numeric(ok[key]):
        spots = np.linspace(0, 1, len(values)) if len(values) > 1 else np.array([0.5])
        pos = np.array([spots[next(i for i, v in enumerate(values) if same_value(x, v))] for x in ok[key]])
        return pos, list(spots), names, False
    x = ok[key].to_numpy(dtype=float)
    lo, hi = x.min(), x.max()
    log = lo > 0 and hi / lo > LOG_SPAN
    f = np.log10 if log else (lambda v: v)

    def scale(v):
        return (f(np.asarray(v, dtype=float)) - f(lo)) / (f(hi) - f(lo)) if hi > lo else np.full(np.shape(v), 0.5)

    if len(values) > 8:  # too many to name: five ticks over the range
        ticks = 10 ** np.linspace(np.log10(lo), np.log10(hi), 5) if log else np.linspace(lo, hi, 5)
        return scale(x), list(scale(ticks)), [format_value(key, float(f"{t:.3g}")) for t in ticks], log
    return scale(x), list(scale(values)), names, log


def plot_parallel(df: pd.DataFrame, metric: str = "accuracy", keys: list[str] | None = None) -> Figure:
    """One line per finished run across ``keys`` (default: the varying setting keys) and, last, ``metric``;
    coloured by ``metric``. Each axis runs from its smallest to its largest value."""
    ok = finished(df, metric)
    keys = varying_keys(ok) if keys is None else keys
    if not keys:
        raise SourceError(f"no setting key varies across the {len(ok)} finished runs: nothing to draw across")
    y = ok[metric].to_numpy(dtype=float)
    metric_name = f"validation {metric.replace('_', ' ')}"
    axes_data = [_positions(ok, k) for k in keys]
    lo, hi = float(y.min()), float(y.max())
    ys = (y - lo) / (hi - lo) if hi > lo else np.full(len(y), 0.5)
    metric_ticks = np.linspace(lo, hi, 5) if hi > lo else np.array([lo])
    axes_data.append((ys, list((metric_ticks - lo) / (hi - lo)) if hi > lo else [0.5],
                      [f"{100 * t:.1f}%" for t in metric_ticks], False))
    fig = Figure(figsize=(max(8.0, 2.0 * len(axes_data) + 2), 5.2), layout="constrained")
    ax = fig.subplots()
    norm = Normalize(lo, hi if hi > lo else lo + 1e-9)
    cmap = colormaps[CMAP]
    segments = [np.column_stack([np.arange(len(axes_data)), [d[0][r] for d in axes_data]]) for r in range(len(ok))]
    order = np.argsort(y)  # best runs drawn last, on top
    ax.add_collection(LineCollection([segments[r] for r in order], colors=cmap(norm(y[order])), lw=1.6, alpha=0.8))
    for i, (_, ticks, tick_labels, _log) in enumerate(axes_data):
        ax.axvline(i, color="0.3", lw=1)
        for t, text in zip(ticks, tick_labels, strict=True):
            ax.text(i + 0.04, t, text, fontsize=8, va="center", ha="left",
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.75})
    names = [axis_label(k) + ("\n(log scale)" if d[3] else "") for k, d in zip(keys, axes_data, strict=False)]
    ax.set_xticks(range(len(axes_data)), [*names, metric_name], fontsize=9)
    ax.set_xlim(-0.5, len(axes_data) - 0.4)  # room for the first axis's label
    ax.set_ylim(-0.06, 1.06)
    ax.set_yticks([])
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, shrink=0.85, label=metric_name,
                 format=PercentFormatter(1.0))
    ax.set_title(f"Parallel coordinates of {len(ok)} finished runs{sweep_title(ok)}\ncategorical values evenly spaced, "
                 "numbers scaled to their range; colour: the run's " + metric_name,
                 fontsize=11)
    return fig


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("analysis.interactions", __doc__)
    p.add_argument("--by", metavar="A,B", required=True, help="the two config keys of the heatmap: rows, columns")
    p.add_argument("--out", metavar="DIR", default="figures", help="output folder (default: figures)")
    return p


def command(args: argparse.Namespace, df: pd.DataFrame, by: list[str]) -> int:
    """Print the heatmap's table, write both figures and print their paths; warnings on stderr."""
    if len(by) != 2 or by[0] == by[1]:
        raise SourceError(f"--by: give two different keys, A,B (got {len(by)}: {', '.join(by) or 'none'})")
    ok = finished(df, args.metric)
    if ok.empty:
        raise SourceError(f"no finished runs with {args.metric} in {args.source}")
    for m in check(df, by, args.metric):
        warn(m)
    a, b = by
    print(render(display_table(*mean_table(df, a, b, args.metric))))
    out = Path(args.out)
    paths = save(plot_heatmap(df, a, b, args.metric), out, f"heatmap_{a}_{b}", ("png",))
    paths += save(plot_parallel(df, args.metric), out, "parallel_coordinates", ("png",))
    print()
    for path in paths:
        print(path)
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.run(build_parser(), command, argv, history=False)


if __name__ == "__main__":
    sys.exit(main())
