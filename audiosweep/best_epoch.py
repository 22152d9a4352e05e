"""The epoch with the best validation accuracy and its weights: the ones evaluated with ``checkpoint: best``, the
ones saved with ``save_model: best``."""

from __future__ import annotations

import numpy as np
from fastai.callback.tracker import TrackerCallback


class BestEpoch(TrackerCallback):
    """fastai's tracker of validation accuracy, across the fits of a run (``reset_on_fit`` false: fine_tune's two
    phases are one run), epochs counted from 1 across them as in the record. When the best epoch's weights are
    evaluated (``evaluate``) or saved (``save``), it keeps them in host memory, those of the whole model
    (``finetune: head`` trains its head alone: ``learn.model_body.whole``).

    Not fastai's ``SaveModelCallback``: it loads the best weights at the end of each fit, which would restart
    fine_tune's second phase from the frozen phase's best epoch; here :meth:`load_best` waits until the whole run
    has trained, and training stays what it is with ``checkpoint: last``."""

    def __init__(self, evaluate: bool = False, save: bool = False):
        super().__init__(monitor="accuracy", comp=np.greater, reset_on_fit=False)
        self.evaluate, self.keep = evaluate, evaluate or save
        self.epochs_trained, self.best_at, self.state = 0, None, None

    def before_train(self):
        self.epochs_trained += 1

    def after_epoch(self):
        super().after_epoch()
        if self.new_best:
            self.best_at = self.epochs_trained
            if self.keep:
                model = self.learn.model_body.whole
                self.state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}

    @property
    def evaluated(self) -> int:
        """The epoch whose weights the model holds once :meth:`load_best` ran: the best with ``evaluate``, else
        the last."""
        return self.best_at if self.evaluate and self.best_at is not None else self.epochs_trained

    def load_best(self) -> None:
        """With ``evaluate``, put the best epoch's weights into ``learn.model`` (the whole model)."""
        if self.evaluate and self.state is not None:
            self.learn.model.load_state_dict(self.state)
