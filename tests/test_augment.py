"""Augmentation on the device: what each stage does, that epochs differ and validation never changes, and that a
run with augmentation trains and is reproducible on the CPU."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import train
from audiosweep.augment import (
    SpecAugment,
    SpectralWarp,
    TrainingBatches,
    _resample,
    augmented,
    waveform_active,
    waveform_transform,
)
from audiosweep.config import merge
from audiosweep.errors import ConfigError
from audiosweep.features import compute_features, normalize
from audiosweep.loaders import TensorLoader, make_dls
from audiosweep.synthetic import class_clip
from tests.conftest import TINY, read_records

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
SMALL = {"sample_rate": 16000, "n_fft": 512, "win_length": 400, "hop_length": 160, "n_mels": 40, "batch_size": 8}


def waves(n: int = 12, rate: int = 16000) -> torch.Tensor:
    """``n`` synthetic clips (5 s) resampled to ``rate``, float16 as the cache holds them."""
    rng = np.random.default_rng(0)
    clips = torch.from_numpy(np.stack([class_clip(i % 10, rng) for i in range(n)]))
    import torchaudio

    return torchaudio.functional.resample(clips, 44100, rate).to(torch.float16)


def test_only_active_stages_are_built():
    assert not augmented(merge([])) and not waveform_active(merge([{"spec_time_masks": 2}]))
    assert augmented(merge([{"spec_time_masks": 2}])) and waveform_active(merge([{"pitch_p": 0.5}]))
    assert waveform_transform(merge([{"pitch_p": 1.0}])) is None  # pitch shift is spectral, not a waveform stage
    names = [type(t).__name__ for t in waveform_transform(merge([{"gain_p": 1, "noise_p": 0.5}])).transforms]
    assert names == ["Gain", "AddColoredNoise"]


def test_noise_is_added_at_the_asked_snr():
    torch.manual_seed(0)
    x = waves(4)[:, None].float()
    noisy = waveform_transform(merge([{"noise_p": 1, "noise_snr_min": 20, "noise_snr_max": 20}]))(
        x, sample_rate=16000).samples
    snr = 10 * torch.log10(x.pow(2).mean(-1) / (noisy - x).pow(2).mean(-1))
    assert torch.allclose(snr, torch.full_like(snr, 20.0), atol=0.5)


def test_noise_of_an_absolute_sigma_has_its_drawn_std_on_a_silent_clip():
    # the dual-stream paper's randn * uniform(0, 0.005): on silence the noise is the clip, its std the drawn sigma
    torch.manual_seed(0)
    cfg = merge([{"noise_p": 1, "noise_sigma_max": 0.005}])
    assert [type(t).__name__ for t in waveform_transform(cfg).transforms] == ["GaussianNoise"]
    std = waveform_transform(cfg)(torch.zeros(64, 1, 16000), sample_rate=16000).samples.std(-1).flatten()
    assert std.max() <= 0.005 * 1.05 and std.min() >= 0  # within the range, up to the estimate's error (~1 %)
    assert std.max() > 0.004 and std.min() < 0.001  # drawn across the whole range, one sigma per clip
    assert std.unique().numel() == 64


def test_noise_sigma_is_white_only():
    with pytest.raises(ConfigError, match="noise_sigma_max and noise_color: .* set noise_color white"):
        merge([{"noise_p": 1, "noise_sigma_max": 0.005, "noise_color": "pink"}])
    assert merge([{"noise_sigma_max": 0.005}]).effective_dict()["noise_sigma_max"] is None  # noise off: no effect


def test_resampling_an_axis_moves_a_peak_and_pads_with_silence():
    power = torch.zeros(300, 40)
    power[100] = 1.0
    assert _resample(power, 0, 0.5).argmax(0).eq(200).all()  # read at k/2: one octave up
    clip = torch.ones(10, 40)
    fast = _resample(clip, 1, 2.0)  # twice as fast: the second half is silence
    assert fast[:, :20].eq(1).all() and fast[:, 20:].eq(0).all()


def test_pitch_shift_and_stretch_draw_per_clip():
    torch.manual_seed(1)
    power = torch.rand(16, 257, 50)
    warped = SpectralWarp(merge([{"pitch_p": 0.5, "stretch_p": 0.5}]))(power)
    changed = [not torch.equal(a, b) for a, b in zip(warped, power)]
    assert 0 < sum(changed) < 16  # some clips, not all, with p = 0.5 each
    assert torch.equal(SpectralWarp(merge([]))(power), power)


def test_every_channel_of_a_clip_is_warped_alike():
    """One pitch factor per clip across its stacked channels (windows and hops of their own): a tone's peak lands
    in the same mel band in every channel of a clip, and in other bands in other clips."""
    cfg = merge([{**SMALL, "stacked_win_lengths": [256, 512], "stacked_hop_lengths": [160, 320],
                  "resize_to": [40, 100], "pitch_p": 1, "pitch_semitones": 6, "top_db": None}])
    t = torch.arange(16000) / 16000
    tone = torch.sin(2 * torch.pi * 1000 * t).repeat(8, 1)
    torch.manual_seed(4)
    feats = TrainingBatches(cfg, torch.device("cpu"), {}).augment(tone)
    assert feats.shape == (8, 2, 40, 100)
    peaks = feats[..., 40:60].mean(-1).argmax(-1)  # (clip, channel): the loudest band mid-clip
    assert torch.equal(peaks[:, 0], peaks[:, 1]) and len(set(peaks[:, 0].tolist())) > 1


@pytest.mark.parametrize("keys", [{"spec_freq_masks": 1, "spec_time_masks": 1}, {"stretch_p": 1, "noise_p": 1},
                                  {"pitch_p": 1, "view_channels": ["original", "augmented"]}])
def test_augmented_batches_have_the_resized_shape(keys):
    """Spectral warps, SpecAugment and augmented views of channels with their own hops: every batch is resize_to's
    shape (the stretch reads the frames of each channel's own hop)."""
    cfg = merge([{**SMALL, "stacked_win_lengths_ms": [16, 32], "stacked_hop_lengths_ms": [10, 25],
                  "resize_to": [32, 60], "log_scale": "ln", **keys}])
    w = waves(4)
    feats, stats = normalize(compute_features(w, cfg, torch.device("cpu")), cfg.normalize)
    assert feats.shape == (4, 2, 32, 60)
    batches = TrainingBatches(cfg, torch.device("cpu"), stats)
    inputs, source = batches.with_views(feats, w)
    assert inputs.shape == (4, cfg.n_channels, 32, 60)
    source = source if waveform_active(cfg) or source.dtype == torch.long else feats  # rows, waveforms or features
    assert batches(source[:3]).shape == (3, cfg.n_channels, 32, 60)


def test_spec_augment_masks_whole_bands_and_frames():
    torch.manual_seed(2)
    feats = torch.ones(4, 1, 40, 100)
    out = SpecAugment(merge([{"spec_freq_masks": 1, "spec_freq_width": 10, "spec_time_masks": 2,
                              "spec_time_width": 20}]))(feats.clone())
    zero_bands = (out == 0).all(dim=-1).sum(dim=(1, 2))
    zero_frames = (out == 0).all(dim=-2).sum(dim=(1, 2))
    assert (zero_bands <= 10).all() and (zero_frames <= 40).all() and (out == 0).any()


def test_epochs_differ_validation_never_does_and_a_seed_repeats():
    cfg = merge([{**SMALL, "pitch_p": 1, "noise_p": 1, "shift_p": 1, "spec_time_masks": 1}])
    w = waves(12)
    feats, stats = normalize(compute_features(w, cfg, torch.device("cpu")), cfg.normalize, torch.arange(8))
    batches = TrainingBatches(cfg, torch.device("cpu"), stats)
    dls = make_dls(feats, torch.zeros(12, dtype=torch.long), torch.arange(8), torch.arange(8, 12), cfg,
                   train_source=w, train_transform=batches)
    ordered = TensorLoader(w, torch.zeros(12, dtype=torch.long), 8, idx=torch.arange(8), transform=batches)

    def epoch(loader):
        return torch.cat([x for x, _ in loader])

    torch.manual_seed(3)
    first, second = epoch(ordered), epoch(ordered)
    assert first.shape == (8, 1, 40, 501) and not torch.allclose(first, second)
    torch.manual_seed(3)
    assert torch.equal(epoch(ordered), first)  # same seed, same augmented inputs (CPU)
    valid = [epoch(dls.valid) for _ in range(2)]
    assert torch.equal(valid[0], valid[1]) and torch.equal(valid[0], feats[8:])  # features computed once
    assert not torch.allclose(first, feats[:8])
    assert math.isclose(float(epoch(dls.train).mean()), 0.0, abs_tol=0.5)  # normalised with the clean statistics


@pytest.mark.slow
def test_a_run_with_augmentation_trains_and_records_its_knobs(tmp_path, synth_root, cache_dir):
    out = tmp_path / "res"
    code = train.main(["--data_dir", str(synth_root), "--allow_missing", "true", "--esc10", "true", "--cache_dir",
                       str(cache_dir), "--results_dir", str(out), *TINY, "--n_epochs", "2", "--pitch_shift",
                       "--add_noise", "--signal_shift", "--spec_time_masks", "2", "--stretch_p", "0.5"])
    (rec,) = read_records(out)
    assert code == 0 and rec["status"] == "finished" and len(rec["history"]) == 2
    c = rec["config"]
    assert (c["pitch_p"], c["noise_p"], c["shift_p"], c["spec_time_masks"], c["stretch_p"]) == (1.0, 1.0, 0.5, 2, 0.5)
    assert "pitch_shift" not in c and "add_noise" not in c
