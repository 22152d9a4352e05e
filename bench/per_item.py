"""Per-item data pipelines like the report's (fastaudio), the baselines our path is measured against: plain or
with augmentation per item (fastaudio's item transforms), in one process or in ``DataLoader`` workers."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm  # not tqdm.auto: its asyncio class calls iter() at once, which starts the workers twice

from audiosweep.augment import SpecAugment, spec_active, waveform_transform
from audiosweep.config import Config
from audiosweep.data import ESC50_CLIPS, ClipSpec, conform, n_samples
from bench.measure import PipelineTimes, peak_memory, timed


def one_thread(_worker_id: int) -> None:
    """``worker_init_fn``: one intra-op thread per worker, as many workers as cores. A forked worker would
    otherwise start torch's full thread pool each (oversubscribing the cores, and OpenMP pools do not survive a
    fork safely)."""
    torch.set_num_threads(1)


def time_stretch(x: torch.Tensor, rate: float, n_fft: int = 2048) -> torch.Tensor:
    """``x`` played ``rate`` times as fast at the same pitch (torchaudio's phase vocoder, as its ``TimeStretch``),
    cut or padded with silence back to its length."""
    hop, window = n_fft // 4, torch.hann_window(n_fft)
    spec = torch.stft(x, n_fft, hop, window=window, return_complex=True)
    advance = torch.linspace(0, math.pi * hop, spec.shape[-2])[..., None]
    y = torch.istft(torchaudio.functional.phase_vocoder(spec, rate, advance), n_fft, hop, window=window)
    return torch.nn.functional.pad(y, (0, max(0, len(x) - len(y))))[: len(x)]


class PerItemPipeline(Dataset):
    """The report's kind of data pipeline: every clip read, made mono and ``spec.seconds`` long (``conform``, as
    ours), resampled from its own rate, turned into a mel spectrogram and normalised on its own, every epoch; items
    collated into batches by a ``DataLoader`` and sent to the device.

    With ``augment``, the training clips (the first ``n_train``) are augmented on their own first, as fastaudio's
    item transforms did: gain, shift, noise and polarity by torch-audiomentations on a batch of one clip (the
    library's ``waveform_transform``), pitch shift by torch-audiomentations' ``PitchShift`` on that clip, time
    stretch by torchaudio's phase vocoder, then SpecAugment masks on the item's normalised spectrogram.
    """

    def __init__(self, cfg: Config, paths: list[Path], targets: torch.Tensor, stats: dict, device: torch.device,
                 n_train: int | None = None, augment: bool = False, spec: ClipSpec = ESC50_CLIPS):
        self.cfg, self.paths, self.targets, self.device, self.bs = cfg, paths, targets, device, cfg.batch_size
        self.n_train, self.augmenting, self.spec = len(paths) if n_train is None else n_train, augment, spec
        self.resamplers: dict[int, torchaudio.transforms.Resample] = {}  # per source rate: the kernel built once
        self.mels = [torchaudio.transforms.MelSpectrogram(
            sample_rate=cfg.sample_rate, n_fft=cfg.n_fft, win_length=w, hop_length=cfg.hop_samples, f_min=cfg.f_min,
            f_max=cfg.mel_f_max, n_mels=cfg.n_mels, power=2.0, norm="slaney", mel_scale="slaney")
            for w in cfg.win_lengths]
        self.to_db = torchaudio.transforms.AmplitudeToDB("power", top_db=80.0)
        self.mean, self.std = (torch.tensor(stats.get(k, [v] * cfg.n_channels)).view(-1, 1, 1)
                               for k, v in (("mean", 0.0), ("std", 1.0)))
        self.wave = [t for t in (waveform_transform(cfg) if augment else None, self.pitch_shift(cfg, augment))
                     if t is not None]
        self.stretch_p = cfg.stretch_p if augment else 0.0
        self.masks = SpecAugment(cfg) if augment and spec_active(cfg) else None

    @staticmethod
    def pitch_shift(cfg: Config, augment: bool):
        # Not torchaudio.functional.pitch_shift: it takes whole semitones only, and its resampling kernel grows
        # with the ratio's denominator: 0.01-9 s a 5 s clip at 44.1 kHz, 3.5 GiB at -3 semitones, measured.
        if not augment or cfg.pitch_p <= 0 or cfg.pitch_semitones <= 0:
            return None
        from torch_audiomentations import PitchShift

        return PitchShift(min_transpose_semitones=-cfg.pitch_semitones, max_transpose_semitones=cfg.pitch_semitones,
                          p=cfg.pitch_p, sample_rate=cfg.sample_rate, output_type="dict")

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.item(i), self.targets[i]

    def item(self, i: int) -> torch.Tensor:
        x = self.waveform(i)
        train = i < self.n_train  # validation clips are never augmented
        if train:
            x = self.augment(x)
        spec = (torch.stack([self.to_db(mel(x)) for mel in self.mels]) - self.mean) / self.std
        return self.masks(spec[None])[0] if train and self.masks is not None else spec

    def waveform(self, i: int) -> torch.Tensor:
        """Clip ``i`` at the config's rate: read, conformed at its own rate, resampled, cut to the run's length."""
        wav, rate = sf.read(str(self.paths[i]), dtype="float32", always_2d=True)
        x, sr = torch.from_numpy(conform(wav, rate, self.spec, self.paths[i])), self.cfg.sample_rate
        if rate != sr:
            x = self.resamplers.setdefault(rate, torchaudio.transforms.Resample(rate, sr))(x)
        n = n_samples(self.spec.seconds, sr)
        return torch.nn.functional.pad(x[:n], (0, max(0, n - len(x))))  # rounding of the count only, as ours

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        for t in self.wave:
            x = t(x.view(1, 1, -1), sample_rate=self.cfg.sample_rate).samples.view(-1)
        if self.stretch_p and torch.rand(()) < self.stretch_p:
            x = time_stretch(x, 1.0 + (2 * torch.rand(()).item() - 1) * self.cfg.stretch_max)
        return x

    def epoch(self, rng: np.random.Generator, desc: str, workers: int = 0) -> None:
        """The training clips shuffled in batches of ``batch_size``, then the rest in batches of twice that, through
        a ``DataLoader`` with ``workers`` processes (0: in this one)."""
        n_train, n_valid = self.n_train, len(self.paths) - self.n_train
        batches = np.array_split(rng.permutation(n_train), -(-n_train // self.bs)) if n_train else []
        batches += np.array_split(n_train + np.arange(n_valid), -(-n_valid // (2 * self.bs))) if n_valid else []
        loader = DataLoader(self, batch_sampler=[b.tolist() for b in batches], num_workers=workers,
                            worker_init_fn=one_thread if workers else None)
        for xb, yb in tqdm(loader, desc=desc, unit="batch", disable=None, leave=False):
            xb.to(self.device, non_blocking=True)
            yb.to(self.device)


def time_epochs(pipe: PerItemPipeline, n_epochs: int, workers: int, scale: float, peaks: dict, device: torch.device,
                stage: str) -> PipelineTimes:
    """``n_epochs`` epochs of ``pipe`` with ``workers`` (the peak memory in ``peaks[stage]``), times ``scale``:
    every clip costs the same, so a subset's times scale linearly to all clips."""
    rng = np.random.default_rng(pipe.cfg.trial_num)
    with peak_memory(peaks, stage, device):
        times = [timed(lambda e=e: pipe.epoch(rng, f"{stage}: epoch {e + 1}", workers), device)[1]
                 for e in range(n_epochs)]
    return PipelineTimes.of(times, scale)
