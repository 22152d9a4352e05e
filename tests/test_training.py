"""The Learner: stopping on divergence, gradient accumulation, the per-epoch history, what it knows of its model."""

from __future__ import annotations

import contextlib
import sys

import pytest
import torch
from fastai.callback.core import Callback
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


def fit_linear(history: History, bs: int, message: str) -> None:
    """Fit a linear model on 48 random clips in batches of ``bs`` with ``history``; it must diverge with
    ``message``."""
    torch.manual_seed(0)
    x, y = torch.randn(64, 1, 4, 4), torch.randint(0, 2, (64,))
    idx = torch.arange(64)
    dls = DataLoaders(TensorLoader(x, y, bs, shuffle=True, idx=idx[:48]), TensorLoader(x, y, 32, idx=idx[48:]))
    learn = Learner(dls, nn.Sequential(nn.Flatten(), nn.Linear(16, 2)), loss_func=nn.CrossEntropyLoss(),
                    cbs=[history, StopOnDivergence(), ModelBody(pretrained=False)])
    with pytest.raises(Diverged, match=message), learn.no_bar(), learn.no_logging():
        fit(learn, merge([{"arch": "simple_cnn", "n_epochs": 4, "learning_rate": 1e-3}]))


def test_a_diverging_run_stops_and_says_where():
    history = Poison()
    fit_linear(history, 16, "at epoch 2, batch 1: lower learning_rate")
    assert len(history.rows) == 1  # the epoch before is kept; nothing after


def test_the_first_bad_batch_is_named_though_checked_once_an_epoch():
    class PoisonBatch(History):
        def after_batch(self):
            if self.training and len(self.rows) == 1 and self.iter == 1:  # epoch 2, batch 2
                with torch.no_grad():
                    for p in self.model.parameters():
                        p.fill_(float("inf"))

    history = PoisonBatch()
    fit_linear(history, 8, "loss became nan at epoch 2, batch 3: lower")
    assert len(history.rows) == 1


# Tensor methods that copy a value to the host: on a GPU each waits for the device (a sync).
HOST_READS = ("item", "tolist", "__bool__", "__float__", "__int__", "__index__", "numpy")


@contextlib.contextmanager
def host_reads():
    """Counts the calls of :data:`HOST_READS` made outside torch, except fastai's one-cycle schedule, whose
    tensors (``combine_scheds``' break points) are built on the host and never wait for a device."""
    calls = []
    saved = {name: getattr(torch.Tensor, name) for name in HOST_READS}

    def counted(name):
        def read(self, *args, **kwargs):
            frame = sys._getframe(1)
            while frame and ("/torch/" in frame.f_code.co_filename or "torch_core" in frame.f_code.co_filename):
                frame = frame.f_back  # fastai's TensorBase reads through torch: name the first caller outside
            if frame and not frame.f_code.co_filename.endswith("fastai/callback/schedule.py"):
                calls.append(f"{name} in {frame.f_code.co_filename}:{frame.f_lineno}")
            return saved[name](self, *args, **kwargs)
        return read

    for name in HOST_READS:
        setattr(torch.Tensor, name, counted(name))
    try:
        yield calls
    finally:
        for name, method in saved.items():
            setattr(torch.Tensor, name, method)


def test_training_batches_read_nothing_back_from_the_device():
    """Between one training batch and the next (augmentation with spectral warps and SpecAugment, MixUp, the
    divergence check, fastai's loop), no value is read back to the host: on a GPU no step waits for the one
    before. torch.cuda.set_sync_debug_mode would say so on a GPU; without CUDA it sees nothing."""
    from audiosweep.augment import TrainingBatches
    from audiosweep.features import compute_features, normalize
    from tests.test_augment import SMALL, waves

    cfg = merge([{**SMALL, "arch": "simple_cnn", "pitch_p": 1, "stretch_p": 1, "spec_time_masks": 1,
                  "spec_freq_masks": 1, "mix_up": 0.4, "batch_size": 4, "n_epochs": 2}])
    w = waves(24)
    feats, stats = normalize(compute_features(w, cfg, torch.device("cpu")), cfg.normalize, torch.arange(16))
    dls = make_dls(feats, torch.arange(24) % 3, torch.arange(16), torch.arange(16, 24), cfg, train_source=w,
                   train_transform=TrainingBatches(cfg, torch.device("cpu"), stats))

    class Marks(Callback):
        def before_batch(self):
            if self.training:
                marks.append(len(calls))

    marks = []
    with host_reads() as calls:
        learn = build_learner(cfg, dls, 1, 3, torch.device("cpu"), [Marks()])
        fit(learn, cfg)
    per_batch = [marks[i + 1] - marks[i] for i in (0, 1, 2, 4, 5, 6)]  # 4 batches an epoch, within each epoch
    assert len(marks) == 8 and per_batch == [0] * 6, calls
    assert calls  # the count works: once an epoch, the Recorder and the divergence check read their values


@pytest.mark.parametrize("accumulate, steps", [(1, 5), (2, 2)])
def test_accumulate_steps_once_per_that_many_batches(accumulate, steps):
    """36 training clips in batches of 8 (the last one 4): with accumulate 2 the optimiser steps after every
    16 clips, twice an epoch; fastai's GradientAccumulation leaves the 4-clip remainder for the next epoch."""
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
