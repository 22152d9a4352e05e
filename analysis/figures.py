"""The report's figures, drawn on plain :class:`matplotlib.figure.Figure` objects (Agg rendering, no GUI, no pyplot
state): accuracy and validation loss per parameter value (mean ± std over trials, every run as a dot), per-fold
bars, accuracy and training/validation loss per epoch, and a run's confusion matrix with its most confused pairs.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from audiosweep.results import RunFiles, load_predictions

from .compare import compare_table
from .labels import axis_label, format_value, group_sample_rate
from .runs import finished, hashable, same_value, select
from .summarize import group_stats

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
          "#17becf"]


def _order(values) -> list[int]:
    """Positions of ``values`` in ascending order (None last; by text when values do not compare)."""
    values = list(values)
    try:
        return sorted(range(len(values)), key=lambda i: (values[i] is None, values[i] if values[i] is not None else 0))
    except TypeError:
        return sorted(range(len(values)), key=lambda i: str(values[i]))


def sorted_values(values) -> list:
    values = list(values)
    return [values[i] for i in _order(values)]


def sweep_title(df: pd.DataFrame) -> str:
    sweeps = sorted(s for s in df.sweep.unique() if s)
    return f" ({', '.join(sweeps[:3])}{', ...' if len(sweeps) > 3 else ''})" if sweeps else ""


def file_name(df: pd.DataFrame, base: str) -> str:
    """A figure's file name (no extension): ``<base>_<sweep>``, the runs' sweep (several joined by "+", at most 3
    named), so that figures of two sweeps written into one folder keep apart; ``base`` for runs of no sweep."""
    return tagged(base, df.sweep.unique())


def tagged(base: str, sweeps) -> str:
    """``base_<sweeps>``: :func:`file_name`'s rule for the sweep names ``sweeps`` ("" ones left out)."""
    names = sorted(re.sub(r"[^A-Za-z0-9_.-]+", "-", s).strip("-.") for s in sweeps if s)
    tag = "+".join(names[:3]) + (f"+{len(names) - 3}more" if len(names) > 3 else "")
    return f"{base}_{tag}" if tag else base


def _pct_axis(ax) -> None:
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.grid(axis="y", alpha=0.3)


def plot_param(df: pd.DataFrame, key: str, metric: str = "accuracy") -> Figure:
    """Mean ``metric`` (left) and validation loss (right) per value of ``key`` with their 95 % intervals (Student t
    over runs; none below 3 runs), runs as dots; values significantly worse than the best (Holm-corrected, as
    ``analysis.compare`` tests them) marked with a red cross and "worse"."""
    ok = finished(df, metric)
    stats = group_stats(ok, [key], metric, ci="t")
    stats = stats.iloc[_order(stats[key])].reset_index(drop=True)  # by value (tuples cannot be an index)
    values = list(stats[key])
    ticks = [f"{format_value(key, v, group_sample_rate(ok, key, v))}\nn={n}" for v, n in
             zip(values, stats.n, strict=True)]
    x = np.arange(len(values))
    fig = Figure(figsize=(max(9.0, 1.3 * len(values) + 5), 4.4), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, col, ylabel in ((axes[0], metric, f"validation {metric.replace('_', ' ')}"),
                            (axes[1], "valid_loss", "validation loss (cross-entropy)")):
        mean = stats[f"{col}_mean"].to_numpy()
        err = np.vstack([mean - stats[f"{col}_ci95_low"].to_numpy(), stats[f"{col}_ci95_high"].to_numpy() - mean])
        for i, v in enumerate(values):
            runs = select(ok, key, v)[col].to_numpy()
            ax.plot(np.full(len(runs), x[i]) + np.linspace(-0.1, 0.1, len(runs)), runs, "o", ms=3.5,
                    color="0.55", zorder=1)
        ax.errorbar(x, mean, yerr=np.nan_to_num(err), fmt="o-", color=COLORS[0], ecolor="black", capsize=5, lw=1.8,
                    ms=7, zorder=2)
        long = max(map(len, ticks)) > 14
        ax.set_xticks(x, ticks, rotation=30 if long else 0, ha="right" if long else "center")
        ax.set_xlim(-0.5, len(values) - 0.5)
        ax.set_xlabel(axis_label(key))
        ax.set_ylabel(ylabel)
        ax.grid(axis="y", alpha=0.3)
    _pct_axis(axes[0])
    worse = significantly_worse(ok, key, metric)
    for i, (v, m, lo, hi) in enumerate(zip(values, stats[f"{metric}_mean"], stats[f"{metric}_ci95_low"],
                                           stats[f"{metric}_ci95_high"], strict=True)):
        text = f"{100 * m:.1f}%" + ("" if pd.isna(lo) else f" [{100 * lo:.1f}, {100 * hi:.1f}]")
        if any(same_value(v, w) for w in worse):
            axes[0].plot(x[i], m, "x", color=COLORS[1], ms=12, mew=2.5, zorder=4)
            text += "\nworse"
        axes[0].annotate(text, (x[i], m), xytext=(10, 0), textcoords="offset points", fontsize=8, va="center",
                         zorder=3, bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.8})
    fig.suptitle(f"Validation {metric.replace('_', ' ')} and loss vs {key}{sweep_title(ok)}\n"
                 "mean and 95 % interval (Student t) over the n runs of each value; grey dots: single runs\n"
                 "red cross: worse than the best value (paired or Welch t-test, Holm-corrected, as analysis.compare)")
    return fig


