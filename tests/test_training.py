"""Training pieces: the input check before any work, stopping on divergence, shared policies."""

from __future__ import annotations

import re

import pytest
import torch
from fastai.data.core import DataLoaders
from fastai.learner import Learner
from torch import nn

from audiosweep.config import ConfigError, merge
from audiosweep.errors import Diverged
from audiosweep.features import check_clip_length
from audiosweep.training import History, StopOnDivergence, TensorLoader, check_model_input, feature_dtype, fit


@pytest.mark.parametrize("layer, frames", [
    ({"arch": "simple_cnn", "n_mels": 1}, 716),
    ({"arch": "simple_cnn", "n_mels": 24}, 716),
    ({"arch": "simple_cnn", "n_mels": 64}, 2),  # hop_length 100000: 2 frames
    ({"arch": "densenet121", "n_mels": 16}, 716),
])
def test_an_input_the_model_cannot_take_is_refused_naming_the_keys(layer, frames):
    cfg = merge([layer])
    with pytest.raises(ConfigError) as e:
        check_model_input(cfg, frames, 50)
    msg = str(e.value)
    assert "n_mels" in msg and "hop_length" in msg and cfg.arch in msg and "Output size is too small" in msg
    least = re.search(r"needs at least (\d+) mel bands \(n_mels\) and (\d+) frames", msg)
    bands, least_frames = int(least[1]), int(least[2])
    check_model_input(merge([{**layer, "n_mels": bands}]), least_frames, 50)  # the sizes it names do pass
    with pytest.raises(ConfigError):
        check_model_input(merge([{**layer, "n_mels": bands - 1}]), least_frames, 50)
    with pytest.raises(ConfigError):
        check_model_input(merge([{**layer, "n_mels": bands}]), least_frames - 1, 50)


def test_inputs_the_model_takes_pass():
    check_model_input(merge([]), 716, 50)  # the report's ResNet-18 at 224 x 716
    check_model_input(merge([{"arch": "simple_cnn", "n_mels": 32}]), 32, 10)


def test_clips_must_be_longer_than_half_the_fft():
    check_clip_length(merge([]), 220500)
    with pytest.raises(ConfigError, match="n_fft=1048576 needs clips longer than n_fft/2 = 524288 samples"):
        check_clip_length(merge([{"n_fft": 2**20}]), 220500)


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
                    cbs=[history, StopOnDivergence()])
    learn.pretrained_body = False
    with pytest.raises(Diverged, match="at epoch 2, batch 1: lower learning_rate"), learn.no_bar(), \
            learn.no_logging():
        fit(learn, merge([{"arch": "simple_cnn", "n_epochs": 4, "learning_rate": 1e-3}]))
    assert len(history.rows) == 1  # the epoch before is kept; nothing after


def test_features_are_stored_in_float32_on_cpu():
    assert feature_dtype(merge([]), torch.device("cpu")) == torch.float32
    assert feature_dtype(merge([]), torch.device("cuda")) == torch.float16
    assert feature_dtype(merge([{"precision": "fp32"}]), torch.device("cuda")) == torch.float32


@pytest.mark.parametrize("accumulate, steps", [(1, 5), (2, 2)])
def test_accumulate_steps_once_per_that_many_batches(accumulate, steps):
    """36 training clips in batches of 8 (the last one 4): with accumulate 2 the optimiser steps after every
    16 clips, twice an epoch; fastai's GradientAccumulation leaves the 4-clip remainder for the next epoch."""
    from fastai.callback.core import Callback

    from audiosweep.training import build_learner, make_dls

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
    from audiosweep.training import build_learner, make_dls

    cfg = merge([{"arch": "simple_cnn", "batch_size": 8, "mix_up": 0, "n_epochs": 2}])
    history = History(progress=tmp_path / "missing-folder" / "run.progress.jsonl")
    x, y = torch.randn(24, 1, 32, 48), torch.arange(24) % 3
    learn = build_learner(cfg, make_dls(x, y, torch.arange(16), torch.arange(16, 24), cfg), 1, 3,
                          torch.device("cpu"), [history])
    with pytest.warns(UserWarning, match="cannot append to .*run.progress.jsonl .*going on without it"):
        fit(learn, cfg)
    assert len(history.rows) == 2 and history.progress is None
