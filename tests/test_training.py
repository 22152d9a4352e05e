"""The Learner: stopping on divergence, gradient accumulation, the per-epoch history, what it knows of its model."""

from __future__ import annotations

import pytest
import torch
from fastai.data.core import DataLoaders
from fastai.learner import Learner
from torch import nn

from audiosweep.best_epoch import BestEpoch
from audiosweep.config import merge
from audiosweep.errors import Diverged
from audiosweep.loaders import TensorLoader, make_dls
from audiosweep.training import History, ModelBody, StopOnDivergence, build_learner, fit
from tests.conftest import toy_learner


def test_every_learner_knows_its_body_and_has_the_callbacks_of_a_run():
    learn, _ = toy_learner({"arch": "resnet18", "pretrained": False}, 32, 48, [])
    body = learn.model_body
    assert isinstance(body, ModelBody) and body.pretrained is False
    assert body.blocks and all(any(b is m for m in learn.model[0].modules()) for b in body.blocks)
    whole = learn.model
    assert body.whole is whole
    learn.model, body.whole_model = whole[1], whole  # finetune head: the head trains alone
    assert body.whole is whole
    assert isinstance(learn.stop_on_divergence, StopOnDivergence) and isinstance(learn.best_epoch, BestEpoch)


class Poison(History):
    """Turns the model's weights into NaN after the first epoch."""

    def after_epoch(self):
        super().after_epoch()
        with torch.no_grad():
            for p in self.model.parameters():
                p.fill_(float("nan"))


def test_a_diverging_run_stops_and_says_where():
    torch.manual_seed(0)
    x, y = torch.randn(64, 1, 4, 4), torch.randint(0, 2, (64,))
    idx = torch.arange(64)
    dls = DataLoaders(TensorLoader(x, y, 16, shuffle=True, idx=idx[:48]), TensorLoader(x, y, 32, idx=idx[48:]))
    history = Poison()
    learn = Learner(dls, nn.Sequential(nn.Flatten(), nn.Linear(16, 2)), loss_func=nn.CrossEntropyLoss(),
                    cbs=[history, StopOnDivergence(), ModelBody(pretrained=False)])
    with pytest.raises(Diverged, match="at epoch 2, batch 1: lower learning_rate"), learn.no_bar(), \
            learn.no_logging():
        fit(learn, merge([{"arch": "simple_cnn", "n_epochs": 4, "learning_rate": 1e-3}]))
    assert len(history.rows) == 1  # the epoch before is kept; nothing after


@pytest.mark.parametrize("accumulate, steps", [(1, 5), (2, 2)])
def test_accumulate_steps_once_per_that_many_batches(accumulate, steps):
    """36 training clips in batches of 8 (the last one 4): with accumulate 2 the optimiser steps after every
    16 clips, twice an epoch; fastai's GradientAccumulation leaves the 4-clip remainder for the next epoch."""
    from fastai.callback.core import Callback

    class CountSteps(Callback):
        def before_fit(self):
            self.n = 0

        def after_step(self):
            self.n += 1

    cfg = merge([{"arch": "simple_cnn", "batch_size": 8, "accumulate": accumulate, "mix_up": 0, "n_epochs": 1}])
    x, y = torch.randn(48, 1, 32, 48), torch.arange(48) % 3
    counter = CountSteps()
    learn = build_learner(cfg, make_dls(x, y, torch.arange(36), torch.arange(36, 48), cfg), 1, 3,
                          torch.device("cpu"), [counter])
    fit(learn, cfg)
    assert counter.n == steps


def test_a_progress_file_that_cannot_be_written_does_not_end_the_run(tmp_path):
    """The per-epoch progress file feeds early termination only: when it cannot be written, the run goes on."""
    cfg = merge([{"arch": "simple_cnn", "batch_size": 8, "mix_up": 0, "n_epochs": 2}])
    history = History(progress=tmp_path / "missing-folder" / "run.progress.jsonl")
    x, y = torch.randn(24, 1, 32, 48), torch.arange(24) % 3
    learn = build_learner(cfg, make_dls(x, y, torch.arange(16), torch.arange(16, 24), cfg), 1, 3,
                          torch.device("cpu"), [history])
    with pytest.warns(UserWarning, match="cannot append to .*run.progress.jsonl .*going on without it"):
        fit(learn, cfg)
    assert len(history.rows) == 2 and history.progress is None
