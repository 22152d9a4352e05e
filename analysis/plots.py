"""The report's figures, as PNG and SVG: accuracy and validation loss per parameter value (mean ± std over trials,
every run as a dot), per-fold bars, accuracy-vs-epoch curves, and a run's confusion matrix.

    python -m analysis.plots results/smoke --by n_mels --out figures/
    python -m analysis.plots results/final --by arch --out figures/ --run 20260101-120000-abc123

Figures are drawn on plain :class:`matplotlib.figure.Figure` objects (Agg rendering, no GUI, no pyplot state).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from .runs import SourceError, check, finished, select, warn
from .summarize import add_source_args, format_value, group_sample_rate, group_stats, load_from_args, parse_keys

LABELS = {
    "hop_length": "STFT hop (samples, ms)", "win_length": "STFT window (samples, ms)",
    "n_fft": "FFT size (samples, ms)", "hop_length_ms": "STFT hop (ms, samples)",
    "win_length_ms": "STFT window (ms, samples)", "n_mels": "mel bands", "f_min": "lowest mel frequency",
    "f_max": "highest mel frequency", "sample_rate": "sample rate", "stacked_win_lengths": "stacked windows (samples)",
    "batch_size": "batch size (clips)", "n_epochs": "epochs", "learning_rate": "peak learning rate",
    "mix_up": "MixUp alpha", "arch": "architecture", "normalize": "normalisation",
}
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
          "#17becf"]


def axis_label(key: str) -> str:
    return f"{key}: {LABELS[key]}" if key in LABELS else key


def _order(values) -> list[int]:
    """Positions of ``values`` in ascending order (None last; by text when values do not compare)."""
    values = list(values)
    try:
        return sorted(range(len(values)), key=lambda i: (values[i] is None, values[i] if values[i] is not None else 0))
    except TypeError:
        return sorted(range(len(values)), key=lambda i: str(values[i]))


def _sort_values(values) -> list:
    values = list(values)
    return [values[i] for i in _order(values)]


def _title(df: pd.DataFrame) -> str:
    sweeps = sorted(s for s in df.sweep.unique() if s)
    return f" ({', '.join(sweeps[:3])}{', ...' if len(sweeps) > 3 else ''})" if sweeps else ""


def _pct_axis(ax) -> None:
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.grid(axis="y", alpha=0.3)


def plot_param(df: pd.DataFrame, key: str, metric: str = "accuracy") -> Figure:
    """Mean ``metric`` (left) and validation loss (right) per value of ``key``, std error bars, runs as dots."""
    ok = finished(df, metric)
    stats = group_stats(ok, [key], metric)
    stats = stats.iloc[_order(stats[key])].reset_index(drop=True)  # by value (tuples cannot be an index)
    values = list(stats[key])
    ticks = [f"{format_value(key, v, group_sample_rate(ok, key, v))}\nn={n}" for v, n in
             zip(values, stats.n, strict=True)]
    x = np.arange(len(values))
    fig = Figure(figsize=(max(9.0, 1.3 * len(values) + 5), 4.4), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, col, ylabel in ((axes[0], metric, f"validation {metric.replace('_', ' ')}"),
                            (axes[1], "valid_loss", "validation loss (cross-entropy)")):
        mean, std = stats[f"{col}_mean"].to_numpy(), stats[f"{col}_std"].fillna(0).to_numpy()
        for i, v in enumerate(values):
            runs = select(ok, key, v)[col].to_numpy()
            ax.plot(np.full(len(runs), x[i]) + np.linspace(-0.1, 0.1, len(runs)), runs, "o", ms=3.5,
                    color="0.55", zorder=1)
        ax.errorbar(x, mean, yerr=std, fmt="o-", color=COLORS[0], ecolor="black", capsize=5, lw=1.8, ms=7,
                    zorder=2)
        long = max(map(len, ticks)) > 14
        ax.set_xticks(x, ticks, rotation=30 if long else 0, ha="right" if long else "center")
        ax.set_xlim(-0.5, len(values) - 0.5)
        ax.set_xlabel(axis_label(key))
        ax.set_ylabel(ylabel)
        ax.grid(axis="y", alpha=0.3)
    _pct_axis(axes[0])
    for i, (m, s) in enumerate(zip(stats[f"{metric}_mean"], stats[f"{metric}_std"], strict=True)):
        axes[0].annotate(f"{100 * m:.1f}" + ("" if pd.isna(s) else f" ± {100 * s:.1f}") + "%", (x[i], m),
                         xytext=(10, 0), textcoords="offset points", fontsize=8, va="center", zorder=3,
                         bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.8})
    fig.suptitle(f"Validation {metric.replace('_', ' ')} and loss vs {key}{_title(ok)}\n"
                 "mean ± std over the n runs of each value; grey dots: single runs")
    return fig


def plot_folds(df: pd.DataFrame, key: str | None = None, metric: str = "accuracy") -> Figure:
    """Bars of mean ``metric`` per fold (one bar colour per value of ``key``) with std error bars and every trial
    as a dot; dashed: the mean over all runs (of each value)."""
    ok = finished(df, metric)
    folds = sorted(ok.fold.unique())
    values = _sort_values(ok[key].unique()) if key else [None]
    width = 0.8 / len(values)
    fig = Figure(figsize=(max(7.5, (1.0 + 0.5 * len(values)) * len(folds) + 4), 4.4), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(folds))
    lo = max(0.0, float(ok[metric].min()) - 0.08)
    fold_means = []
    for j, v in enumerate(values):
        runs = select(ok, key, v) if key else ok
        g = runs.groupby("fold")[metric]
        mean, sample_std, n = g.mean().reindex(folds), g.std().reindex(folds), g.size().reindex(folds)
        std = sample_std.fillna(0)
        lo = max(0.0, min(lo, float((mean - std).min()) - 0.03))
        fold_means.append(mean.mean())
        pos, color = x - 0.4 + width * (j + 0.5), COLORS[j % len(COLORS)]
        name = f"{key}={format_value(key, v, group_sample_rate(ok, key, v))}: " if key else ""
        ax.bar(pos, mean, width * 0.92, yerr=std, capsize=5, color=color, alpha=0.75,
               label=f"{name}mean ± std over trials")
        for i, f in enumerate(folds):
            trials = runs.loc[runs.fold == f, metric].to_numpy()
            ax.plot(np.full(len(trials), pos[i]) + np.linspace(-0.2, 0.2, len(trials)) * width, trials, "o", ms=3.5,
                    color="black", alpha=0.6, label="trial" if i == j == 0 else None)
        overall = runs[metric]
        ax.axhline(overall.mean(), ls="--", color=COLORS[1] if not key else color,
                   label=f"{name}all runs {100 * overall.mean():.1f} ± {100 * overall.std():.1f}%")
        for i, f in enumerate(folds):
            if pd.isna(mean.loc[f]):
                continue
            spread = "" if pd.isna(sample_std.loc[f]) else f"\n± {100 * sample_std.loc[f]:.1f}"
            ax.annotate(f"{100 * mean.loc[f]:.1f}{spread}\nn={n.loc[f]}", (pos[i], 0), xytext=(0, 6),
                        xycoords=("data", "axes fraction"), textcoords="offset points", ha="center", va="bottom",
                        fontsize=8 if len(values) < 3 else 6, color="white")
    ax.set_ylim(lo, min(1.02, float(ok[metric].max()) + 0.03))
    ax.set_xticks(x, [f"fold {f}" for f in folds])
    ax.set_xlabel("validation fold (official ESC-50 split)")
    ax.set_ylabel(f"validation {metric.replace('_', ' ')}")
    _pct_axis(ax)
    fig.legend(loc="outside right upper", fontsize=8)
    means = ", ".join((f"{key}={format_value(key, v, group_sample_rate(ok, key, v))}: " if key else "")
                      + f"{100 * m:.1f}%" for v, m in zip(values, fold_means, strict=True))
    ax.set_title(f"Validation {metric.replace('_', ' ')} per fold{_title(ok)}" + (f" by {key}" if key else "")
                 + f"\nmean of fold means: {means}", fontsize=11)
    return fig


def _curves(runs: pd.DataFrame, col: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and std of ``col`` per epoch over ``runs``' histories (epochs a run lacks are left out)."""
    table = pd.DataFrame([{"run": i, "epoch": r["epoch"], col: r[col]} for i, h in enumerate(runs.history)
                          for r in h if r.get(col) is not None])
    if table.empty:
        return np.array([]), np.array([]), np.array([])
    g = table.groupby("epoch")[col]
    return g.mean().index.to_numpy(), g.mean().to_numpy(), g.std().fillna(0).to_numpy()


