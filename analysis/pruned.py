"""Pruned runs (status ``stopped``: ended by the sweep's ``early_terminate``, their history kept) beside finished
ones, where a comparison across runs needs them (parameter importance, parallel coordinates, the heatmap).

Rule: when some pruned run has a history, every finished run and every pruned run with a history is compared at
the last epoch all of them completed (the smallest last epoch among them: the pruner's first rung, where it stopped
runs there); each run's metric is its value after that epoch (``best_accuracy``: the best up to it). Otherwise, and
for ``test_accuracy`` (which pruned runs never reach), the finished runs with their final metric, as everywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from audiosweep.results import TEST_METRIC
from audiosweep.sweep.early_terminate import metric_at

from .runs import finished

PRUNED = "stopped"


@dataclass
class Compared:
    """The runs compared (``metric`` replaced by its value at ``epoch`` when one is given) and how many of them
    were pruned."""

    runs: pd.DataFrame
    epoch: int | None = None  # None: final metrics of finished runs only
    pruned: int = 0

    def note(self) -> str:
        """What was compared, for a figure's title or a command's output; "" when only finished runs were."""
        if self.epoch is None:
            return ""
        return (f"{self.pruned} pruned runs included: every run's metric after epoch {self.epoch}, the last epoch all "
                f"{len(self.runs)} runs completed")


def comparable(df: pd.DataFrame, metric: str = "accuracy") -> Compared:
    """The finished runs and the pruned ones with a history, compared as the module says."""
    ok = finished(df, metric)
    pruned = df[(df.status == PRUNED) & df.history.map(bool)]
    if pruned.empty or metric == TEST_METRIC:
        return Compared(ok)
    runs = pd.concat([ok, pruned])
    runs = runs[runs.history.map(lambda h: any(r.get("accuracy") is not None for r in h))]
    epoch = int(min(max(r["epoch"] for r in h) for h in runs.history))
    values = [metric_at([r for r in h if r["epoch"] <= epoch], metric) for h in runs.history]
    runs = runs.assign(**{metric: pd.Series(values, index=runs.index, dtype=float)}).dropna(subset=[metric])
    return Compared(runs, epoch, int((runs.status == PRUNED).sum()))
