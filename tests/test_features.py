"""Log-mel features: shapes for several configs (stacked too), dB range, torchaudio's values, normalisation
statistics; per-channel windows and hops resized to one shape with the natural log, as Palanisamy et al."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio
import torchvision
from PIL import Image

from audiosweep.config import load_yaml, merge
from audiosweep.features import LogMel, channel_frames, compute_features, input_shape, n_frames, normalize, resize
from tests.conftest import REPO, SLICE


@pytest.mark.parametrize("layer, channels, mels", [
    ({}, 1, 224),
    ({"n_mels": 128, "hop_length_ms": 10}, 1, 128),
    ({"stacked_win_lengths": [1024, 2205, 4096]}, 3, 224),
    ({"sample_rate": 22050, "f_max": 11025, "n_fft": 2048, "win_length": 1024, "hop_length": 256,
      "n_mels": 64}, 1, 64),
])
def test_feature_shapes(layer, channels, mels):
    cfg = merge([layer])
    wavs = torch.randn(3, cfg.sample_rate * 5).half()
    feats = compute_features(wavs, cfg, torch.device("cpu"), batch_size=2)
    assert feats.shape == (3, channels, mels, n_frames(cfg, cfg.sample_rate * 5))
    assert torch.isfinite(feats).all()
    # dB, clipped per clip and channel to 80 dB below its peak
    span = feats.amax(dim=(-2, -1)) - feats.amin(dim=(-2, -1))
    assert (span <= 80.0 + 1e-3).all()


@pytest.mark.parametrize("knobs", [
    {},  # ours: a plain STFT, each clip floored 80 dB below its peak
    {"stft_normalized": True, "top_db": None},  # fastaudio's normalized=True, no floor
    # the report's fastaudio front end whole: torchaudio's MelSpectrogram defaults (htk scale, filters of peak 1)
    {"stft_normalized": True, "top_db": None, "mel_scale": "htk", "mel_norm": "none"},
    {"stft_normalized": True, "top_db": 40.0, "n_fft": 2048, "win_length": 2048},
])
def test_log_mels_equal_torchaudios_mel_spectrogram_in_db(knobs):
    cfg = merge([{"n_mels": 64, "n_fft": 4096, "win_length": 1764, "hop_length": 441, "f_max": 20000, **knobs}])
    t = torch.arange(cfg.sample_rate) / cfg.sample_rate
    torch.manual_seed(0)
    wav = (torch.sin(2 * torch.pi * 440 * t * (1 + t)) + 0.01 * torch.randn(len(t)))[None]
    wav[:, 11025:22050] = 0  # silence: its frames meet the floor of the dB conversion (top_db, or 1e-10 power)
    ours = compute_features(wav, cfg, torch.device("cpu"))[:, 0]
    mel = torchaudio.transforms.MelSpectrogram(
        cfg.sample_rate, n_fft=cfg.n_fft, win_length=cfg.win_lengths[0], hop_length=cfg.hop_samples,
        f_min=cfg.f_min, f_max=cfg.mel_f_max, n_mels=cfg.n_mels, power=2.0, normalized=cfg.stft_normalized,
        norm=None if cfg.mel_norm == "none" else "slaney", mel_scale=cfg.mel_scale)
    ref = torchaudio.transforms.AmplitudeToDB("power", top_db=cfg.top_db)(mel(wav))
    assert ours.shape == ref.shape
    assert torch.allclose(ours, ref, rtol=1e-5, atol=1e-3)
    span = float(ours.amax() - ours.amin())
    assert span <= 80.0 + 1e-3 if not knobs else (span > 80.0 if cfg.top_db is None else span <= 40.0 + 1e-3)


@pytest.mark.parametrize("n_fft, n_samples, frames", [(2205, 4410, 10), (2206, 4410, 11), (2205, 4411, 11)])
def test_frame_count_is_the_stfts_for_odd_and_even_ffts(n_fft, n_samples, frames):
    """The Palanisamy et al. front end's n_fft 2205 (22.05 kHz) is odd: a 30 s GTZAN clip at hop 441 is 1500
    frames, not 661500 // 441 + 1 = 1501."""
    cfg = merge([{"sample_rate": 22050, "n_fft": n_fft, "win_length": 1102, "hop_length": 441, "n_mels": 16}])
    assert n_frames(cfg, n_samples) == frames
    assert compute_features(torch.zeros(1, n_samples), cfg, torch.device("cpu")).shape[-1] == frames
    gtzan = merge([{"dataset": "gtzan", "sample_rate": 22050, "n_fft": 2205, "win_length": 1102, "hop_length": 441}])
    assert input_shape(gtzan)[-1] == 1500


def test_default_frames_match_report_input_size():
    cfg = merge([])
    assert n_frames(cfg, 220500) == 716
    assert input_shape(cfg) == (1, 224, 716) and input_shape(cfg, 37) == (1, 224, 37)


