"""Waveforms -> (stacked) log-mel spectrograms, batch-wise on the training device, then normalisation.

This replaces fastaudio's ``AudioToSpec``: torchaudio transforms run on whole batches on the device where
the model trains, and since nothing before them is random they run once per run, not once per epoch.
"""

from __future__ import annotations

import torch
import torchaudio
from torch import nn

from .config import Config

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class LogMel(nn.Module):
    """(B, samples) waveforms -> (B, C, n_mels, frames) log-mel spectrograms in dB, one channel per window."""

    def __init__(self, cfg: Config, top_db: float = 80.0):
        super().__init__()
        self.mels = nn.ModuleList(
            torchaudio.transforms.MelSpectrogram(
                sample_rate=cfg.sample_rate, n_fft=cfg.n_fft, win_length=w, hop_length=cfg.hop_samples,
                f_min=cfg.f_min, f_max=cfg.f_max, n_mels=cfg.n_mels, power=2.0, norm="slaney", mel_scale="slaney")
            for w in cfg.win_lengths)
        self.top_db = top_db

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        # top_db clips each clip to 80 dB below its own peak, so apply it per clip and channel.
        spec = torch.stack([m(wav.float()) for m in self.mels], dim=1)
        db = 10.0 * torch.log10(spec.clamp_min(1e-10))
        return torch.maximum(db, db.amax(dim=(-2, -1), keepdim=True) - self.top_db)


def n_frames(cfg: Config, n_samples: int) -> int:
    return n_samples // cfg.hop_samples + 1


@torch.no_grad()
def compute_features(wavs: torch.Tensor, cfg: Config, device: torch.device, batch_size: int = 64,
                     out_dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Log-mels of all ``wavs`` (N, samples) computed batch-wise on ``device``; result stays on ``device``."""
    logmel = LogMel(cfg).to(device)
    n = wavs.shape[0]
    out = torch.empty((n, cfg.n_channels, cfg.n_mels, n_frames(cfg, wavs.shape[1])), dtype=out_dtype,
                      device=device)
    for i in range(0, n, batch_size):
        out[i:i + batch_size] = logmel(wavs[i:i + batch_size].to(device, non_blocking=True)).to(out_dtype)
    return out


def normalize(feats: torch.Tensor, mode: str, train_idx: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """Normalise features in place by ``mode``; return them and the statistics used.

    ``global`` uses per-channel mean/std of the training clips only (``train_idx``), so validation clips
    never leak into the statistics.
    """
    if mode == "none":
        return feats, {}
    if mode == "sample":
        mean = feats.float().mean(dim=(-2, -1), keepdim=True)
        std = feats.float().std(dim=(-2, -1), keepdim=True).clamp_min(1e-5)
        feats.sub_(mean.to(feats.dtype)).div_(std.to(feats.dtype))
        return feats, {}
    if mode == "global":
        mean, std = channel_stats(feats, train_idx)
        feats.sub_(mean.view(1, -1, 1, 1).to(feats.dtype)).div_(std.view(1, -1, 1, 1).to(feats.dtype))
        return feats, {"mean": mean.tolist(), "std": std.tolist()}
    if mode == "imagenet":
        lo = feats.amin(dim=(-3, -2, -1), keepdim=True)
        hi = feats.amax(dim=(-3, -2, -1), keepdim=True)
        feats.sub_(lo).div_((hi - lo).clamp_min(1e-5))
        c = feats.shape[1]
        mean = torch.tensor(IMAGENET_MEAN if c == 3 else [sum(IMAGENET_MEAN) / 3], device=feats.device)
        std = torch.tensor(IMAGENET_STD if c == 3 else [sum(IMAGENET_STD) / 3], device=feats.device)
        feats.sub_(mean.view(1, -1, 1, 1).to(feats.dtype)).div_(std.view(1, -1, 1, 1).to(feats.dtype))
        return feats, {"mean": mean.tolist(), "std": std.tolist()}
    raise ValueError(f"normalize: unknown mode {mode!r}")


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
