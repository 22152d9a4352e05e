"""The report's kind of data pipeline, the baseline our path is measured against."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio
from tqdm.auto import tqdm

from audiosweep.config import Config
from audiosweep.data import ESC50_RATE


class PerItemPipeline:
    """The report's kind of data pipeline: every clip read, resampled, turned into a mel spectrogram and
    normalised on its own, every epoch; items collated into batches and sent to the device."""

    def __init__(self, cfg: Config, paths: list[Path], targets: torch.Tensor, stats: dict, device: torch.device):
        self.paths, self.targets, self.device, self.bs = paths, targets, device, cfg.batch_size
        self.resample = (torchaudio.transforms.Resample(ESC50_RATE, cfg.sample_rate)
                         if cfg.sample_rate != ESC50_RATE else None)
        self.mels = [torchaudio.transforms.MelSpectrogram(
            sample_rate=cfg.sample_rate, n_fft=cfg.n_fft, win_length=w, hop_length=cfg.hop_samples, f_min=cfg.f_min,
            f_max=cfg.f_max, n_mels=cfg.n_mels, power=2.0, norm="slaney", mel_scale="slaney") for w in cfg.win_lengths]
        self.to_db = torchaudio.transforms.AmplitudeToDB("power", top_db=80.0)
        self.mean, self.std = (torch.tensor(stats.get(k, [v] * cfg.n_channels)).view(-1, 1, 1)
                               for k, v in (("mean", 0.0), ("std", 1.0)))

    def item(self, i: int) -> torch.Tensor:
        x = torch.from_numpy(sf.read(str(self.paths[i]), dtype="float32", always_2d=False)[0])
        if self.resample is not None:
            x = self.resample(x)
        return (torch.stack([self.to_db(mel(x)) for mel in self.mels]) - self.mean) / self.std

    def epoch(self, n_train: int, rng: np.random.Generator, desc: str) -> None:
        """The first ``n_train`` clips shuffled in batches of ``batch_size``, then the rest in batches of twice that."""
        n_valid = len(self.paths) - n_train
        batches = np.array_split(rng.permutation(n_train), -(-n_train // self.bs))
        batches += np.array_split(n_train + np.arange(n_valid), -(-n_valid // (2 * self.bs))) if n_valid else []
        for rows in tqdm(batches, desc=desc, unit="batch", disable=None, leave=False):
            torch.stack([self.item(int(i)) for i in rows]).to(self.device, non_blocking=True)
            self.targets[rows].to(self.device)
