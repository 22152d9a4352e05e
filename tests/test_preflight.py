"""Checks before any work: an input the architecture cannot take, clips too short for the STFT."""

from __future__ import annotations

import re

import pytest

from audiosweep.config import merge
from audiosweep.errors import ConfigError
from audiosweep.features import check_clip_length
from audiosweep.preflight import check_model_input


@pytest.mark.parametrize("layer, frames", [
    ({"arch": "simple_cnn", "n_mels": 1}, 716),
    ({"arch": "simple_cnn", "n_mels": 24}, 716),
    ({"arch": "simple_cnn", "n_mels": 64}, 2),  # hop_length 100000: 2 frames
    ({"arch": "densenet121", "n_mels": 16}, 716),
])
@pytest.mark.slow
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


def test_the_resized_shape_is_what_the_model_is_checked_on():
    """resize_to sets the model's input, whatever n_mels and the hops give before it; a refusal names it."""
    stacked = {"arch": "simple_cnn", "stacked_win_lengths": [1024, 2048], "stacked_hop_lengths": [256, 512]}
    check_model_input(merge([{**stacked, "n_mels": 24, "resize_to": [64, 100]}]), 100, 50)  # 24 bands alone fail
    with pytest.raises(ConfigError) as e:
        check_model_input(merge([{**stacked, "n_mels": 64, "resize_to": [1, 100]}]), 100, 50)
    assert "resize_to" in str(e.value) and "2 x 1 x 100" in str(e.value) and "resized to 1 x 100" in str(e.value)
