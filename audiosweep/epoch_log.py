"""Training output for log files: one plain line per epoch instead of fastai's redrawn progress bars."""

from __future__ import annotations

import sys

from fastai.callback.core import Callback
from fastai.callback.progress import ProgressCallback
from fastai.learner import Learner, noop  # fastai's own noop (not fastcore's), as no_logging sets it


class EpochLines(Callback):
    """Prints each epoch's row of fastai's Recorder (``epoch 2  train_loss 1.234567  valid_loss ...  time 00:03``)
    as one line, flushed: the Recorder hands its row to ``learn.logger``, which this replaces during a fit."""

    order = ProgressCallback.order  # where the progress bar it stands in for would run

    def before_fit(self):
        # Fits that log nothing (get_preds, validate) leave the logger a noop; keep it so.
        self.old_logger = self.learn.logger
        if self.old_logger is not noop:
            self.learn.logger = self.write

    def after_fit(self):
        self.learn.logger = self.old_logger

    def write(self, log: list) -> None:
        names = self.recorder.metric_names
        print("  ".join(f"{n} {v:.6f}" if isinstance(v, float) else f"{n} {v}" for n, v in zip(names, log)),
              flush=True)


def plain_epoch_lines(learn: Learner, stream=None) -> Learner:
    """When ``stream`` (default: stdout) is not a terminal, replace ``learn``'s progress bar by :class:`EpochLines`;
    a terminal keeps fastai's bar and table."""
    if not (stream or sys.stdout).isatty():
        learn.remove_cbs(ProgressCallback)
        learn.add_cb(EpochLines())
    return learn
