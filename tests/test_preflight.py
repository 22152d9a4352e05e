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


def test_inception_v3_needs_75_by_75():
    """torchvision's Inception-v3 (the Palanisamy et al. third model) takes 75 x 75 and nothing smaller."""
    cfg = merge([{"arch": "inception_v3_tv", "n_mels": 75, "pretrained": False}])
    check_model_input(cfg, 75, 10)
    with pytest.raises(ConfigError, match="inception_v3_tv cannot take a 1 x 75 x 74 spectrogram .* It needs at "
                                          "least 75 mel bands \\(n_mels\\) and 75 frames"):
        check_model_input(cfg, 74, 10)


def test_inputs_the_model_takes_pass():
    check_model_input(merge([]), 716, 50)  # the report's ResNet-18 at 224 x 716
    check_model_input(merge([{"arch": "simple_cnn", "n_mels": 32}]), 32, 10)


def test_clips_must_be_longer_than_half_the_fft():
    check_clip_length(merge([]), 220500)
    with pytest.raises(ConfigError, match="n_fft=1048576 needs clips longer than n_fft/2 = 524288 samples"):
        check_clip_length(merge([{"n_fft": 2**20}]), 220500)
