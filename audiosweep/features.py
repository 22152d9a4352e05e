"""Waveforms -> (stacked) log-mel spectrograms, batch-wise on the training device, then normalisation.

Two front ends (``frontend``): ``logmel`` (ours, below) and ``kaldi`` (AST's, :class:`KaldiFbank`).

This replaces fastaudio's ``AudioToSpec``: ``torch.stft`` and torchaudio's mel filterbank run on whole batches
on the device where the model trains, and since nothing before them is random they run once per run, not once
per epoch.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torchaudio
from torch import nn
from tqdm.std import tqdm  # not tqdm.auto: it warns in Jupyter without ipywidgets

from .config import Config
from .data import clip_samples
from .errors import ConfigError

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# AST's normalisation of AudioSet kaldi fbanks (ASTFeatureExtractor's mean and std; AST divides by twice the std).
AUDIOSET_MEAN, AUDIOSET_STD = -4.2677393, 4.5689974
# Share of a GPU's free memory that features (and, while they are computed, waveforms) may take; the rest
# is left to the model, its activations and other runs on the same GPU.
DEVICE_SHARE = 0.5
# On the CPU, log-mels are computed in chunks whose STFT buffers stay under this size: the C allocator maps
# larger blocks fresh from the OS on every call, and their page faults cost more than the FFTs (2x slower at
# the default settings with 16- or 64-clip chunks).
CPU_CHUNK_BYTES = 24 * 2**20
# CPU features are computed with one intra-op thread, whatever the run's: chunks this small do not scale, and
# extra threads contend with other runs. The 414-clip ESC-50 slice (5 s at 16 kHz, n_fft 4096, 32 mels; 2 cores,
# load average 5-8, medians of 2-3 interleaved repeats), seconds by clips per chunk (24 MiB = 5 clips):
#   1 thread:  2 clips 2.40, 5 clips 2.25-2.96, 10 clips 3.97, 20 clips 5.27, 40 clips 5.26, 64 clips 5.27
#   2 threads: 2 clips 12.57, 5 clips 8.68-10.06, 10 clips 8.16, 20 clips 8.42, 40 clips 6.66, 64 clips 6.64
# The features are bit-identical with 1 and 2 threads (each clip's STFT and mel product are computed alone).
CPU_FEATURE_THREADS = 1


class LogMel(nn.Module):
    """(B, samples) waveforms -> (B, C, n_mels, frames) log-mel spectrograms, one channel per window (and hop).

    Values equal torchaudio's ``MelSpectrogram(power=2, norm=mel_norm, mel_scale=mel_scale,
    normalized=stft_normalized)`` followed by ``AmplitudeToDB(top_db=top_db)`` per clip and channel (to float32
    rounding), computed with less work: only the FFT bins inside the mel filterbank's support are kept, the power
    is ``re**2 + im**2`` (no square root), the filterbank multiplies on the left (no transposes) and the dB steps
    run in place.

    With ``max_frames``, only the first ``max_frames`` frames are computed, from the samples they read: the clip
    the model sees is its start, and the dB range (``top_db``) is that of the frames it sees.

    With ``log_scale`` ln, the log is ``ln(power + 1e-6)`` (no floor), as the Palanisamy et al. code. With
    ``resize_to``, each channel (whose hop may be its own) is resized to that shape after the log (:func:`resize`).
    """

    def __init__(self, cfg: Config):
        super().__init__()
        self.n_fft, self.hops, self.top_db, self.max_frames = cfg.n_fft, cfg.hop_lengths, cfg.top_db, cfg.max_frames
        self.log_scale, self.size = cfg.log_scale, tuple(cfg.resize_to) if cfg.resize_to else None
        fb = torchaudio.functional.melscale_fbanks(cfg.n_fft // 2 + 1, cfg.f_min, cfg.mel_f_max, cfg.n_mels,
                                                   cfg.sample_rate, norm=None if cfg.mel_norm == "none" else "slaney",
                                                   mel_scale=cfg.mel_scale)
        used = (fb > 0).any(dim=1).nonzero().flatten()
        self.lo, self.hi = (int(used[0]), int(used[-1]) + 1) if len(used) else (0, fb.shape[0])
        self.register_buffer("fb_t", fb[self.lo:self.hi].T.contiguous(), persistent=False)
        self.win_lengths = list(cfg.win_lengths)
        for i, w in enumerate(self.win_lengths):
            window = torch.hann_window(w)
            if cfg.stft_normalized:  # the STFT is linear in its window: this divides it by the window's L2 norm
                window /= window.pow(2).sum().sqrt()
            self.register_buffer(f"window{i}", window, persistent=False)

    def power(self, wav: torch.Tensor, window: torch.Tensor, hop: int, warp: Callable | None = None) -> torch.Tensor:
        """(B, bins, frames) power spectrum of ``wav`` over the filterbank's bins; ``warp`` (an augmentation)
        first transforms the power over all bins, since a pitch shift moves energy across the band's edges."""
        spec = torch.stft(wav, self.n_fft, hop, win_length=len(window), window=window, center=True,
                          pad_mode="reflect", normalized=False, onesided=True, return_complex=True)
        parts = torch.view_as_real(spec if warp else spec[:, self.lo:self.hi])
        re, im = parts[..., 0], parts[..., 1]
        power = torch.mul(re, re).addcmul_(im, im)
        return warp(power)[:, self.lo:self.hi] if warp else power

    def forward(self, wav: torch.Tensor, warp: Callable | None = None) -> torch.Tensor:
        wav = wav.float()
        if self.max_frames:  # only the samples the first max_frames frames read (a time stretch reads further)
            reach = warp.frames_read(self.max_frames) if warp else self.max_frames
            wav = wav[:, :(reach - 1) * max(self.hops) + self.n_fft // 2 + 1]
        warp = warp.drawn(len(wav), wav.device) if warp else None  # one draw for all channels of a clip
        # One channel at a time: channels of different hops stack only once resized to one shape.
        return torch.stack([self.resize(self.log(torch.matmul(self.fb_t, self.power(
            wav, getattr(self, f"window{i}"), hop, warp)[..., :self.max_frames])))
            for i, hop in enumerate(self.hops)], dim=1)

    def log(self, mel: torch.Tensor) -> torch.Tensor:
        """(B, n_mels, frames) mel power -> its log, in place: dB floored by ``top_db``, or ln(power + 1e-6)."""
        if self.log_scale == "ln":
            return mel.add_(1e-6).log_()
        db = mel.clamp_min_(1e-10).log10_().mul_(10.0)
        if self.top_db is None:
            return db
        # top_db floors each clip at top_db below its own peak, so apply it per clip and channel.
        return db.clamp_(min=db.amax(dim=(-2, -1), keepdim=True) - self.top_db)

    def resize(self, spec: torch.Tensor) -> torch.Tensor:
        """(B, n_mels, frames) -> (B, *resize_to), or unchanged without ``resize_to``: see :func:`resize`."""
        return resize(spec, self.size) if self.size and tuple(spec.shape[-2:]) != self.size else spec


def resize(spec: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, H, W) images resized to ``size`` (H', W') as PIL's bilinear resize does, which the Palanisamy et al.
    code applies through torchvision's ``Resize`` to each channel as a float PIL image: a triangle filter widened
    by the scale factor when shrinking (antialiased: every input frame counts, not only the two nearest) and plain
    bilinear interpolation between pixel centres when enlarging. torch's ``antialias=True`` bilinear mode is
    written to match PIL's, and runs batched on the device."""
    return nn.functional.interpolate(spec.unsqueeze(1), size=size, mode="bilinear", align_corners=False,
                                     antialias=True).squeeze(1)


class KaldiFbank(nn.Module):
    """(B, samples) waveforms -> (B, 1, n_mels, frames) Kaldi-compatible log mel filterbanks (natural log), as AST
    and other AudioSet models were trained on: torchaudio's ``compliance.kaldi.fbank`` with a Hann window, as
    transformers' ``ASTFeatureExtractor`` calls it. Frames are not centred (Kaldi's ``snip_edges``): a clip of
    ``n`` samples gives ``1 + (n - window) // hop`` frames. One clip per call: torchaudio's function takes one."""

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        # fbank takes milliseconds and truncates them back to samples: half a sample more keeps our count exact.
        self.window_ms = (cfg.win_lengths[0] + 0.5) * 1000 / cfg.sample_rate
        self.hop_ms = (cfg.hop_samples + 0.5) * 1000 / cfg.sample_rate

    def forward(self, wav: torch.Tensor, warp: Callable | None = None) -> torch.Tensor:
        assert warp is None, "the kaldi front end has no power spectrogram to warp (validate() refuses it)"
        c = self.cfg
        if c.max_frames:  # Kaldi's frames are computed one by one: the samples of the first max_frames only
            wav = wav[:, :(c.max_frames - 1) * c.hop_samples + c.win_lengths[0]]
        banks = [torchaudio.compliance.kaldi.fbank(w.float().unsqueeze(0), sample_frequency=c.sample_rate,
                                                   frame_length=self.window_ms, frame_shift=self.hop_ms,
                                                   num_mel_bins=c.n_mels, low_freq=c.f_min, high_freq=c.mel_f_max,
                                                   window_type="hanning", dither=0.0) for w in wav]
        return torch.stack(banks).transpose(1, 2).unsqueeze(1)


class FixedFrames(nn.Module):
    """A front end whose spectrograms are cropped or padded to ``frames`` frames (``max_frames``). The front ends
    compute no more than ``max_frames`` frames; a shorter clip's are padded here."""

    def __init__(self, inner: nn.Module, frames: int):
        super().__init__()
        self.inner, self.frames = inner, frames

    def forward(self, wav: torch.Tensor, warp: Callable | None = None) -> torch.Tensor:
        return fit_frames(self.inner(wav, warp), self.frames)


def fit_frames(spec: torch.Tensor, frames: int) -> torch.Tensor:
    """(..., n_mels, T) spectrograms cropped to their first ``frames`` frames, or padded at the end with each
    clip's and channel's lowest value: its silence floor (the top_db floor of a log-mel, the quietest band of a
    Kaldi fbank), so padding reads as the clip's own silence rather than as a value it never has (a 0 would be
    loud for a dB log-mel, and a waveform padded with zeros gives a Kaldi fbank its -16 floor, far below any clip).
    Applied before normalisation, so per-clip normalisation sees the padded spectrogram the model sees."""
    have = spec.shape[-1]
    if have >= frames:
        return spec[..., :frames].contiguous() if have > frames else spec
    floor = spec.amin(dim=(-2, -1), keepdim=True).expand(*spec.shape[:-1], frames - have)
    return torch.cat([spec, floor], dim=-1)


def frontend(cfg: Config) -> nn.Module:
    """The module that turns waveforms into the model's spectrograms: ``cfg.frontend``'s, of ``max_frames``
    frames when it is set."""
    module = KaldiFbank(cfg) if cfg.frontend == "kaldi" else LogMel(cfg)
    return FixedFrames(module, cfg.max_frames) if cfg.max_frames else module


def channel_frames(cfg: Config, n_samples: int) -> list[int]:
    """Frames the front end computes from a clip of ``n_samples`` in each channel (each of its own hop), before
    ``max_frames`` crops or pads them or ``resize_to`` resizes them."""
    if cfg.frontend == "kaldi":
        return [max(0, 1 + (n_samples - cfg.win_lengths[0]) // cfg.hop_samples)]
    # torch.stft(center=True) pads n_fft // 2 samples on each side: one sample short of n_fft when n_fft is odd
    return [(n_samples - cfg.n_fft % 2) // hop + 1 for hop in cfg.hop_lengths]


def stft_frames(cfg: Config, n_samples: int) -> int:
    """Frames of the channel with the most (the smallest hop): :func:`channel_frames`'s largest."""
    return max(channel_frames(cfg, n_samples))


def n_frames(cfg: Config, n_samples: int) -> int:
    """Frames of the model's spectrograms of a clip of ``n_samples``: ``resize_to``'s or ``max_frames`` when set."""
    return cfg.resize_to[1] if cfg.resize_to else cfg.max_frames or stft_frames(cfg, n_samples)


def mel_bands(cfg: Config) -> int:
    """Height of the model's spectrograms: ``resize_to``'s when set, else ``n_mels``."""
    return cfg.resize_to[0] if cfg.resize_to else cfg.n_mels


def input_shape(cfg: Config, frames: int | None = None) -> tuple[int, int, int]:
    """(channels, mel bands, frames) of one clip's spectrograms: the model's input. Frames: ``frames`` (a shape
    check's own), else those of the run's clips (clip length, hop, front end, ``max_frames``, ``resize_to``)."""
    return cfg.n_channels, mel_bands(cfg), frames if frames is not None else n_frames(cfg, clip_samples(cfg))


def check_clip_length(cfg: Config, n_samples: int) -> None:
    """The STFT pads each clip by n_fft/2 on both sides, reflecting it: the clip must be longer than that. The
    kaldi front end does not pad: the clip must hold one window."""
    if cfg.frontend == "kaldi" and cfg.win_lengths[0] > n_samples:
        raise ConfigError(f"win_length and sample_rate: the kaldi front end needs clips of at least one window "
                          f"({cfg.win_lengths[0]} samples); clips have {n_samples} samples at {cfg.sample_rate} Hz")
    if cfg.frontend == "logmel" and cfg.n_fft // 2 >= n_samples:
        raise ConfigError(f"n_fft and sample_rate: n_fft={cfg.n_fft} needs clips longer than n_fft/2 = "
                          f"{cfg.n_fft // 2} samples; clips have {n_samples} samples at {cfg.sample_rate} Hz: "
                          f"use n_fft < {2 * n_samples}")


def cpu_chunk(cfg: Config, n_samples: int) -> int:
    """Clips per log-mel call on the CPU: as many as keep the STFT buffers under :data:`CPU_CHUNK_BYTES` (of
    ``max_frames`` frames when it crops: the front end computes no more, but for a time stretch's few)."""
    frames = min(stft_frames(cfg, n_samples), cfg.max_frames or n_samples)
    return max(1, min(64, CPU_CHUNK_BYTES // (frames * cfg.n_fft * 4)))


def fits_on_device(nbytes: int, device: torch.device, share: float = DEVICE_SHARE) -> bool:
    """True on CPU; on a GPU, whether ``nbytes`` take at most ``share`` of its free memory now."""
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes <= share * free


def stage_waveforms(wavs: torch.Tensor, device: torch.device, reserve: int = 0) -> torch.Tensor:
    """``wavs`` resident on ``device`` when they fit beside ``reserve`` bytes, else in pinned host memory (so
    each chunk's transfer is asynchronous); unchanged on CPU."""
    if device.type != "cuda" or wavs.device == device:
        return wavs
    if fits_on_device(wavs.nbytes + reserve, device):
        return wavs.to(device)
    return wavs if wavs.is_pinned() else wavs.pin_memory()


@torch.no_grad()
def compute_features(wavs: torch.Tensor, cfg: Config, device: torch.device, batch_size: int | None = None,
                     out_dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Log-mels of all ``wavs`` (N, samples) computed batch-wise on ``device``: the original view, one channel
    per window length (:func:`~audiosweep.augment.TrainingBatches.with_views` adds the other views).

    The result lives on ``device``, or in pinned host memory when it does not fit in the GPU's free memory
    (:class:`~audiosweep.loaders.TensorLoader` then sends each batch with ``non_blocking=True``).
    ``batch_size`` defaults to 64 clips on a GPU; on the CPU, to as many as keep the STFT buffers under
    :data:`CPU_CHUNK_BYTES` (2 clips at the report's settings).
    """
    device = torch.device(device)
    logmel = frontend(cfg).to(device)
    n, frames = wavs.shape[0], n_frames(cfg, wavs.shape[1])
    bs = batch_size or (64 if device.type == "cuda" else cpu_chunk(cfg, wavs.shape[1]))
    shape = (n, len(cfg.win_lengths), mel_bands(cfg), frames)  # the original view (augment.py adds the others)
    nbytes = math.prod(shape) * out_dtype.itemsize
    on_device = fits_on_device(nbytes, device)
    out = torch.empty(shape, dtype=out_dtype, device=device if on_device else "cpu",
                      pin_memory=not on_device)
    src = stage_waveforms(wavs, device, reserve=nbytes if on_device else 0)
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(CPU_FEATURE_THREADS)
    try:
        for i in tqdm(range(0, n, bs), desc="log-mel features", unit="batch", disable=None, leave=False):
            out[i:i + bs] = logmel(src[i:i + bs].to(device, non_blocking=True)).to(out_dtype)
    finally:
        torch.set_num_threads(threads)
    return out


def normalize(feats: torch.Tensor, mode: str, train_idx: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """Normalise features in place by ``mode``; return them and the statistics used.

    ``global`` uses per-channel mean/std of the training clips only (``train_idx``), so validation clips
    never leak into the statistics. ``feats`` is the original view (one channel per window length): with
    ``view_channels``, these statistics, of the original view of the training split, normalise every view, so
    an augmented view differs from the original by its augmentation only, not by a rescaling.
    """
    stats = {}
    if mode == "global":
        mean, std = channel_stats(feats, train_idx)
        stats = {"mean": mean.tolist(), "std": std.tolist()}
    elif mode == "audioset":
        stats = {"mean": [AUDIOSET_MEAN], "std": [2 * AUDIOSET_STD]}
    elif mode == "imagenet":
        c = feats.shape[1]
        stats = {"mean": list(IMAGENET_MEAN) if c == 3 else [sum(IMAGENET_MEAN) / 3],
                 "std": list(IMAGENET_STD) if c == 3 else [sum(IMAGENET_STD) / 3]}
    return apply_normalization(feats, mode, stats), stats


def apply_normalization(feats: torch.Tensor, mode: str, stats: dict) -> torch.Tensor:
    """Normalise ``feats`` (B, C, n_mels, frames) in place by ``mode`` with the statistics :func:`normalize`
    returned (augmented training batches are normalised with those of the un-augmented training clips)."""
    if mode == "none":
        return feats
    if mode not in ("sample", "global", "imagenet", "audioset"):
        raise ValueError(f"normalize: unknown mode {mode!r}")
    if mode in ("sample", "imagenet"):  # per clip: standardised, or scaled to 0..1 before ImageNet's statistics
        if mode == "sample":
            shift = feats.float().mean(dim=(-2, -1), keepdim=True)
            scale = feats.float().std(dim=(-2, -1), keepdim=True).clamp_min(1e-5)
        else:
            shift = feats.amin(dim=(-3, -2, -1), keepdim=True)
            scale = (feats.amax(dim=(-3, -2, -1), keepdim=True) - shift).clamp_min(1e-5)
        feats.sub_(shift.to(feats.dtype)).div_(scale.to(feats.dtype))
    if stats:
        mean = torch.tensor(stats["mean"], device=feats.device).view(1, -1, 1, 1)
        std = torch.tensor(stats["std"], device=feats.device).view(1, -1, 1, 1)
        feats.sub_(mean.to(feats.dtype)).div_(std.to(feats.dtype))
    return feats


def channel_stats(feats: torch.Tensor, idx: torch.Tensor | None, chunk: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std over the clips ``idx`` (all if None), accumulated in float64 chunks."""
    idx = torch.arange(feats.shape[0], device=feats.device) if idx is None else idx.to(feats.device)
    s = torch.zeros(feats.shape[1], dtype=torch.float64, device=feats.device)
    s2 = torch.zeros_like(s)
    for i in range(0, len(idx), chunk):
        x = feats[idx[i:i + chunk]].double()
        s += x.sum(dim=(0, 2, 3))
        s2 += (x * x).sum(dim=(0, 2, 3))
    count = len(idx) * feats.shape[2] * feats.shape[3]
    mean = s / count
    std = (s2 / count - mean * mean).clamp_min(1e-10).sqrt()
    return mean.float(), std.float()