def plot_curves(df: pd.DataFrame, key: str | None = None) -> Figure:
    """Validation accuracy and loss per epoch: mean line and ± std band for each value of ``key``."""
    ok = finished(df)
    values = _sort_values(ok[key].unique()) if key else [None]
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    axes = fig.subplots(1, 2)
    for i, v in enumerate(values):
        runs = select(ok, key, v) if key else ok
        label = f"{format_value(key, v, group_sample_rate(ok, key, v))} (n={len(runs)})" if key else \
            f"all runs (n={len(runs)})"
        color = COLORS[i % len(COLORS)]
        for ax, col in zip(axes, ("accuracy", "valid_loss"), strict=True):
            epochs, mean, std = _curves(runs, col)
            ax.plot(epochs, mean, "-", marker="o" if len(epochs) < 25 else None, ms=3, color=color, label=label)
            ax.fill_between(epochs, mean - std, mean + std, color=color, alpha=0.18, lw=0)
    for ax, ylabel in zip(axes, ("validation accuracy", "validation loss (cross-entropy)"), strict=True):
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    _pct_axis(axes[0])
    axes[0].legend(title=axis_label(key) if key else None, fontsize=8, title_fontsize=8, loc="lower right")
    fig.suptitle(f"Validation accuracy and loss per epoch{_title(ok)}" + (f" by {key}" if key else "")
                 + "\nmean over runs, ± std band")
    return fig


