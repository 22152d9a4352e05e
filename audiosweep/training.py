"""fastai pieces of a run: device-resident batches, the Learner, precision, per-epoch history."""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import fastai.callback.fp16  # noqa: F401  (patches Learner.to_fp16 / to_bf16)
import fastai.callback.progress  # noqa: F401  (progress bar and per-epoch table)
import fastai.callback.schedule  # noqa: F401  (patches Learner.fit_one_cycle / fine_tune)
import torch
from fastai.callback.core import Callback, CancelFitException
from fastai.callback.mixup import MixUp
from fastai.callback.training import BnFreeze, GradientAccumulation
from fastai.data.core import DataLoaders
from fastai.data.load import DataLoader
from fastai.learner import Learner
from fastai.metrics import accuracy
from fastai.torch_core import trainable_params
from torch import nn

from .config import Config, ConfigError
from .epoch_log import plain_epoch_lines
from .errors import Diverged, UserError
from .features import input_shape
from .models import build_model
from .recipes import BestCheckpoint, UnfreezeBlocks, fine_tune, fit_schedule, loss_func, opt_func
from .results import LAUNCH_ENV, HistoryRow


def resolve_device(cfg: Config) -> torch.device:
    if cfg.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device={cfg.device}, but no CUDA GPU is visible; use --device cpu or auto")
    return torch.device(cfg.device)


def resolve_precision(cfg: Config, device: torch.device) -> str:
    """fp32 on CPU; ``auto`` on GPU = bf16 where supported, else fp16."""
    if device.type != "cuda":
        return "fp32"
    if cfg.precision == "auto":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return cfg.precision


def feature_dtype(cfg: Config, device: torch.device) -> torch.dtype:
    """How resident features are stored: float16 on a GPU (half the memory; batches are cast to float32 when
    gathered) unless the run asks for fp32, float32 on the CPU."""
    return torch.float16 if device.type == "cuda" and cfg.precision != "fp32" else torch.float32


def compile_model(model: nn.Module) -> nn.Module:
    """``torch.compile`` the model's forward in place and return the model.

    Not ``model.compile()``: for modules whose forward lives in torch.nn (our nn.Sequential models) it captures
    no graph and silently runs eagerly (pytorch/pytorch#150915). Compiling the bound forward keeps the module
    itself, so fastai's parameter-group splitters still index it.
    """
    model.forward = torch.compile(model.forward)
    return model


def check_model_input(cfg: Config, n_frames: int, n_classes: int) -> None:
    """Refuse, before any work, a spectrogram the architecture cannot take (too few mel bands or frames for its
    pooling), naming the keys that shape it and the smallest size the architecture accepts.

    The model is built and run on PyTorch's meta device: shapes only, no memory, no arithmetic."""
    shape = input_shape(cfg, n_frames)
    error = _forward_error(cfg, shape, n_classes)
    if error is None:
        return
    min_h = _smallest(lambda h: _forward_error(cfg, (shape[0], h, max(n_frames, 4096)), n_classes) is None)
    min_w = _smallest(lambda w: _forward_error(cfg, (shape[0], max(cfg.n_mels, 4096), w), n_classes) is None)
    raise ConfigError(
        f"arch, n_mels and hop_length: {cfg.arch} cannot take a {' x '.join(map(str, shape))} spectrogram "
        f"({cfg.n_mels} mel bands x {n_frames} frames of hop {cfg.hop_samples} samples at {cfg.sample_rate} Hz): "
        f"{error}. It needs at least {min_h} mel bands (n_mels) and {min_w} frames (a smaller hop_length)")


def _forward_error(cfg: Config, shape: tuple[int, ...], n_classes: int) -> str | None:
    with torch.device("meta"):
        model = build_model(cfg, n_classes, shape, pretrained=False).model.eval()
        try:
            model(torch.zeros(1, *shape))
        except RuntimeError as e:
            return str(e).splitlines()[0]
    return None


def _smallest(ok, limit: int = 4096) -> int | str:
    """The smallest size in 1..limit for which ``ok(size)`` holds (assumed monotonic)."""
    if not ok(limit):
        return f"more than {limit}"
    lo, hi = 1, limit
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid + 1, hi)
    return lo


