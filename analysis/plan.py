"""The report's plan: its sections in order, each with the figures it shows, drawn only when a caller saves or
shows them. ``python -m analysis.plots`` saves the plan's figures, ``python -m analysis.report`` adds each
section's table and text, and ``analysis/report.ipynb`` shows the same.

    for key in keys (or "all runs" when none)   PARAMETER: accuracy_by_<key> (not for all runs), curves_by_<key>
                                                (where runs have per-epoch history: a W&B export has none);
                                                its table, then each value tested against the best (analysis.compare)
    when 2+ keys vary over 5+ runs              IMPORTANCE: parallel_coordinates, heatmap of the two most important
    when folds vary (or asked for)              FOLDS: folds
    when trial_num ensembles can be formed      ENSEMBLE: ensemble_sizes (analysis.ensemble)
    when a bayes study's journal is found       OPTUNA: optuna_history, optuna_slice, optuna_importances,
                                                optuna_intermediate (analysis.optuna_plots)
    always                                      CONFUSION: confusion_<run_id>, or the reason none can be drawn
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import pandas as pd
from matplotlib.figure import Figure

from audiosweep.errors import SourceError
from audiosweep.results import RunFiles

from . import ensemble, figures, importance, interactions, optuna_plots
from .checks import require_folds
from .labels import md_escape
from .runs import finished

PARAMETER, FOLDS, CONFUSION, ENSEMBLE, IMPORTANCE = "parameter", "folds", "confusion", "ensemble", "importance"
OPTUNA = "optuna"


@dataclass(frozen=True)
class PlannedFigure:
    name: str  # file name without extension: analysis.figures.file_name's, carrying the sweep
    alt: str  # what it shows, in a few words
    draw: Callable[[], Figure]


@dataclass
class Section:
    """One section of the report: a parameter (or all runs), the per-fold results, or a confusion matrix."""

    kind: str
    title: str
    by: list[str] = field(default_factory=list)  # groups of the section's table
    figures: list[PlannedFigure] = field(default_factory=list)
    note: str = ""  # CONFUSION: which run is shown, or why none is
    skipped: str | None = None  # why a section that should have a figure has none
    run: pd.Series | None = None  # CONFUSION: the run shown


def pick_run(df: pd.DataFrame, run_id: str | None = None, metric: str = "accuracy") -> pd.Series:
    """The run ``run_id``, or the best finished run whose predictions are on disk."""
    if run_id is not None:
        match = df[df.run_id == run_id]
        if match.empty:
            raise SourceError(f"--run {run_id}: no such run in the source (run ids are the record file names)")
        row = match.iloc[0]
        if figures.preds_path(row) is None:
            raise SourceError(f"--run {run_id}: no predictions file {RunFiles.of('', run_id).preds.name} beside "
                              "its record")
        return row
    ok = finished(df, metric)
    ok = ok[[figures.preds_path(r) is not None for _, r in ok.iterrows()]]
    if ok.empty:
        raise SourceError(f"no run has a {RunFiles.of('', '<run_id>').preds.name} beside its record (W&B sources "
                          "have none): no confusion matrix")
    return ok.loc[ok[metric].idxmax()]


def parameter_section(df: pd.DataFrame, key: str | None, metric: str = "accuracy") -> Section:
    """``key``'s section (all runs together when None): accuracy and loss per value, and the curves (when some
    run has a history)."""
    shown = [] if key is None else [PlannedFigure(figures.file_name(df, f"{metric}_by_{key}"), f"{metric} by {key}",
                                                  partial(figures.plot_param, df, key, metric))]
    if any(len(h) for h in df.history):
        shown.append(PlannedFigure(figures.file_name(df, f"curves_by_{key}" if key else "curves"),
                                   "accuracy and loss per epoch",
                                   partial(figures.plot_curves, df, key)))
    return Section(PARAMETER, key or "All runs", [key] if key else [], shown)


def importance_section(df: pd.DataFrame, metric: str = "accuracy") -> Section | None:
    """Parameter importance (:func:`analysis.importance.importance`) with the parallel-coordinates figure and the
    heatmap of the two most important keys; None when fewer than 2 keys vary or there are too few runs."""
    try:
        table = importance.importance(df, metric)
    except SourceError:
        return None
    a, b = table.key[:2]
    shown = [PlannedFigure(figures.file_name(df, "parallel_coordinates"), "every run across the varying keys",
                           partial(interactions.plot_parallel, df, metric)),
             PlannedFigure(figures.file_name(df, f"heatmap_{a}_{b}"), f"mean {metric} by {a} and {b}",
                           partial(interactions.plot_heatmap, df, a, b, metric))]
    return Section(IMPORTANCE, "Parameter importance", [a, b], shown)


def optuna_section(df: pd.DataFrame) -> Section | None:
    """Optuna's plots of each bayes study found beside the records (:mod:`analysis.optuna_plots`); None when
    there is none."""
    shown = [PlannedFigure(figures.tagged(name, [study.study_name]), alt, draw)
             for study in optuna_plots.bayes_studies(df) for name, (alt, draw) in optuna_plots.plots(study).items()]
    if not shown:
        return None
    return Section(OPTUNA, "Optuna's view of the bayes study", figures=shown,
                   note="The sweep's Optuna study as Optuna plots it: its trials are the sweep's runs (pruned ones "
                   "included), the objective the sweep's metric.")


def fold_section(df: pd.DataFrame, by: list[str], metric: str = "accuracy") -> Section:
    """Per fold, per group of ``by``: bars coloured by the one key of ``by``, or all runs together."""
    draw = partial(figures.plot_folds, df, by[0] if len(by) == 1 else None, metric)
    return Section(FOLDS, "Per fold", by, [PlannedFigure(figures.file_name(df, "folds"), "accuracy per fold", draw)])


def ensemble_section(df: pd.DataFrame) -> Section | None:
    """Ensembles over trial_num (:func:`analysis.ensemble.report_result`), None when there are none to show:
    no group of two runs with predictions, or members that all predicted the same."""
    found = ensemble.report_result(df)
    if found is None:
        return None
    result, folds = found
    draw = partial(figures.plot_ensemble_sizes, ensemble.sizes_table(result, folds), result.cols)
    return Section(ENSEMBLE, "Ensembles over trial_num", result.cols,
                   [PlannedFigure(figures.file_name(df, "ensemble_sizes"), "ensemble accuracy by ensemble size", draw)])


def confusion_section(df: pd.DataFrame, run_id: str | None = None, metric: str = "accuracy") -> Section:
    """The confusion matrix of ``run_id`` (an error when it has none), else of the best run that has one."""
    try:
        row = pick_run(df, run_id, metric)
    except SourceError as e:
        if run_id is not None:
            raise
        return Section(CONFUSION, "Confusion matrix", note=f"Not drawn: {md_escape(e)}", skipped=str(e))
    what = "chosen" if run_id else f"best (highest {metric})"
    matrix = PlannedFigure(figures.file_name(df, f"confusion_{row.run_id}"), f"confusion matrix {row.run_id}",
                           partial(figures.plot_confusion, row))
    return Section(CONFUSION, "Confusion matrix", figures=[matrix], run=row,
                   note=f"The {what} run, {md_escape(row.run_id)}: rows are true classes, normalised to 1.")


def sections(df: pd.DataFrame, keys: list[str], metric: str = "accuracy", run_id: str | None = None,
             folds: bool | None = None) -> list[Section]:
    """The report's sections on parameters ``keys``: one per key (or one of all runs), the per-fold one when the
    finished runs use several folds (or ``folds``; never when ``folds`` is False), the ensembles over trial_num
    when there are any, the confusion matrix's."""
    ok = finished(df, metric)
    if ok.empty:
        raise SourceError(f"no finished runs with {metric}: nothing to plot")
    plan = [parameter_section(df, key, metric) for key in keys or [None]]
    plan += [s for s in [importance_section(df, metric), optuna_section(df)] if s is not None]
    if folds:
        require_folds(df, metric)
    if folds or (folds is None and ok.fold.nunique() > 1):
        plan.append(fold_section(df, [k for k in keys if k != "fold"], metric))
    plan += [s for s in [ensemble_section(df)] if s is not None]
    plan.append(confusion_section(df, run_id, metric))
    return plan
