"""Device-resident batches: loaders that gather each batch from whole-dataset tensors with one index, and the
run's training and validation loaders over them."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from fastai.data.core import DataLoaders
from fastai.data.load import DataLoader

from .config import Config


class TensorLoader(DataLoader):
    """Batches gathered from whole-dataset tensors: one index gather per batch, no per-item Python.

    ``x`` holds every clip; the loader serves the rows ``idx`` (all rows if None) to ``device`` (default:
    ``x.device``). ``x`` normally lives on that device; when it lives in (pinned) host memory and ``device`` is a
    GPU, each batch is gathered into pinned memory and sent with ``non_blocking=True``. ``y`` is indexed like
    ``x``.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, bs: int, shuffle: bool = False, drop_last: bool = False,
                 seed: int = 0, channels_last: bool = False, idx: torch.Tensor | None = None,
                 device: torch.device | str | None = None, transform: Callable | None = None, **kwargs):
        device = x.device if device is None else torch.device(device)
        idx = torch.arange(len(x)) if idx is None else idx
        super().__init__(dataset=None, bs=bs, shuffle=shuffle, drop_last=drop_last, n=len(idx), device=device,
                         indexed=True, **kwargs)
        self.x, self.y, self.idx = x, y.to(device), idx.to(x.device)
        self.seed, self.channels_last, self.transform = seed, channels_last, transform
        self.gen = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return self.n // self.bs if self.drop_last else math.ceil(self.n / self.bs)

    def __iter__(self):
        self.before_iter()
        order = torch.randperm(self.n, generator=self.gen) if self.shuffle else torch.arange(self.n)
        rows = self.idx[order.to(self.idx.device)]
        device = torch.device(self.device)
        y, rows_y = self.y.to(device), rows.to(device)
        for i in range(len(self)):
            sl = slice(i * self.bs, (i + 1) * self.bs)
            yield self.after_batch((self.gather(rows[sl], device), y[rows_y[sl]]))
        self.after_iter()

    def gather(self, rows: torch.Tensor, device: torch.device) -> torch.Tensor:
        """The float32 batch ``x[rows]`` on ``device`` (channels-last if asked)."""
        if self.x.device == device:
            xb = self.x[rows]
        elif self.x.device.type == "cpu" and device.type == "cuda":
            xb = torch.empty((len(rows), *self.x.shape[1:]), dtype=self.x.dtype, pin_memory=True)
            xb = torch.index_select(self.x, 0, rows, out=xb).to(device, non_blocking=True)
        else:
            xb = self.x[rows].to(device)
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        xb = xb.float() if self.transform is None else self.transform(xb)
        return xb.contiguous(memory_format=fmt)

    def new(self, shuffle: bool | None = None, drop_last: bool | None = None, **kwargs) -> TensorLoader:
        return TensorLoader(self.x, self.y, self.bs, self.shuffle if shuffle is None else shuffle,
                            self.drop_last if drop_last is None else drop_last, self.seed, self.channels_last,
                            idx=self.idx, device=self.device, transform=self.transform)


def make_dls(feats: torch.Tensor, targets: torch.Tensor, train_idx: torch.Tensor, valid_idx: torch.Tensor,
             cfg: Config, channels_last: bool = False, device: torch.device | str | None = None,
             train_source: torch.Tensor | None = None, train_transform: Callable | None = None) -> DataLoaders:
    """Training (shuffled) and validation loaders over ``feats`` without copying it; batches go to ``device``
    (default: ``feats.device``; pass the GPU when ``feats`` were left in pinned host memory).

    Augmented training batches gather their rows from ``train_source`` (the waveforms, or ``feats``) and pass
    them through ``train_transform`` (:class:`~audiosweep.augment.TrainingBatches`); validation batches never.
    With ``keep_clean_copy`` an epoch serves each training clip twice, as copy numbers (row, and N + row for the
    augmented copy) that ``train_transform`` turns into clips."""
    dev = feats.device if device is None else torch.device(device)
    train_y = targets
    if cfg.keep_clean_copy:
        train_idx, train_y = torch.cat([train_idx, train_idx + len(targets)]), targets.repeat(2)
    # Drop a last batch of one clip: BatchNorm cannot train on it.
    drop_last = len(train_idx) % cfg.batch_size == 1
    train = TensorLoader(feats if train_source is None else train_source, train_y, cfg.batch_size, shuffle=True,
                         drop_last=drop_last, seed=cfg.trial_num, channels_last=channels_last, idx=train_idx,
                         device=dev, transform=train_transform)
    valid = TensorLoader(feats, targets, cfg.batch_size * 2, channels_last=channels_last, idx=valid_idx,
                         device=dev)
    return DataLoaders(train, valid, device=dev)
