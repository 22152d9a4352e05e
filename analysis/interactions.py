"""How two or more parameters act together: the mean metric per pair of values of two keys (a table and an
annotated heatmap), and a parallel-coordinates figure of every finished run across the varying setting keys.

    python -m analysis.interactions results/grid --by n_mels,hop_length --out figures/
    python -m analysis.interactions wandb:ENTITY/PROJECT --sweep SWEEP_ID --by arch,lr --out figures/

Writes ``heatmap_<a>_<b>_<sweep>.png`` and ``parallel_coordinates_<sweep>.png`` into ``--out``
(:func:`analysis.figures.file_name`), prints the heatmap's table (mean % and n per cell) and then the files' paths.
Continuous keys are binned into quantiles in the heatmap; pruned runs count as :mod:`analysis.pruned` says;
numeric axes take the sweep's declared scale (:mod:`analysis.scales`).
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.collections import LineCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import LogLocator, MaxNLocator, PercentFormatter

from audiosweep.errors import SourceError

from . import cli
from .checks import check, varying_keys
from .figures import file_name, save, sweep_title
from .importance import is_numeric, key_values
from .labels import axis_label, format_value, group_sample_rate
from .pruned import PRUNED, comparable
from .runs import finished, same_value, warn
from .scales import declared, is_log, scale_note
from .summarize import render

CMAP = "viridis"
MAX_BINS = 4  # a continuous key's quantile bins in the heatmap, at most
MIN_PER_CELL = 3  # fewer bins for fewer runs: about this many runs per cell of two binned keys
CONTINUOUS = 6  # a numeric key with more distinct values than this is binned in the heatmap
MAX_LABEL = 16  # characters of a categorical value on a parallel-coordinates axis (longer: shortened in the middle)


def _names(ok: pd.DataFrame, key: str, values: list) -> list[str]:
    return [format_value(key, v, group_sample_rate(ok, key, v)) for v in values]


def _short_number(key: str, value: float) -> str:
    return format_value(key, float(f"{value:.3g}"))


def _cells(ok: pd.DataFrame, key: str, bins: int) -> tuple[list[str], np.ndarray]:
    """The heatmap's row or column labels of ``key`` and each run's position among them: one per value, or for a
    continuous key (numeric, more than :data:`CONTINUOUS` values) ``bins`` quantile bins (``pandas.qcut``: about
    as many runs in each), labelled with the range of their runs' values."""
    values = key_values(ok, key)
    if not is_numeric(ok[key]) or len(values) <= CONTINUOUS:
        codes = [next(i for i, v in enumerate(values) if same_value(x, v)) for x in ok[key]]
        return _names(ok, key, values), np.array(codes, dtype=int)
    x = ok[key].to_numpy(dtype=float)
    codes = np.unique(pd.qcut(x, bins, labels=False, duplicates="drop"), return_inverse=True)[1]
    names = [f"{_short_number(key, x[codes == c].min())}–{_short_number(key, x[codes == c].max())}"
             for c in range(codes.max() + 1)]
    return names, codes


def mean_table(df: pd.DataFrame, a: str, b: str, metric: str = "accuracy") -> tuple[pd.DataFrame, pd.DataFrame]:
    """The mean ``metric`` of the compared runs (:func:`analysis.pruned.comparable`) and their number per value of
    ``a`` (rows) and ``b`` (columns), labelled with the values as :func:`analysis.labels.format_value` shows them,
    in ascending order, a continuous key's values in quantile bins (:func:`_cells`); NaN and 0 for pairs no run
    tried."""
    ok = comparable(df, metric).runs
    bins = int(np.clip(np.sqrt(len(ok) / MIN_PER_CELL), 2, MAX_BINS))
    (rows, row_of), (cols, col_of) = _cells(ok, a, bins), _cells(ok, b, bins)
    y = ok[metric].to_numpy(dtype=float)
    counts = np.zeros((len(rows), len(cols)), dtype=int)
    sums = np.zeros((len(rows), len(cols)))
    np.add.at(counts, (row_of, col_of), 1)
    np.add.at(sums, (row_of, col_of), y)
    means = np.divide(sums, counts, out=np.full(sums.shape, np.nan), where=counts > 0)
    index, columns = pd.Index(rows, name=a), pd.Index(cols, name=b)
    return pd.DataFrame(means, index, columns), pd.DataFrame(counts, index, columns)