def significantly_worse(df: pd.DataFrame, key: str, metric: str = "accuracy") -> list:
    """The values of ``key`` that ``analysis.compare`` finds worse than the best one (Holm-corrected p < 0.05)."""
    if df[key].map(hashable).nunique() < 2:
        return []
    table = compare_table(df, key, metric)[0]
    return table.loc[table.verdict == "worse", key].tolist()


def plot_folds(df: pd.DataFrame, key: str | None = None, metric: str = "accuracy") -> Figure:
    """Bars of mean ``metric`` per fold (one bar colour per value of ``key``) with std error bars and every trial
    as a dot; dashed: the mean over all runs (of each value)."""
    ok = finished(df, metric)
    folds = sorted(ok.fold.unique())
    values = sorted_values(ok[key].unique()) if key else [None]
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
    ax.set_title(f"Validation {metric.replace('_', ' ')} per fold{sweep_title(ok)}" + (f" by {key}" if key else "")
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
    """Validation accuracy (left) and training and validation loss (right, dashed and solid) per epoch: mean line
    and ± std band for each value of ``key``. A training loss far below the validation loss is overfitting."""
    ok = finished(df)
    values = sorted_values(ok[key].unique()) if key else [None]
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    axes = fig.subplots(1, 2)
    for i, v in enumerate(values):
        runs = select(ok, key, v) if key else ok
        label = f"{format_value(key, v, group_sample_rate(ok, key, v))} (n={len(runs)})" if key else \
            f"all runs (n={len(runs)})"
        color = COLORS[i % len(COLORS)]
        for ax, col, style in ((axes[0], "accuracy", "-"), (axes[1], "valid_loss", "-"), (axes[1], "train_loss", "--")):
            epochs, mean, std = _curves(runs, col)
            ax.plot(epochs, mean, style, marker="o" if len(epochs) < 25 else None, ms=3, color=color,
                    label=label if col == "accuracy" else None)
            ax.fill_between(epochs, mean - std, mean + std, color=color, alpha=0.18 if style == "-" else 0.08, lw=0)
    axes[1].plot([], [], "k-", label="validation")
    axes[1].plot([], [], "k--", label="training")
    axes[1].legend(fontsize=8, loc="upper right")
    for ax, ylabel in zip(axes, ("validation accuracy", "cross-entropy loss"), strict=True):
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    _pct_axis(axes[0])
    axes[0].legend(title=axis_label(key) if key else None, fontsize=8, title_fontsize=8, loc="lower right")
    fig.suptitle(f"Validation accuracy, training and validation loss per epoch{sweep_title(ok)}"
                 + (f" by {key}" if key else "") + "\nmean over runs, ± std band; training loss as fastai logs it "
                 "(of MixUp's mixed batches when MixUp is on)")
    return fig


def plot_confusion(row: pd.Series) -> Figure:
    """Row-normalised confusion matrix (true class per row) of one run, from its saved predictions."""
    counts, classes = confusion_counts(row)
    c = len(classes)
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


def confusion_counts(row: pd.Series) -> tuple[np.ndarray, list[str]]:
    """(true x predicted) counts of one run's validation clips, from its saved predictions, and the classes."""
    probs, targets, classes, _ = load_predictions(preds_path(row))
    classes = [str(c) for c in classes]
    counts = np.zeros((len(classes), len(classes)))
    np.add.at(counts, (targets, probs.argmax(1)), 1)
    return counts, classes


def confused_pairs(row: pd.Series, top: int = 10) -> pd.DataFrame:
    """The ``top`` most frequent mistakes of one run: true class, predicted class, clips, and their share of the
    true class's clips; most clips first."""
    counts, classes = confusion_counts(row)
    per_class = counts.sum(1)
    np.fill_diagonal(counts, 0)
    true, pred = np.nonzero(counts)
    wrong = counts[true, pred]
    table = pd.DataFrame({"true": [classes[i] for i in true], "predicted": [classes[j] for j in pred],
                          "clips": wrong.astype(int), "share_of_true": wrong / per_class[true]})
    table = table.sort_values(["clips", "share_of_true"], ascending=False, kind="stable")
    return table.head(top).reset_index(drop=True)


def preds_path(row: pd.Series) -> Path | None:
    """Where ``train.py`` saved the run's validation predictions (beside its record), if it is there."""
    if not isinstance(row.record_path, str):
        return None
    path = RunFiles(Path(row.record_path)).preds
    return path if path.is_file() else None


def save(fig: Figure, out: Path, name: str, formats: tuple[str, ...] = ("png", "svg")) -> list[Path]:
    """Write ``fig`` as ``out/name.png`` and ``.svg``; return the files, the PNG first."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.{fmt}" for fmt in formats]
    for path in paths:
        fig.savefig(path, dpi=130 if path.suffix == ".png" else None)
    return paths


def plot_ensemble_sizes(sizes: pd.DataFrame, cols: list[str]) -> Figure:
    """Ensemble accuracy against ensemble size k (``analysis.ensemble``'s size table: ``k``, ``mean``, ``std``),
    one line per ensemble, or per group of ``cols`` averaged over folds when ``sizes`` has no ``fold`` column."""
    per_fold = "fold" in sizes
    keys = [*cols, "fold"] if per_fold else cols
    fig = Figure(figsize=(8, 4.6), layout="constrained")
    ax = fig.subplots()
    labels = [" ".join(f"{k}={format_value(k, v)}" for k, v in zip(keys, row, strict=True)) or "all runs"
              for row in sizes[keys].itertuples(index=False)]
    for i, label in enumerate(dict.fromkeys(labels)):
        g = sizes[[lab == label for lab in labels]]
        color = COLORS[i % len(COLORS)]
        std = g["std"].fillna(0)
        ax.plot(g.k, g["mean"], "o-", color=color, label=label)
        ax.fill_between(g.k, g["mean"] - std, g["mean"] + std, color=color, alpha=0.15, lw=0)
    ax.set_xlabel("ensemble size k (members whose softmax outputs are averaged)")
    ax.set_ylabel("validation accuracy")
    ax.xaxis.get_major_locator().set_params(integer=True)
    _pct_axis(ax)
    if len(ax.lines) <= 12:
        ax.legend(fontsize=8, loc="lower right")
    ax.set_title("Ensemble accuracy vs ensemble size\nmean over subsets of k members (k = 1: the mean single run), ± "
                 + ("std over subsets" if per_fold else "std over folds"), fontsize=11)
    return fig


def plot_reproduction(table: pd.DataFrame, by: list[str], metric: str = "accuracy") -> Figure:
    """Ours beside the published runs per group (``analysis.reproduce``'s table): each side's mean with its 95 %
    interval (none below 3 runs; a group found on one side shows that side only), "differs" where the Welch
    t-test's Holm-corrected p is below 0.05."""
    x = np.arange(len(table))
    fig = Figure(figsize=(max(7.0, 1.2 * len(table) + 4), 4.6), layout="constrained")
    ax = fig.subplots()
    for j, side in enumerate(("ours", "published")):
        mean = table[f"{side}_mean"].to_numpy(dtype=float)
        err = np.vstack([mean - table[f"{side}_ci95_low"].to_numpy(dtype=float),
                         table[f"{side}_ci95_high"].to_numpy(dtype=float) - mean])
        ax.errorbar(x + 0.3 * (j - 0.5), mean, yerr=np.nan_to_num(err), fmt="o", color=COLORS[j], capsize=5, ms=7,
                    label=f"{side}: mean, 95 % interval")
    ax.margins(y=0.12)  # room above the highest interval for its "differs"
    top = table[["ours_ci95_high", "ours_mean", "published_ci95_high", "published_mean"]].max(axis=1)
    for i in np.flatnonzero((table.verdict == "differs").to_numpy()):
        ax.annotate("differs", (x[i], top.iloc[i]), xytext=(0, 8), textcoords="offset points", ha="center",
                    color=COLORS[1], fontweight="bold")
    groups = [[format_value(k, v) for k, v in zip(by, row, strict=True)] for row in table[by].itertuples(index=False)]
    ticks = [(v[0] if len(by) == 1 else "\n".join(f"{k}={s}" for k, s in zip(by, v, strict=True))) or "all runs"
             for v in groups]
    ax.set_xticks(x, [f"{t}\nn={o} vs {p}" for t, o, p in zip(ticks, table.ours_n, table.published_n, strict=True)])
    ax.set_xlim(-0.6, len(table) - 0.4)
    ax.set_xlabel(axis_label(by[0]) if len(by) == 1 else ", ".join(by) or "all runs")
    ax.set_ylabel(f"validation {metric.replace('_', ' ')}")
    _pct_axis(ax)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(f"Validation {metric.replace('_', ' ')}: ours vs the published runs"
                 + (f" by {', '.join(by)}" if by else "") + "\nmean and 95 % interval (Student t over runs); "
                 "differs: Welch's t-test, Holm-corrected p < 0.05", fontsize=11)
    return fig
