"""Augmentation on the device: what each stage does, that epochs differ and validation never changes, and that a
run with augmentation trains and is reproducible on the CPU."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import train
from audiosweep import augment
from audiosweep.augment import (
    SpecAugment,
    SpectralWarp,
    TrainingBatches,
    WaveformWarp,
    _resample,
    augmented,
    draw_warps,
    fit_length,
    pitch_shift,
    time_stretch,
    waveform_active,
    waveform_transform,
)
from audiosweep.config import merge
from audiosweep.errors import ConfigError
from audiosweep.features import compute_features, frontend, normalize
from audiosweep.loaders import TensorLoader, make_dls
from audiosweep.synthetic import class_clip
from tests.conftest import REPO, TINY, read_records

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
    power = torch.zeros(2, 300, 40)
    power[:, 100] = 1.0
    up = _resample(power, 1, torch.tensor([0.5, 0.5]), torch.tensor([True, False]))
    assert up[0].argmax(0).eq(200).all() and torch.equal(up[1], power[1])  # read at k/2: one octave up; off: as is
    clip = torch.ones(1, 10, 40)
    fast = _resample(clip, 2, torch.tensor([2.0]), torch.tensor([True]))  # twice as fast: second half is silence
    assert fast[0, :, :20].eq(1).all() and fast[0, :, 20:].eq(0).all()


def _resample_one(x: torch.Tensor, dim: int, step: float) -> torch.Tensor:
    """The per-clip resampling of before the batched one, kept as the reference."""
    size = x.shape[dim]
    pos = torch.arange(size, device=x.device, dtype=torch.float32) * step
    lo = pos.floor().long()
    w = (pos - lo).unsqueeze(1 - dim)
    inside = (lo < size).unsqueeze(1 - dim)
    a = x.index_select(dim, lo.clamp(max=size - 1))
    b = x.index_select(dim, (lo + 1).clamp(max=size - 1))
    return torch.where(inside, a * (1 - w) + b * w, torch.zeros((), device=x.device, dtype=x.dtype))


@pytest.mark.parametrize("keys", [{"pitch_p": 0.6, "stretch_p": 0.6},
                                  {"pitch_p": 1, "pitch_semitones": 2, "pitch_integer": True, "stretch_p": 1,
                                   "stretch_min_rate": 0.9, "stretch_max_rate": 1.2}])
@pytest.mark.parametrize("at_once", [2, 64])  # the CPU's chunks; the whole batch, as on a GPU
def test_the_batched_spectral_warp_equals_the_loop_over_clips(keys, at_once, monkeypatch):
    """The same draws, many clips at once: as the Python loop over clips (one pitch then one stretch
    resampling per clip) to float tolerance."""
    monkeypatch.setattr(augment, "CPU_WARP_CLIPS", at_once)
    cfg = merge([keys])
    torch.manual_seed(7)
    power = torch.rand(64, 257, 120) ** 4
    torch.manual_seed(8)
    new = SpectralWarp(cfg)(power)
    torch.manual_seed(8)
    pitch, stretch = (t.tolist() for t in draw_warps(cfg, 64, torch.device("cpu")))
    old = power.clone()
    for i, (semitones, rate) in enumerate(zip(pitch, stretch, strict=True)):
        if semitones:
            old[i] = _resample_one(old[i], 0, 2.0 ** (-semitones / 12))
        if rate:
            old[i] = _resample_one(old[i], 1, 1.0 + rate)
    assert any(pitch) and any(stretch)
    torch.testing.assert_close(new, old, rtol=1e-6, atol=1e-7)


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


def test_default_spectral_draws_are_those_of_before():
    # before stretch_min_rate/stretch_max_rate and pitch_integer: uniform +-amount, then the gate, per key
    def old_draw(n, p, amount):
        if p <= 0 or amount <= 0:
            return [0.0] * n
        values = (torch.rand(n) * 2 - 1) * amount
        return torch.where(torch.rand(n) < p, values, torch.zeros_like(values)).tolist()

    for keys in ({"pitch_p": 0.7, "stretch_p": 0.6}, {"stretch_p": 1, "stretch_max": 0.3}, {"pitch_p": 1}):
        cfg = merge([keys])
        torch.manual_seed(4)
        new = tuple(t.tolist() for t in draw_warps(cfg, 64, torch.device("cpu")))
        torch.manual_seed(4)
        old = old_draw(64, cfg.pitch_p, cfg.pitch_semitones), old_draw(64, cfg.stretch_p, cfg.stretch_max)
        assert new == old
    cfg = merge([{"pitch_p": 1, "stretch_p": 1}])
    batches = TrainingBatches(cfg, torch.device("cpu"), {})
    assert isinstance(batches.warp, SpectralWarp) and batches.wave_warp is None
    assert SpectralWarp(cfg).frames_read(101) == 122  # 1 + stretch_max = 1.2 times as many, plus one


def peak_hz(wav: torch.Tensor, rate: int) -> torch.Tensor:
    """The frequency of each clip's spectral peak (Hz), to the FFT's resolution (rate / samples)."""
    spec = torch.fft.rfft(wav * torch.hann_window(wav.shape[-1]), dim=-1).abs()
    return spec.argmax(dim=-1) * rate / wav.shape[-1]


def tones(n: int, hz: float = 440.0, rate: int = 16000, seconds: float = 4.0) -> torch.Tensor:
    t = torch.arange(int(rate * seconds)) / rate
    return torch.sin(2 * math.pi * hz * t).repeat(n, 1)


@pytest.mark.parametrize("semitones", [-2, -1, 1, 2, 0.5])
def test_a_waveform_pitch_shift_moves_a_tone_by_its_semitones(semitones):
    # 4 s at 16 kHz: 0.25 Hz bins, about 1 cent at 440 Hz; tolerance 3 cents, a tenth of the smallest step here
    shifted = pitch_shift(tones(1), semitones)
    assert shifted.shape == (1, 64000)
    cents = 1200 * math.log2(float(peak_hz(shifted, 16000)[0]) / 440)
    assert abs(cents - 100 * semitones) < 3


def test_waveform_warp_shifts_each_clip_by_its_whole_semitone_draw():
    cfg = merge([{**SMALL, "pitch_p": 1, "pitch_semitones": 2, "pitch_integer": True, "warp_domain": "waveform"}])
    torch.manual_seed(5)
    drawn = draw_warps(cfg, 10, torch.device("cpu"))[0].tolist()
    torch.manual_seed(5)
    out = WaveformWarp(cfg)(tones(10))
    assert len(set(drawn)) > 2  # several groups of one value each
    assert torch.allclose(peak_hz(out, 16000), 440 * 2 ** (torch.tensor(drawn) / 12), rtol=0.002)


@pytest.mark.parametrize("rate", [0.9, 1.2])
def test_a_waveform_stretch_changes_duration_by_the_rate_then_crops_or_pads(rate):
    wav = torch.zeros(1, 64000)
    wav[:, 16000:32000] = tones(1, seconds=1.0)  # a tone from 1 s to 2 s
    stretched = time_stretch(wav, rate)
    assert stretched.shape == (1, round(64000 / rate))
    frames = stretched[0, :stretched.shape[1] // 160 * 160].reshape(-1, 160)  # 10 ms frames
    loud = (frames.abs().amax(dim=1) > 0.5).nonzero().flatten()
    start, end = loud[0] * 160 / 16000, (loud[-1] + 1) * 160 / 16000
    assert abs(start - 1 / rate) < 0.04 and abs(end - 2 / rate) < 0.04  # within a 512-sample hop and a frame
    pitch = peak_hz(stretched[:, int(16000 / rate) + 800:int(32000 / rate) - 800], 16000)[0]
    assert abs(pitch - 440) < 20  # the same pitch: a resampling to that length would give 396 or 528 Hz
    cfg = merge([{**SMALL, "stretch_p": 1, "stretch_min_rate": rate, "stretch_max_rate": rate,
                  "warp_domain": "waveform"}])
    out = WaveformWarp(cfg)(wav)
    assert out.shape == wav.shape  # cropped or padded back to the clip
    n = min(64000, round(64000 / rate))
    assert torch.equal(out[:, :n], stretched[:, :n]) and out[:, n:].eq(0).all()


def test_the_papers_draws_whole_semitones_in_two_and_rates_in_0_9_to_1_2():
    cfg = merge([{"pitch_p": 1, "pitch_semitones": 2, "pitch_integer": True, "stretch_p": 1,
                  "stretch_min_rate": 0.9, "stretch_max_rate": 1.2}])
    torch.manual_seed(6)
    pitch, stretch = (t.tolist() for t in draw_warps(cfg, 2000, torch.device("cpu")))
    assert set(pitch) == {-2.0, -1.0, 0.0, 1.0, 2.0}
    assert 350 < pitch.count(0.0) < 450  # each value a fifth of the time
    rates = torch.tensor(stretch) + 1
    assert rates.min() >= 0.9 - 1e-6 and rates.max() <= 1.2 + 1e-6
    assert rates.min() < 0.91 and rates.max() > 1.19 and abs(float(rates.mean()) - 1.05) < 0.01
    assert SpectralWarp(cfg).frames_read(101) == 122  # the highest rate, 1.2


def test_the_waveform_domain_replaces_the_spectral_warp_and_runs_the_front_end():
    cfg = merge([{**SMALL, "pitch_p": 1, "stretch_p": 1, "warp_domain": "waveform", "normalize": "none"}])
    batches = TrainingBatches(cfg, torch.device("cpu"), {})
    assert batches.warp is None and isinstance(batches.wave_warp, WaveformWarp)
    w = waves(4)
    torch.manual_seed(7)
    x = batches(w)
    assert x.shape == (4, 1, 40, 501) and not torch.allclose(x, compute_features(w, cfg, torch.device("cpu")))
    kaldi = merge([{**SMALL, "frontend": "kaldi", "pitch_p": 1, "warp_domain": "waveform"}])
    assert TrainingBatches(kaldi, torch.device("cpu"), {})(w).shape[:2] == (4, 1)


def test_with_resize_to_a_stretched_clip_keeps_its_length_and_the_resize_squeezes_it_back():
    """The Palanisamy code never crops a stretched clip: its front end's resize brings the frames back to the common
    shape. So the input is the front end of the whole stretched waveform, not of its first clip-length samples."""
    cfg = merge([{**SMALL, "stacked_win_lengths": [400, 512], "stacked_hop_lengths": [160, 320],
                  "resize_to": [40, 100], "stretch_p": 1, "stretch_min_rate": 0.8, "stretch_max_rate": 0.8,
                  "warp_domain": "waveform", "normalize": "none", "log_scale": "ln"}])
    w = waves(3)
    x = TrainingBatches(cfg, torch.device("cpu"), {})(w)
    front = frontend(cfg)
    slower = time_stretch(w, 0.8)
    assert slower.shape[-1] == round(w.shape[-1] / 0.8) and x.shape == (3, 2, 40, 100)
    assert torch.allclose(x, front(slower), atol=1e-4)
    assert not torch.allclose(x, front(fit_length(slower, w.shape[-1])), atol=1e-2)  # not cropped first


@pytest.mark.parametrize("keys", [{"pitch_p": 1, "warp_domain": "waveform"}, {"spec_time_masks": 2}])
def test_keep_clean_copy_serves_every_clip_twice_once_unaugmented(keys):
    cfg = merge([{**SMALL, **keys, "keep_clean_copy": True}])
    w = waves(12)
    feats, stats = normalize(compute_features(w, cfg, torch.device("cpu")), cfg.normalize, torch.arange(8))
    batches = TrainingBatches(cfg, torch.device("cpu"), stats)
    feats, source = batches.with_views(feats, w if batches.from_waveforms else None)
    clip = torch.arange(12)  # each clip's target is its row: a served item names its clip
    dls = make_dls(feats, clip, torch.arange(8), torch.arange(8, 12), cfg, train_source=source,
                   train_transform=batches)
    torch.manual_seed(8)
    served = [(x, y) for x, y in dls.train]
    xs, ys = torch.cat([x for x, _ in served]), torch.cat([y for _, y in served])
    assert len(dls.train) == 2 and len(xs) == 16  # 2 x 8 training clips, in batches of 8
    clean = torch.tensor([torch.equal(x, feats[y]) for x, y in zip(xs, ys, strict=True)])
    assert clean.sum() == 8 and sorted(ys[clean].tolist()) == sorted(ys[~clean].tolist()) == list(range(8))
    assert len({tuple(ys[i:i + 8].tolist()) for i in (0, 8)}) == 2  # shuffled over the doubled set
    assert len(dls.valid.idx) == 4 and torch.equal(torch.cat([x for x, _ in dls.valid]), feats[8:])


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


@pytest.mark.slow
def test_a_run_with_the_palanisamy_recipe_trains_and_records_its_knobs(tmp_path, synth_root, cache_dir):
    out = tmp_path / "res"
    code = train.main(["--data_dir", str(synth_root), "--allow_missing", "true", "--esc10", "true", "--cache_dir",
                       str(cache_dir), "--results_dir", str(out), *TINY, "--n_epochs", "1", "--config",
                       str(REPO / "sweeps" / "recipes" / "augment_palanisamy.yaml")])
    (rec,) = read_records(out)
    assert code == 0 and rec["status"] == "finished" and len(rec["history"]) == 1
    c = rec["config"]
    assert (c["warp_domain"], c["keep_clean_copy"], c["pitch_integer"]) == ("waveform", True, True)
    assert (c["stretch_min_rate"], c["stretch_max_rate"], c["pitch_semitones"]) == (0.9, 1.2, 2.0)
