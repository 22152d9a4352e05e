"""The augmented comparison: our augmented training batches, built as train.py builds them (``TrainingBatches``,
``stage_waveforms``, ``make_dls`` with the waveforms as ``train_source``), against a per-item augmented pipeline
like fastaudio's item transforms in ``DataLoader`` workers. See bench/README.md."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from audiosweep.augment import TrainingBatches
from audiosweep.config import ALIASES, Config, overlay
from audiosweep.data import ESC50_CLIPS, ClipSpec
from audiosweep.features import stage_waveforms
from audiosweep.loaders import make_dls
from bench.fair import FairTimes, fair_augmented
from bench.measure import PipelineTimes, log, peak_memory, timed
from bench.per_item import PerItemPipeline, time_epochs

# The report's augmentation sweep at its full setting: pitch_p 1, shift_p 0.5, noise_p 1.
REPORT_AUGMENTATION = {"pitch_shift": True, "signal_shift": True, "add_noise": True}


def augmentation_config(cfg: Config, explicit: dict) -> Config:
    """What the augmented path runs: ``cfg`` plus the report's full augmentation setting, unless the user gave any
    of its keys (``--pitch_shift``, ``--pitch_p``, ...): then ``cfg`` as it is."""
    keys = {*REPORT_AUGMENTATION, *(t for k in REPORT_AUGMENTATION for t in ALIASES[k].targets)}
    return cfg if keys & explicit.keys() else overlay(cfg, REPORT_AUGMENTATION)


@dataclasses.dataclass
class AugResult:
    """Seconds of the augmented comparison at the config's rate; ``cfg`` is the augmented config."""

    cfg: Config
    timed_clips: int  # training clips our augmented epochs were timed on
    train: list[float]  # ours: augmented training batches per measured epoch, scaled to every training clip
    valid: list[float]  # ours: validation batches per measured epoch (features computed once)
    setup: float  # ours: TrainingBatches, staging the waveforms, the loaders
    baseline: PipelineTimes  # the per-item augmented baseline in workers, scaled to every clip
    n_baseline: int  # clips it ran on
    workers: int
    fair: FairTimes  # the fair augmented baseline: our operations per item in persistent workers

    def ours(self, one_time: float) -> PipelineTimes:
        return PipelineTimes.of([t + v for t, v in zip(self.train, self.valid)], one_time=one_time + self.setup)


def measure_augmented(cfg: Config, wavs: torch.Tensor, feats: torch.Tensor, stats: dict, targets: torch.Tensor,
                      train_idx: torch.Tensor, valid_idx: torch.Tensor, n_timed: int, base_paths: list[Path],
                      base_targets: torch.Tensor, k_train: int, n_epochs: int, device: torch.device,
                      peaks: dict, workers: int, spec: ClipSpec = ESC50_CLIPS) -> AugResult:
    """Ours: augmented training batches from the resident ``wavs`` over ``n_timed`` of the training clips
    (scaled to all of them) and validation batches from ``feats``; the per-item augmented baseline on
    ``base_paths`` (the first ``k_train`` training clips, made as ``spec`` says) in ``workers`` processes, scaled
    to all clips."""
    rate, channels_last = cfg.sample_rate, device.type == "cuda"
    pick = np.linspace(0, len(train_idx) - 1, min(n_timed, len(train_idx))).round().astype(int)
    timed_idx = train_idx[torch.from_numpy(pick)]

    def build():  # as train.py builds a run's loaders
        batches = TrainingBatches(cfg, device, stats)
        source = stage_waveforms(wavs, device) if batches.from_waveforms else None
        return make_dls(feats, targets, timed_idx, valid_idx, cfg, channels_last=channels_last, device=device,
                        train_source=source, train_transform=batches)

    def drain(loader):
        for _ in loader:
            pass

    log(f"{rate} Hz: fair augmented baseline: waveforms of {len(base_paths)} clips once, our operations per item "
        f"in {workers} persistent workers")
    plain = PerItemPipeline(cfg, base_paths, base_targets, stats, device, n_train=k_train, spec=spec)
    with peak_memory(peaks, f"fair augmented baseline {rate} Hz, {len(base_paths)} clips, {workers} workers", device):
        fair = fair_augmented(plain, TrainingBatches(cfg, torch.device("cpu"), stats), len(train_idx),
                              len(valid_idx), workers, device)
    log(f"{rate} Hz: our augmented batches on {len(timed_idx)} training + {len(valid_idx)} validation clips, "
        "epochs interleaved with the fair baseline's")
    with peak_memory(peaks, f"ours {rate} Hz, augmented batches from resident waveforms", device):
        dls, setup = timed(build, device)
        epochs = []
        for _ in range(n_epochs):
            epochs.append((timed(lambda: drain(dls.train), device)[1], timed(lambda: drain(dls.valid), device)[1]))
            fair.epoch()
    fair_times = fair.close()
    log(f"{rate} Hz: per-item augmented baseline (time-domain PitchShift), {len(base_paths)} clips, "
        f"{workers} workers")
    pipe = PerItemPipeline(cfg, base_paths, base_targets, stats, device, n_train=k_train, augment=True,
                           spec=spec)
    base = time_epochs(pipe, n_epochs, workers, len(feats) / len(base_paths), peaks, device,
                       f"augmented baseline {rate} Hz, {len(base_paths)} clips, {workers} workers")
    scale = len(train_idx) / len(timed_idx)  # every training batch costs the same: scaled linearly
    return AugResult(cfg, len(timed_idx), [t * scale for t, _ in epochs], [v for _, v in epochs], setup, base,
                     len(base_paths), workers, fair_times)