@pytest.mark.parametrize("layer, shape", [
    ({"stacked_win_lengths": [1024, 2048], "max_frames": 100}, (2, 224, 100)),
    ({"arch": "ast"}, (1, 128, 498)),  # kaldi: 1 + (80000 - 400) // 160 frames of a 5 s clip at 16 kHz
    ({"dataset": "urbansound8k", "sample_rate": 16000, "hop_length": 160, "n_mels": 64}, (1, 64, 401)),
])
def test_input_shape_follows_channels_clip_length_front_end_and_max_frames(layer, shape):
    assert input_shape(merge([layer])) == shape


def test_stacked_channels_differ_by_window():
    cfg = merge([{"stacked_win_lengths": [512, 4096], "n_mels": 64}])
    t = torch.arange(44100 * 5) / 44100
    wav = torch.sin(2 * torch.pi * 1000 * t * (1 + t))[None]
    feats = compute_features(wav, cfg, torch.device("cpu"))
    assert not torch.allclose(feats[0, 0], feats[0, 1])


def test_global_normalisation_uses_training_clips_only():
    feats = torch.randn(10, 2, 8, 5)
    feats[8:] += 100.0  # validation clips far off: must not shift the statistics
    out, stats = normalize(feats.clone(), "global", torch.arange(8))
    train = out[:8]
    assert torch.allclose(train.mean(dim=(0, 2, 3)), torch.zeros(2), atol=1e-4)
    assert torch.allclose(train.std(dim=(0, 2, 3), unbiased=False), torch.ones(2), atol=1e-3)
    assert len(stats["mean"]) == 2 and out[8:].mean() > 50


def test_sample_and_imagenet_normalisation():
    feats = torch.randn(4, 1, 8, 5) * 7 + 3
    out, _ = normalize(feats.clone(), "sample")
    assert torch.allclose(out.mean(dim=(-2, -1)), torch.zeros(4, 1), atol=1e-5)
    out, stats = normalize(feats.clone(), "imagenet")
    lo = (0 - stats["mean"][0]) / stats["std"][0]
    hi = (1 - stats["mean"][0]) / stats["std"][0]
    assert out.min() >= lo - 1e-4 and out.max() <= hi + 1e-4
    same, _ = normalize(feats.clone(), "none")
    assert torch.equal(same, feats)


def test_kaldi_front_end_is_what_ast_checkpoints_were_trained_on():
    """``--arch ast`` selects the kaldi front end and AudioSet normalisation: exactly transformers'
    ASTFeatureExtractor output (without its padding to 1024 frames)."""
    from transformers import ASTFeatureExtractor

    cfg = merge([{"arch": "ast"}])
    torch.manual_seed(0)
    wavs = torch.randn(3, 80000) * 0.1
    feats = compute_features(wavs, cfg, torch.device("cpu"))
    assert feats.shape == (3, 1, 128, 498) and n_frames(cfg, 80000) == 498  # 1 + (80000 - 400) // 160
    feats, stats = normalize(feats, cfg.normalize)
    extractor = ASTFeatureExtractor(max_length=498)
    ref = extractor([w.numpy() for w in wavs], sampling_rate=16000, return_tensors="pt")["input_values"]
    assert torch.allclose(feats[:, 0].transpose(1, 2), ref, atol=1e-5)
    assert stats == {"mean": [extractor.mean], "std": [2 * extractor.std]}