class StopOnDivergence(Callback):
    """Stop training as soon as a training or validation loss is not finite (what follows is noise) and keep
    why in ``problem``: :func:`fit` then raises :class:`~audiosweep.errors.Diverged`, so the run is recorded
    as failed, never as finished. Like fastai's ``TerminateOnNaNCallback``, plus validation and the reason."""

    order = 61  # after History (60): the epoch that diverged keeps its row

    def __init__(self):
        self.epochs, self.problem = 0, None  # training epochs begun, across fine_tune's phases

    def before_fit(self):
        if self.problem:  # fine_tune's second phase after a first that diverged
            raise CancelFitException

    def before_train(self):
        self.epochs += 1

    def after_batch(self):
        if self.training and not torch.isfinite(self.loss).all():
            self.stop(f"training loss became {self.loss.item()} at epoch {self.epochs}, batch {self.iter + 1}")

    def after_epoch(self):
        valid = dict(zip(self.recorder.metric_names, self.recorder.log)).get("valid_loss")
        if isinstance(valid, float) and not math.isfinite(valid):
            self.stop(f"validation loss became {valid} at epoch {self.epochs}")

    def stop(self, problem: str):
        self.problem = f"{problem}: lower learning_rate, or check the data for non-finite values"
        raise CancelFitException


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
    them through ``train_transform`` (:class:`~audiosweep.augment.TrainingBatches`); validation batches never."""
    dev = feats.device if device is None else torch.device(device)
    # Drop a last batch of one clip: BatchNorm cannot train on it.
    drop_last = len(train_idx) % cfg.batch_size == 1
    train = TensorLoader(feats if train_source is None else train_source, targets, cfg.batch_size, shuffle=True,
                         drop_last=drop_last, seed=cfg.trial_num, channels_last=channels_last, idx=train_idx,
                         device=dev, transform=train_transform)
    valid = TensorLoader(feats, targets, cfg.batch_size * 2, channels_last=channels_last, idx=valid_idx,
                         device=dev)
    return DataLoaders(train, valid, device=dev)


class History(Callback):
    """Keeps a :class:`~audiosweep.results.HistoryRow` of every training epoch (across both phases of
    ``fine_tune``), read after fastai's Recorder; validation-only passes (``get_preds``) are skipped. Epochs
    count from 1 across the phases, as in the record, W&B and the plots, and so does fastai's printed table:
    the Recorder's 0-based, per-phase epoch is replaced before the table row is written. With ``progress``, each
    row is also appended to that JSON-lines file as it is made (with this process's ``pid``), for the sweep
    runner's early termination to read while the run trains. ``trainable_params`` counts the parameters that
    trained in the epoch (those requiring gradients: the frozen body, or unfreeze_schedule's frozen blocks, left
    out)."""

    order = 60  # after the Recorder (50): its before_epoch has reset the log whose epoch we set

    def __init__(self, progress: Path | None = None):
        self.rows: list[HistoryRow] = []
        self.progress = progress

    def before_epoch(self):
        self.t0, self.trained = time.perf_counter(), False
        self.recorder.log[0] = len(self.rows) + 1

    def before_train(self):
        self.trained = True

    def after_epoch(self):
        if not self.trained:
            return
        names = [n for n in self.recorder.metric_names if n != "epoch"]
        vals = dict(zip(names, self.recorder.log[1:]))
        self.rows.append(HistoryRow(epoch=len(self.rows) + 1, train_loss=_num(vals.get("train_loss")),
                                    valid_loss=_num(vals.get("valid_loss")), accuracy=_num(vals.get("accuracy")),
                                    time_s=round(time.perf_counter() - self.t0, 3),
                                    trainable_params=sum(p.numel() for p in trainable_params(self.model))))
        if self.progress is not None:  # one write of a whole line: a reader never sees half a row
            try:
                with open(self.progress, "a") as f:
                    f.write(json.dumps({**self.rows[-1], "pid": os.getpid(),
                                        "launch": os.environ.get(LAUNCH_ENV)}) + "\n")
            except OSError as e:  # a full disk must not end the run: only early termination loses its input
                warnings.warn(f"cannot append to {self.progress} ({e.strerror or e}); going on without it",
                              stacklevel=2)
                self.progress = None


def wandb_callback() -> Callback:
    """fastai's ``WandbCallback`` (per-batch loss and hyper-parameters, per-epoch metrics), minus its learner
    config dump, which fails in fastai 2.8.12 with fastcore 2.2 (``init_args`` on plain values); our
    :class:`Config` reaches W&B through ``wandb.init`` instead."""
    from fastai.callback.wandb import WandbCallback

    class WandbLogger(WandbCallback):
        def before_fit(self):
            self.learn.gather_args = dict
            try:
                super().before_fit()
            finally:
                del self.learn.gather_args

    return WandbLogger(log=None, log_preds=False, log_model=False)


def _num(v) -> float | None:
    return None if v is None else float(v)


def build_learner(cfg: Config, dls: DataLoaders, n_in: int, n_out: int, device: torch.device,
                  cbs: list[Callback]) -> Learner:
    """The run's Learner over ``dls`` (whose validation features give the input shape): the model, its optimizer,
    weight decay and loss (:mod:`~audiosweep.recipes`), MixUp, gradient accumulation, the pretrained body frozen
    (its BatchNorm statistics too with ``finetune: head``), the unfreezing schedule over the model's blocks
    (``learn.blocks``), the best epoch's checkpoint, precision and compilation."""
    arch = build_model(cfg, n_out, (n_in, *dls.valid.x.shape[2:]))
    if device.type == "cuda":
        arch.model.to(memory_format=torch.channels_last)
    cbs = [*cbs, StopOnDivergence()]
    if cfg.mix_up > 0:
        cbs = [*cbs, MixUp(cfg.mix_up)]
    if cfg.accumulate > 1:  # fastai counts samples, not batches
        cbs = [*cbs, GradientAccumulation(cfg.accumulate * cfg.batch_size)]
    head_only = arch.pretrained and cfg.finetune == "head"
    if head_only:
        cbs = [*cbs, BnFreeze()]
    if cfg.unfreeze_schedule:
        if not arch.blocks:
            raise UserError(f"unfreeze_schedule: {cfg.arch} was built without its list of blocks; leave "
                            "unfreeze_schedule out")
        cbs = [*cbs, UnfreezeBlocks(cfg.unfreeze_schedule, arch.blocks)]
    if cfg.checkpoint == "best":
        cbs = [*cbs, BestCheckpoint()]
    learn = Learner(dls, arch.model, loss_func=loss_func(cfg), opt_func=opt_func(cfg), metrics=accuracy,
                    splitter=arch.splitter or trainable_params, cbs=cbs, wd=cfg.weight_decay, train_bn=not head_only)
    plain_epoch_lines(learn)  # a log file (the sweep runner's) gets one line per epoch, no redrawn bars
    learn.pretrained_body, learn.blocks = arch.pretrained, arch.blocks
    if arch.pretrained and not cfg.unfreeze_schedule:  # the schedule says what trains from the first epoch on
        learn.freeze()
    precision = resolve_precision(cfg, device)
    if precision == "bf16":
        learn.to_bf16()
    elif precision == "fp16":
        learn.to_fp16()
    if cfg.compile:
        compile_model(learn.model)
    return learn


def fit(learn: Learner, cfg: Config) -> None:
    """Train with the run's ``schedule``: over ``unfreeze_schedule``'s epochs in one fit when it is set, the head
    alone with ``finetune: head``, fine_tune's two phases (frozen epochs, then all layers) for pretrained bodies,
    else one fit from scratch. With ``checkpoint: best`` the model ends holding the best epoch's weights.

    fastai's progress bar counts epochs within each phase; the printed table counts them as the record does."""
    checkpoint = getattr(learn, "best_checkpoint", None)
    try:
        _fit(learn, cfg)
        stopped = getattr(learn, "stop_on_divergence", None)
        if stopped is not None and stopped.problem:
            raise Diverged(stopped.problem)
        if checkpoint is not None:
            checkpoint.load_best()
            print(f"checkpoint best: the weights of epoch {checkpoint.best_epoch} are evaluated (validation "
                  f"accuracy {checkpoint.best:.4f})")
    finally:
        if checkpoint is not None:
            checkpoint.cleanup()


def _fit(learn: Learner, cfg: Config) -> None:
    lr, f, n = cfg.learning_rate, cfg.freeze_epochs, cfg.n_epochs
    schedule = _schedule_text(cfg)
    if learn.pretrained_body and cfg.finetune == "head":
        from .frozen_body import fit_head

        fit_head(learn, cfg)
    elif cfg.unfreeze_schedule:
        print(f"{schedule}: epoch{'s' * (n > 1)} {_span(1, n)} in one fit, the model's blocks unfrozen by "
              f"unfreeze_schedule {cfg.unfreeze_schedule}")
        learn.unfreeze()
        fit_schedule(learn, cfg, n, lr)
    elif learn.pretrained_body:
        frozen = f"epoch{'s' * (f > 1)} {_span(1, f)} with the pretrained body frozen, then " if f else ""
        print(f"fine_tune: {frozen}epoch{'s' * (n > 1)} {_span(f + 1, f + n)} with all layers at up to {lr / 2:g}; "
              f"{cfg.schedule.replace('_', '-')} schedule in each phase")
        fine_tune(learn, cfg)
    else:
        print(f"{schedule}: epoch{'s' * (n > 1)} {_span(1, n)}")
        fit_schedule(learn, cfg, n, lr)


def _schedule_text(cfg: Config) -> str:
    lr = f"{cfg.learning_rate:g}"
    return {"one_cycle": f"one-cycle schedule (peak learning rate {lr})",
            "plateau": f"learning rate {lr}, x{cfg.plateau_factor:g} after {cfg.plateau_patience} epoch"
                       f"{'s' * (cfg.plateau_patience > 1)} without a better validation accuracy",
            "cosine": f"cosine annealing of the learning rate from {lr} to 0",
            "constant": f"constant learning rate {lr}"}[cfg.schedule]


def _span(first: int, last: int) -> str:
    return str(first) if first == last else f"{first}-{last}"
