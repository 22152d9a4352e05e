"""The fair baselines: what a competent user writes with plain PyTorch, our pipeline's headline comparison.

Nothing before the features is random, so such a user computes every clip's spectrogram once, in a ``DataLoader``
with as many workers as cores (decoding and resampling are single-threaded per clip: worker processes use every
core, torch's intra-op threads only parallelise the transforms inside one clip), and serves the cached
spectrograms every epoch through a ``DataLoader`` with persistent workers (batch ``batch_size``, shuffled training
batches, validation batches twice that). With augmentation the cache holds the training waveforms and the
validation spectrograms, and each training item gets our own operations (``TrainingBatches`` on a batch of one:
the same torch-audiomentations, spectral warps and SpecAugment masks) in the persistent workers.

Fixed costs (the computation once, worker start-up) are counted once; see bench/README.md.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from audiosweep.augment import TrainingBatches
from bench.measure import PipelineTimes, timed
from bench.per_item import PerItemPipeline, one_thread

CPU = torch.device("cpu")


class Once(Dataset):
    """What the computation once makes of clip ``i``: its normalised spectrogram, or with ``waveforms`` its
    waveform for the training clips (augmented anew every epoch) and its spectrogram for the others."""

    def __init__(self, pipe: PerItemPipeline, waveforms: bool = False):
        self.pipe, self.waveforms = pipe, waveforms

    def __len__(self) -> int:
        return len(self.pipe)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.pipe.waveform(i) if self.waveforms and i < self.pipe.n_train else self.pipe.item(i)


class Cached(Dataset):
    """Items served from tensors computed once; ``augment`` (``TrainingBatches``) turns a cached waveform into its
    augmented, normalised spectrogram, one item at a time."""

    def __init__(self, x: torch.Tensor, targets: torch.Tensor, augment: TrainingBatches | None = None):
        self.x, self.targets, self.augment = x, targets, augment

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.x[i]
        return (x if self.augment is None else self.augment(x[None])[0]), self.targets[i]


def compute_once(pipe: PerItemPipeline, workers: int, waveforms: bool = False) -> tuple[list[torch.Tensor], float,
                                                                                          float]:
    """Every item of ``pipe`` computed once in a ``DataLoader`` with ``workers`` processes (one torch thread each):
    (the items, seconds to start the workers, seconds to compute)."""
    loader = DataLoader(Once(pipe, waveforms), batch_size=None, num_workers=workers,
                        worker_init_fn=one_thread if workers else None)
    it, start = timed(lambda: iter(loader), CPU)
    items, compute = timed(lambda: list(it), CPU)
    return items, start, compute


def persistent(data: Dataset, bs: int, workers: int, shuffle: bool) -> DataLoader:
    """A loader with persistent workers (one torch thread each), as a competent user serves cached items."""
    return DataLoader(data, batch_size=bs, shuffle=shuffle, num_workers=workers, persistent_workers=workers > 0,
                      worker_init_fn=one_thread if workers else None)


@dataclasses.dataclass
class FairTimes:
    """What a fair baseline measured: the computation once (its workers' start-up included, scaled to every clip),
    the serving workers' start-up (once, within the first epoch), the epochs, the workers."""

    compute: float
    start: float
    epochs: list[float]
    workers: int

    @property
    def times(self) -> PipelineTimes:
        return PipelineTimes.of(self.epochs, one_time=self.compute)


class FairBaseline:
    """A fair baseline's loaders and seconds: ``compute`` (the computation once, its workers' start-up included,
    scaled to every clip), ``start`` (the serving workers' start-up, measured once, within the first epoch) and
    the ``epochs``. Each loader comes with the factor that scales its time to every clip."""

    def __init__(self, loaders: list[tuple[DataLoader, float]], compute: float, device: torch.device, workers: int):
        self.loaders, self.compute, self.device, self.workers = loaders, compute, device, workers
        self.start, self.epochs = 0.0, []

    def epoch(self) -> float:
        """One epoch through the loaders, batches sent to the device; its seconds are recorded."""
        total = 0.0
        for loader, scale in self.loaders:
            it, begin = timed(lambda loader=loader: iter(loader), CPU)  # persistent: only the first starts workers
            self.start += 0.0 if self.epochs else begin

            def drain(it=it):
                for xb, yb in it:
                    xb.to(self.device, non_blocking=True)
                    yb.to(self.device)

            total += begin + timed(drain, self.device)[1] * scale
        self.epochs.append(total)
        return total

    def close(self) -> FairTimes:
        """Stop the persistent workers now, not whenever the loaders are collected; what was measured."""
        for loader, _ in self.loaders:
            if loader._iterator is not None:
                loader._iterator._shutdown_workers()
                loader._iterator = None
        return FairTimes(self.compute, self.start, self.epochs, self.workers)


def fair_plain(pipe: PerItemPipeline, n_train: int, n_valid: int, workers: int, device: torch.device,
               dtype: torch.dtype = torch.float32) -> FairBaseline:
    """Spectrograms of ``pipe``'s clips computed once in ``workers`` processes (scaled from ``len(pipe)`` clips to
    all), served over ``n_train`` + ``n_valid`` items (the computed ones in turn: serving is measured at full size,
    in ``dtype``, our features' storage dtype) by persistent loaders."""
    items, start, compute = compute_once(pipe, workers)
    k_train, k = pipe.n_train, len(items)
    rows = torch.from_numpy(np.concatenate([np.arange(n_train) % max(1, k_train),
                                            k_train + np.arange(n_valid) % max(1, k - k_train)]))
    data = Cached(torch.stack(items).to(dtype)[rows], pipe.targets[rows])
    train, valid = (torch.utils.data.Subset(data, r) for r in (range(n_train), range(n_train, len(data))))
    loaders = [(persistent(train, pipe.bs, workers, True), 1.0), (persistent(valid, 2 * pipe.bs, workers, False), 1.0)]
    return FairBaseline(loaders, start + compute * (n_train + n_valid) / k, device, workers)


def fair_augmented(pipe: PerItemPipeline, batches: TrainingBatches, n_train: int, n_valid: int, workers: int,
                   device: torch.device) -> FairBaseline:
    """Training waveforms and validation spectrograms of ``pipe``'s clips computed once; each epoch's training
    items get ``batches``' operations one at a time in persistent workers. The computation and each epoch's
    training and validation parts are scaled to ``n_train`` and ``n_valid`` clips; worker start-up is not scaled."""
    items, start, compute = compute_once(pipe, workers, waveforms=True)
    k_train, k_valid = pipe.n_train, len(items) - pipe.n_train
    train = Cached(torch.stack(items[:k_train]), pipe.targets[:k_train], batches)
    valid = Cached(torch.stack(items[k_train:]), pipe.targets[k_train:])
    loaders = [(persistent(train, pipe.bs, workers, True), n_train / k_train),
               (persistent(valid, 2 * pipe.bs, workers, False), n_valid / max(1, k_valid))]
    return FairBaseline(loaders, start + compute * (n_train + n_valid) / len(items), device, workers)
