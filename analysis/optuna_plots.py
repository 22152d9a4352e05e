"""Optuna's own plots of a bayes sweep's study (``optuna.visualization.matplotlib``: no plotly needed): the
optimisation history, the parameters' importances (Optuna's fANOVA), a slice per parameter and, when the pruner
stopped runs, their intermediate values. The study is found where the local runner keeps it: the journal file
``optuna.journal`` beside the sweep's records (``audiosweep.sweep.study``); a study in an RDB (``--storage``), W&B
runs and grid or random sweeps (whose journal holds only the pruner's rungs, ``<sweep>:hyperband``) get none.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import optuna
import optuna.visualization.matplotlib as vis
import pandas as pd
from matplotlib import pyplot as plt
from matplotlib.figure import Figure
from optuna.trial import TrialState

from audiosweep.sweep.study import storage

JOURNAL = "optuna.journal"
RUNG_STUDY = ":hyperband"  # RungSource's study of a grid or random sweep: rungs only, no sampler's search


def bayes_studies(df: pd.DataFrame) -> list[optuna.Study]:
    """The bayes studies in the journals beside ``df``'s records that hold a completed trial."""
    folders = sorted({Path(p).parent for p in df.record_path if isinstance(p, str)})
    found = []
    for folder in (f for f in folders if (f / JOURNAL).is_file()):
        store = storage(None, folder)
        for name in optuna.study.get_all_study_names(store):
            study = optuna.load_study(study_name=name, storage=store)
            if not name.endswith(RUNG_STUDY) and study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
                found.append(study)
    return found


def _figure(draw: Callable[[], object]) -> Figure:
    """The figure Optuna drew on (an Axes or an array of them), let go of by pyplot so that it is not kept."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        axes = draw()
    first = axes.flat[0] if hasattr(axes, "flat") else axes
    fig = first.figure
    fig.set_layout_engine("constrained")
    plt.close(fig)
    return fig


def plots(study: optuna.Study) -> dict[str, tuple[str, Callable[[], Figure]]]:
    """Name -> (what it shows, drawing) of the plots that say something for ``study``: the importances need two
    parameters, the intermediate values a pruned trial."""
    shown = {"optuna_history": ("Optuna: objective per trial and best so far",
                                lambda: _figure(lambda: vis.plot_optimization_history(study))),
             "optuna_slice": ("Optuna: objective against each parameter",
                              lambda: _figure(lambda: vis.plot_slice(study)))}
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len({k for t in complete for k in t.params}) > 1 and len(complete) > 1:
        shown["optuna_importances"] = ("Optuna: parameter importances (fANOVA)",
                                       lambda: _figure(lambda: vis.plot_param_importances(study)))
    if study.get_trials(deepcopy=False, states=(TrialState.PRUNED,)):
        shown["optuna_intermediate"] = ("Optuna: metric per epoch of every trial, pruned ones included",
                                        lambda: _figure(lambda: vis.plot_intermediate_values(study)))
    return shown