def test_kaldi_front_end_follows_the_spectrogram_keys():
    cfg = merge([{"arch": "ast", "pretrained": False, "n_mels": 64, "hop_length": 320, "win_length_ms": 40,
                  "f_max": 7000}])
    feats = compute_features(torch.randn(2, 80000), cfg, torch.device("cpu"))
    assert feats.shape == (2, 1, 64, 1 + (80000 - 640) // 320) == (2, 1, 64, n_frames(cfg, 80000))
    assert cfg.fft_size == 1024 and cfg.effective_dict()["n_fft"] == 1024  # Kaldi's window, padded to 2**k


# --- per-channel front ends (Palanisamy et al.) ------------------------------------------------------------------

# The paper's three channels, {window, hop} = {25, 10}, {50, 25}, {100, 50} ms, resized to 128 x 250, natural log:
# the recipe file, which the tests below check against the paper's code.
PAPER = load_yaml(REPO / "sweeps" / "recipes" / "frontend_multires.yaml")


@pytest.mark.parametrize("rate, windows, hops", [
    (44100, [1102, 2205, 4410], [441, 1102, 2205]),  # 25 ms = 1102.5 samples: Python rounds half to even
    (22050, [551, 1102, 2205], [220, 551, 1102]),  # 10 ms = 220.5 -> 220; 25 ms = 551.25 -> 551
])
def test_ms_lengths_round_as_the_papers_code(rate, windows, hops):
    cfg = merge([{**PAPER, "sample_rate": rate, "n_fft": rate // 10, "f_max": rate / 2}])
    assert cfg.win_lengths == windows and cfg.hop_lengths == hops
    assert windows == [int(round(ms * rate / 1000)) for ms in (25, 50, 100)]  # the code's own formula


def test_each_channel_has_the_frames_of_its_own_hop_before_the_resize():
    cfg = merge([PAPER])
    n = 220500  # a 5 s ESC-50 clip at 44.1 kHz; centred frames: n // hop + 1
    assert channel_frames(cfg, n) == [501, 201, 101]
    logmel, wav = LogMel(cfg), torch.randn(1, n)
    frames = [logmel.power(wav, getattr(logmel, f"window{i}"), hop).shape[-1] for i, hop in enumerate(cfg.hop_lengths)]
    assert frames == [501, 201, 101]


def test_channels_are_resized_to_one_shape():
    cfg = merge([PAPER])
    feats = compute_features(torch.randn(2, 220500), cfg, torch.device("cpu"))
    assert feats.shape == (2, 3, 128, 250) and input_shape(cfg) == (3, 128, 250) and n_frames(cfg, 220500) == 250
    # the height too, when resize_to's differs from n_mels; GTZAN's 30 s clips at 22.05 kHz as the paper's (128, 1500)
    assert input_shape(merge([{**PAPER, "n_mels": 64}])) == (3, 128, 250)
    gtzan = merge([{**PAPER, "dataset": "gtzan", "data_dir": "x", "sample_rate": 22050, "n_fft": 2205,
                    "f_max": 11025, "resize_to": [128, 1500]}])
    assert input_shape(gtzan) == (3, 128, 1500)


def test_ln_scale_is_the_log_of_power_plus_1e6_without_a_floor():
    power = torch.tensor([[[0.0, 1e-3, 1.0, 1e6]]])
    out = LogMel(merge([{**PAPER, "top_db": 10.0}])).log(power.clone())
    assert torch.allclose(out, torch.log(power + 1e-6))
    assert float(out.max() - out.min()) > 27  # ln(1e6) - ln(1e-6): no top_db floor
    db = 10 * torch.log10(power.clamp_min(1e-10))  # the default, db: floored 80 dB below the peak (60 dB)
    assert torch.allclose(LogMel(merge([])).log(power.clone()), db.clamp_min(60 - 80))


@pytest.mark.parametrize("size", [(128, 250), (128, 1500), (64, 37), (200, 101)])
def test_resize_is_pils_bilinear_resize(size):
    """torchvision's Resize of a float PIL image (the paper's code): PIL's bilinear filter, antialiased when it
    shrinks. Values of spread 5 agree to 1e-3 (float32 sums in a different order; PIL's coefficients are doubles)."""
    a = np.random.default_rng(0).normal(0, 5, (128, 501)).astype(np.float32)
    theirs = np.asarray(torchvision.transforms.Resize(size)(Image.fromarray(a)))
    ours = resize(torch.from_numpy(a)[None], size)[0].numpy()
    assert ours.shape == theirs.shape == size
    np.testing.assert_allclose(ours, theirs, atol=1e-3)
    plain = torch.nn.functional.interpolate(torch.from_numpy(a)[None, None], size, mode="bilinear")[0, 0].numpy()
    if size[1] < 501:  # shrinking: without the antialias, it would not be PIL's
        assert np.abs(plain - theirs).max() > 0.1


def test_the_papers_front_end_on_a_real_clip():
    """Every channel against the paper's code: torchaudio's MelSpectrogram (its defaults: f_max = Nyquist, htk, no
    filter norm, power 2), np.log(spec + 1e-6), torchvision's Resize((128, 250)) of the float PIL image; to 1e-4
    (values span about -14..14)."""
    clip = sorted((SLICE / "audio").glob("*.wav"))[0]
    wav, rate = sf.read(str(clip), dtype="float32")
    x = torch.from_numpy(wav)
    cfg = merge([PAPER])
    ours = compute_features(x[None], cfg, torch.device("cpu"))[0]
    for i, (win, hop) in enumerate(zip(cfg.win_lengths, cfg.hop_lengths, strict=True)):
        spec = torchaudio.transforms.MelSpectrogram(sample_rate=rate, n_fft=4410, win_length=win, hop_length=hop,
                                                    n_mels=128)(x).numpy()
        ref = np.asarray(torchvision.transforms.Resize((128, 250))(Image.fromarray(np.log(spec + 1e-6))))
        np.testing.assert_allclose(ours[i].numpy(), ref, atol=1e-4)


def test_cpu_features_use_one_thread_then_give_the_runs_back(monkeypatch):
    """CPU log-mels run with one intra-op thread (measured faster on 2 busy cores), the same values as with
    two, and the run's thread count is restored afterwards, also when a chunk fails."""
    from audiosweep import features

    cfg = merge([{"sample_rate": 16000, "n_mels": 32, "n_fft": 512, "win_length": 400, "hop_length": 160}])
    wavs = torch.randn(6, 16000)
    seen, make = [], features.frontend

    def counting(cfg):
        logmel = make(cfg)
        logmel.register_forward_pre_hook(lambda *_: seen.append(torch.get_num_threads()))
        return logmel

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        two = features.LogMel(cfg)(wavs)
        monkeypatch.setattr(features, "frontend", counting)
        ours = compute_features(wavs, cfg, torch.device("cpu"), batch_size=2)
        assert seen == [1, 1, 1] and torch.get_num_threads() == 2
        assert torch.equal(ours, two.float())
        with pytest.raises(RuntimeError):
            compute_features(torch.randn(2, 10), cfg, torch.device("cpu"))  # shorter than the FFT's padding
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