def preds_path(row: pd.Series) -> Path | None:
    """Where ``train.py`` saved the run's validation predictions (beside its record), if it is there."""
    if not isinstance(row.record_path, str):
        return None
    path = Path(row.record_path).with_suffix(".preds.npz")
    return path if path.is_file() else None


def pick_run(df: pd.DataFrame, run_id: str | None = None, metric: str = "accuracy") -> pd.Series:
    """The run ``run_id``, or the best finished run whose predictions are on disk."""
    if run_id is not None:
        match = df[df.run_id == run_id]
        if match.empty:
            raise SourceError(f"--run {run_id}: no such run in the source (run ids are the record file names)")
        row = match.iloc[0]
        if preds_path(row) is None:
            raise SourceError(f"--run {run_id}: no predictions file {run_id}.preds.npz beside its record")
        return row
    ok = finished(df, metric)
    ok = ok[[preds_path(r) is not None for _, r in ok.iterrows()]]
    if ok.empty:
        raise SourceError("no run has a <run_id>.preds.npz beside its record (W&B sources have none): no "
                          "confusion matrix")
    return ok.loc[ok[metric].idxmax()]


def plot_confusion(row: pd.Series) -> Figure:
    """Row-normalised confusion matrix (true class per row) of one run, from its saved predictions."""
    with np.load(preds_path(row)) as f:
        probs, targets, classes = f["probs"], f["targets"], [str(c) for c in f["classes"]]
    c = len(classes)
    counts = np.zeros((c, c))
    np.add.at(counts, (targets, probs.argmax(1)), 1)
    rows = counts.sum(1, keepdims=True)
    norm = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    size = max(6.0, 0.26 * c + 3)
    fig = Figure(figsize=(size + 1.2, size), layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    fs = 9 if c <= 20 else 7
    ax.set_xticks(range(c), classes, rotation=90, fontsize=fs)
    ax.set_yticks(range(c), classes, fontsize=fs)
    if c <= 20:
        for i, j in zip(*np.nonzero(counts), strict=True):
            ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted class", fontsize=10 if c <= 20 else 13)
    ax.set_ylabel("true class", fontsize=10 if c <= 20 else 13)
    fig.colorbar(im, ax=ax, shrink=0.8, label="fraction of the true class's clips")
    acc = np.trace(counts) / max(counts.sum(), 1)
    split = f"fold {row.fold}" if row.split == "official" else f"{row.split} split"
    ax.set_title(f"Confusion matrix of run {row.run_id} ({row.arch}, {split}, trial {row.trial_num}):\n"
                 f"validation accuracy {100 * acc:.1f}% on {int(counts.sum())} clips", fontsize=11 if c <= 20 else 14)
    return fig


def save(fig: Figure, out: Path, name: str, formats: tuple[str, ...] = ("png", "svg")) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.{fmt}" for fmt in formats]
    for path in paths:
        fig.savefig(path, dpi=130 if path.suffix == ".png" else None)
    return paths


def write_figures(df: pd.DataFrame, by: list[str], out: Path, run_id: str | None = None, metric: str = "accuracy",
                  folds: bool | None = None) -> list[Path]:
    """Every figure for ``by``: per key, accuracy/loss vs value and curves; per-fold bars when folds vary (or
    ``folds``); the confusion matrix of ``run_id`` or of the best run. Returns the files written."""
    ok = finished(df, metric)
    if ok.empty:
        raise SourceError(f"no finished runs with {metric}: nothing to plot")
    paths = []
    for key in by:
        paths += save(plot_param(df, key, metric), out, f"{metric}_by_{key}")
        paths += save(plot_curves(df, key), out, f"curves_by_{key}")
    if not by:
        paths += save(plot_curves(df), out, "curves")
    if folds or (folds is None and ok.fold.nunique() > 1):
        paths += save(plot_folds(df, by[0] if len(by) == 1 else None, metric), out, "folds")
    try:
        row = pick_run(df, run_id, metric)
    except SourceError as e:
        if run_id is not None:
            raise
        warn(str(e))
    else:
        paths += save(plot_confusion(row), out, f"confusion_{row.run_id}")
    return paths


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m analysis.plots", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_source_args(p)
    p.add_argument("--by", metavar="KEY[,KEY...]", help="one accuracy figure and one curves figure per key")
    p.add_argument("--out", metavar="DIR", default="figures", help="output folder (default: figures)")
    p.add_argument("--run", metavar="RUN_ID", help="confusion matrix of this run (default: the best run)")
    p.add_argument("--folds", action="store_true", help="per-fold bars even when every run used one fold")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        by = parse_keys(args.by)
        df = load_from_args(args, history=True)
        for m in check(df, by, args.metric):
            warn(m)
        paths = write_figures(df, by, Path(args.out), args.run, args.metric, args.folds or None)
    except SourceError as e:
        print(f"analysis.plots: {e}", file=sys.stderr)
        return 1
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