def display_table(means: pd.DataFrame, counts: pd.DataFrame) -> pd.DataFrame:
    """:func:`mean_table` for people: a column of ``a``'s values, cells ``mean % (n=N)``."""
    out = pd.DataFrame({f"{means.index.name} \\ {means.columns.name}": means.index})
    for col in means.columns:
        out[col] = ["–" if n == 0 else f"{100 * m:.2f} (n={n})" for m, n in zip(means[col], counts[col], strict=True)]
    return out


def _wrapped_title(fig: Figure, text: str, fontsize: float = 11) -> None:
    """``fig``'s suptitle, each line wrapped to the figure's width (constrained layout keeps it inside)."""
    chars = int(fig.get_figwidth() * 72 / (0.55 * fontsize))  # a character is about 0.55 em wide
    fig.suptitle("\n".join(textwrap.fill(line, chars) for line in text.split("\n")), fontsize=fontsize)


def plot_heatmap(df: pd.DataFrame, a: str, b: str, metric: str = "accuracy") -> Figure:
    """Mean ``metric`` per value (or quantile bin) of ``a`` (rows) and ``b`` (columns), each cell annotated with
    the mean and n."""
    means, counts = mean_table(df, a, b, metric)
    compared = comparable(df, metric)
    fig = Figure(figsize=(max(6.0, 1.3 * len(means.columns) + 3.5), max(4.0, 0.7 * len(means) + 2.2)),
                 layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(means.to_numpy(), cmap=CMAP, aspect="auto")
    long = max(map(len, means.columns)) > 10
    ax.set_xticks(range(len(means.columns)), means.columns, rotation=20 if long else 0,
                  ha="right" if long else "center")
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
    binned = " (continuous keys in quantile bins: the range of their runs' values)" if any(
        "–" in str(v) for v in [*means.index, *means.columns]) else ""
    _wrapped_title(fig, f"{label[0].upper()}{label[1:]} by {a} and {b}{sweep_title(compared.runs)}\n"
                   f"each cell: mean over its n runs{binned}" + (f"\n{compared.note()}" if compared.note() else ""))
    return fig


def _shorten(text: str) -> str:
    """``text`` of at most :data:`MAX_LABEL` characters, its middle cut out where longer."""
    if len(text) <= MAX_LABEL:
        return text
    head = (MAX_LABEL - 1) // 2
    return f"{text[:head]}…{text[-(MAX_LABEL - 1 - head):]}"


def _nice_ticks(lo: float, hi: float, log: bool) -> np.ndarray:
    """Round tick values inside [lo, hi] (matplotlib's locators), with the ends added where no tick is near."""
    locator = LogLocator(subs=(1.0, 2.0, 5.0)) if log else MaxNLocator(5)
    ticks = np.asarray(locator.tick_values(lo, hi), dtype=float)
    ticks = ticks[(ticks >= lo * (1 - 1e-9)) & (ticks <= hi * (1 + 1e-9))]
    ticks = ticks[::-(-len(ticks) // 5)] if len(ticks) > 5 else ticks  # within a decade LogLocator gives many
    f = np.log10 if log else (lambda v: v)
    span = f(hi) - f(lo)
    ends = [e for e in (lo, hi) if not len(ticks) or np.abs(f(ticks) - f(e)).min() > 0.12 * span]
    return np.sort(np.concatenate([ticks, ends]))


def _positions(ok: pd.DataFrame, key: str, declared_dists: dict[str, str]) -> tuple[np.ndarray, list[float],
                                                                                     list[str], str]:
    """Where each run sits on ``key``'s axis (0 to 1), the ticks and their labels, and the axis's scale note
    ("" for categorical values, evenly spaced; "log ..." or "linear ..." for numbers, scaled to their range on
    the scale :mod:`analysis.scales` gives them)."""
    values = key_values(ok, key)
    names = [_shorten(n) for n in _names(ok, key, values)]
    if not is_numeric(ok[key]):
        spots = np.linspace(0, 1, len(values)) if len(values) > 1 else np.array([0.5])
        pos = np.array([spots[next(i for i, v in enumerate(values) if same_value(x, v))] for x in ok[key]])
        return pos, list(spots), names, ""
    x = ok[key].to_numpy(dtype=float)
    lo, hi = x.min(), x.max()
    log = lo > 0 and is_log(key, x, declared_dists)
    f = np.log10 if log else (lambda v: v)
    note = f"{'log' if log else 'linear'}: {scale_note(key, declared_dists)}"

    def scale(v):
        return (f(np.asarray(v, dtype=float)) - f(lo)) / (f(hi) - f(lo)) if hi > lo else np.full(np.shape(v), 0.5)

    if len(values) > 6:  # too many to name: round ticks over the range
        ticks = _nice_ticks(lo, hi, log) if hi > lo else np.array([lo])
        return scale(x), list(scale(ticks)), [_short_number(key, t) for t in ticks], note
    return scale(x), list(scale(values)), names, note


def plot_parallel(df: pd.DataFrame, metric: str = "accuracy", keys: list[str] | None = None) -> Figure:
    """One line per compared run (:func:`analysis.pruned.comparable`: pruned runs dashed) across ``keys``
    (default: the varying setting keys) and, last, ``metric``; coloured by ``metric``. Each axis runs from its
    smallest to its largest value, on the scale of the key's declared distribution (:mod:`analysis.scales`)."""
    compared = comparable(df, metric)
    ok = compared.runs
    keys = varying_keys(ok) if keys is None else keys
    if not keys:
        raise SourceError(f"no setting key varies across the {len(ok)} finished runs: nothing to draw across")
    y = ok[metric].to_numpy(dtype=float)
    metric_name = f"validation {metric.replace('_', ' ')}"
    dists = declared(ok)
    axes_data = [_positions(ok, k, dists) for k in keys]
    lo, hi = float(y.min()), float(y.max())
    ys = (y - lo) / (hi - lo) if hi > lo else np.full(len(y), 0.5)
    metric_ticks = np.linspace(lo, hi, 5) if hi > lo else np.array([lo])
    axes_data.append((ys, list((metric_ticks - lo) / (hi - lo)) if hi > lo else [0.5],
                      [f"{100 * t:.1f}%" for t in metric_ticks], ""))
    fig = Figure(figsize=(max(8.0, 1.9 * len(axes_data) + 2.5), 5.6), layout="constrained")
    ax = fig.subplots()
    norm = Normalize(lo, hi if hi > lo else lo + 1e-9)
    cmap = colormaps[CMAP]
    segments = [np.column_stack([np.arange(len(axes_data)), [d[0][r] for d in axes_data]]) for r in range(len(ok))]
    order = np.argsort(y)  # best runs drawn last, on top
    styles = ["--" if s == PRUNED else "-" for s in ok.status.to_numpy()[order]]
    ax.add_collection(LineCollection([segments[r] for r in order], colors=cmap(norm(y[order])), lw=1.4, alpha=0.75,
                                     linestyles=styles, zorder=1))
    for i, (_, ticks, tick_labels, _note) in enumerate(axes_data):
        ax.axvline(i, color="0.3", lw=1, zorder=2)
        for t, text in zip(ticks, tick_labels, strict=True):
            ax.text(i + 0.03, t, text, fontsize=7.5, va="center", ha="left", zorder=3,
                    bbox={"boxstyle": "round,pad=0.12", "fc": "white", "ec": "none", "alpha": 0.85})
    names = [textwrap.fill(axis_label(k), 22) + (f"\n({d[3]})" if d[3] else "")
             for k, d in zip(keys, axes_data, strict=False)]
    ax.set_xticks(range(len(axes_data)), [*names, metric_name], fontsize=8)
    ax.set_xlim(-0.35, len(axes_data) - 0.45)  # room for the first axis's name and the last one's labels
    ax.set_ylim(-0.04, 1.04)
    ax.set_yticks([])
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, shrink=0.85, label=metric_name,
                 format=PercentFormatter(1.0))
    what = f"{len(ok)} runs" + (f" ({compared.pruned} pruned, dashed)" if compared.pruned else " (finished)")
    _wrapped_title(fig, f"Parallel coordinates of {what}{sweep_title(ok)}\ncategorical values evenly spaced, numbers "
                   f"scaled to their range (log or linear: the sweep's declared distribution, else by range); "
                   f"colour: the run's {metric_name}" + (f"\n{compared.note()}" if compared.note() else ""))
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
    paths = save(plot_heatmap(df, a, b, args.metric), out, file_name(df, f"heatmap_{a}_{b}"), ("png",))
    paths += save(plot_parallel(df, args.metric), out, file_name(df, "parallel_coordinates"), ("png",))
    print()
    for path in paths:
        print(path)
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.run(build_parser(), command, argv, history=False)


if __name__ == "__main__":
    sys.exit(main())
