"""Training recipes chosen by config keys, each a fastai piece: the optimizer (``optimizer``, ``weight_decay``), the
loss (``loss``, ``label_smoothing``), the learning-rate schedule of one fit (``schedule``) and progressive unfreezing
(``unfreeze_schedule``).

The defaults are fastai's: ``Adam``, ``CrossEntropyLossFlat``, ``fit_one_cycle``.
"""

from __future__ import annotations

import warnings
from bisect import bisect_right
from collections.abc import Callable
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from fastai.callback.core import Callback
from fastai.callback.tracker import ReduceLROnPlateau, TrackerCallback
from fastai.learner import Learner
from fastai.losses import BaseLoss, CrossEntropyLossFlat
from fastai.optimizer import SGD, Adam, OptimWrapper
from torch import nn

from .config import Config

SGD_MOMENTUM = 0.9


def opt_func(cfg: Config) -> Callable:
    """The ``opt_func`` of the run's Learner: fastai's ``Adam`` (its default), PyTorch's ``AdamW`` wrapped by fastai's
    ``OptimWrapper`` (freezing, parameter groups, discriminative and scheduled learning rates all go through the
    wrapper), fastai's ``SGD`` with momentum 0.9, or for ``adam_l2`` fastai's ``Adam`` with PyTorch's ``Adam``
    step: L2 decay added to the gradients (``decouple_wd=False``) and PyTorch's betas and eps. The weight decay is
    the Learner's ``wd``; :func:`decays_bn_and_bias` says which parameters it reaches."""
    if cfg.optimizer == "adamw":
        return partial(OptimWrapper, opt=torch.optim.AdamW)
    if cfg.optimizer == "sgd":
        return partial(SGD, mom=SGD_MOMENTUM)
    if cfg.optimizer == "adam_l2":  # fastai's own Adam, so its hypers stay fastai's (no OptimWrapper copies, #4046)
        return partial(Adam, mom=0.9, sqr_mom=0.999, eps=1e-8, decouple_wd=False)
    return Adam


def decays_bn_and_bias(cfg: Config) -> bool:
    """The Learner's ``wd_bn_bias``: whether weight decay reaches BatchNorm and bias parameters. fastai spares them
    by default; ``adam_l2`` is ``torch.optim.Adam(weight_decay=...)``, which decays every parameter."""
    return cfg.optimizer == "adam_l2"


class SmoothedKLDiv(nn.Module):
    """KL divergence of ``log_softmax(pred)`` from the target distribution ``(1 - eps) * one_hot + eps / K``, summed
    over the K classes; ``reduction`` mean averages over the batch (PyTorch's ``batchmean``), sum adds, none keeps
    one value per sample (what fastai's MixUp asks for through ``NoneReduce``).

    Written here because ``nn.KLDivLoss`` takes a target distribution, not class indices with smoothing."""

    def __init__(self, label_smoothing: float = 0.0, reduction: str = "mean"):
        super().__init__()
        self.label_smoothing, self.reduction = label_smoothing, reduction

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_probs = F.log_softmax(pred.float(), dim=-1)
        k, eps = pred.shape[-1], self.label_smoothing
        smoothed = F.one_hot(target, k).to(log_probs.dtype) * (1 - eps) + eps / k
        loss = F.kl_div(log_probs, smoothed, reduction="none").sum(-1)
        if self.reduction == "mean":
            return loss.mean()
        return loss.sum() if self.reduction == "sum" else loss


class KLDivLossFlat(BaseLoss):
    """:class:`SmoothedKLDiv` as a fastai loss, like ``CrossEntropyLossFlat``: integer targets (MixUp mixes the
    losses), softmax activation and argmax decoding for ``get_preds`` and TTA."""

    y_int = True

    def __init__(self, *args, axis: int = -1, **kwargs):
        super().__init__(SmoothedKLDiv, *args, axis=axis, **kwargs)

    def decodes(self, x: torch.Tensor) -> torch.Tensor:
        return x.argmax(dim=self.axis)

    def activation(self, x: torch.Tensor) -> torch.Tensor:
        return F.softmax(x, dim=self.axis)


def loss_func(cfg: Config) -> BaseLoss:
    """The run's loss: cross-entropy or KL divergence, with ``label_smoothing``."""
    if cfg.loss == "kl_div":
        return KLDivLossFlat(label_smoothing=cfg.label_smoothing)
    return CrossEntropyLossFlat(label_smoothing=cfg.label_smoothing) if cfg.label_smoothing else CrossEntropyLossFlat()


class PlateauLR(ReduceLROnPlateau):
    """fastai's ``ReduceLROnPlateau`` on validation accuracy: the learning rate of every parameter group is
    multiplied by ``factor`` after ``patience`` epochs without a better accuracy (fastai's own ``factor`` divides).

    The reduction is written here through ``opt.set_hyper``: fastai 2.8's writes into ``opt.hypers``, which for an
    ``OptimWrapper`` (adamw) are copies, so the learning rate never dropped (fastai issue #4046)."""

    def __init__(self, patience: int, factor: float):
        super().__init__(monitor="accuracy", comp=np.greater, patience=patience, factor=1 / factor)

    def after_epoch(self):
        TrackerCallback.after_epoch(self)
        if self.new_best:
            self.wait = 0
            return
        self.wait += 1
        if self.wait >= self.patience:
            old = [h["lr"] for h in self.opt.hypers]
            self.opt.set_hyper("lr", [max(lr / self.factor, self.min_lr) for lr in old])
            self.wait = 0
            if self.opt.hypers[-1]["lr"] < old[-1]:
                print(f"plateau: no better accuracy for {self.patience} epoch{'s' * (self.patience > 1)}, "
                      f"learning rate {old[-1]:.3g} -> {self.opt.hypers[-1]['lr']:.3g}")


class StepLR(Callback):
    """The learning rate of every parameter group multiplied by ``factor`` every ``step_size`` epochs, or at each
    epoch (0-based) of ``milestones``: PyTorch's StepLR / MultiStepLR stepped once per epoch, on the rates the fit
    started from (a slice's resolved per-group rates too).

    A Callback writing ``opt.set_hyper`` at each epoch's start, not fastai's ``ParamScheduler``: that one is a function
    of the fraction of training done, whose float epoch boundaries (e / n_epochs) could land a change one batch early
    or late; here the epoch number is an integer. ``set_hyper`` reaches fastai's optimizers and the OptimWrapper."""

    def __init__(self, factor: float, step_size: int | None = None, milestones: list[int] | None = None):
        self.factor, self.step_size, self.milestones = factor, step_size, milestones

    def steps(self, epoch: int) -> int:
        """How many times the rate has been multiplied by the start of ``epoch`` (0-based): StepLR's
        ``epoch // step_size``, MultiStepLR's count of milestones reached."""
        return epoch // self.step_size if self.milestones is None else bisect_right(self.milestones, epoch)

    def before_fit(self):
        self.base = [h["lr"] for h in self.opt.hypers]
        late = [m for m in self.milestones or [] if m >= self.n_epoch]
        if late:
            warnings.warn(f"step_milestones: epoch{'s' * (len(late) > 1)} {', '.join(map(str, late))} (0-based) "
                          f"never come{'s' * (len(late) == 1)} in a fit of {self.n_epoch} epochs", stacklevel=2)

    def before_epoch(self):
        scale = self.factor ** self.steps(self.epoch)
        self.opt.set_hyper("lr", [lr * scale for lr in self.base])


def fit_schedule(learn: Learner, cfg: Config, n_epochs: int, lr: float | slice) -> None:
    """One fit of ``n_epochs`` epochs from learning rate ``lr`` (a slice: discriminative rates over the parameter
    groups) with the run's ``schedule``. Cosine annealing to 0 is fastai's ``fit_sgdr`` with a single cycle: it
    resolves a slice into the groups' rates before annealing each of them."""
    if cfg.schedule == "step":
        learn.fit(n_epochs, lr, cbs=StepLR(cfg.step_factor, cfg.step_size, cfg.step_milestones))
    elif cfg.schedule == "plateau":
        learn.fit(n_epochs, lr, cbs=PlateauLR(cfg.plateau_patience, cfg.plateau_factor))
    elif cfg.schedule == "cosine":
        learn.fit_sgdr(1, n_epochs, lr_max=lr)
    elif cfg.schedule == "constant":
        learn.fit(n_epochs, lr)
    else:
        learn.fit_one_cycle(n_epochs, lr)


def fine_tune(learn: Learner, cfg: Config) -> None:
    """fastai's ``fine_tune`` with the run's schedule in each phase: ``freeze_epochs`` with the body frozen at
    ``slice(lr)``, then all layers at ``slice(lr / 200, lr / 2)``, the learning rates fine_tune uses (it halves the
    base rate for the second phase), or with ``discriminative_lr`` false all of them at ``lr``. one_cycle with
    discriminative rates is ``fine_tune`` itself; without, its phases are plain ``fit_one_cycle`` fits."""
    lr = cfg.learning_rate
    if cfg.schedule == "one_cycle" and cfg.discriminative_lr:
        learn.fine_tune(cfg.n_epochs, base_lr=lr, freeze_epochs=cfg.freeze_epochs)
        return
    learn.freeze()
    if cfg.freeze_epochs:
        fit_schedule(learn, cfg, cfg.freeze_epochs, slice(lr))
    learn.unfreeze()
    fit_schedule(learn, cfg, cfg.n_epochs, slice(lr / 2 / 100, lr / 2) if cfg.discriminative_lr else lr)


class UnfreezeBlocks(Callback):
    """Progressive unfreezing (``unfreeze_schedule``): from each scheduled epoch of the fit (0-based) on, the top N
    of ``blocks`` (listed input to output) train and the lower ones are frozen; parameters outside the blocks are
    left as they are. At the end of the fit every block is trainable again.

    A frozen parameter loses its gradient (``grad = None``): fastai's optimizers and PyTorch's skip parameters
    without one, so neither their moments nor their weight decay move them."""

    def __init__(self, schedule: list[list[int]], blocks: list[nn.Module]):
        n = len(blocks)
        if any(count > n for _, count in schedule):
            warnings.warn(f"unfreeze_schedule: {max(count for _, count in schedule)} blocks asked for, the model has "
                          f"{n}: all {n} train from then on", stacklevel=2)
        self.schedule = [(epoch, min(count, n)) for epoch, count in schedule]
        self.blocks, self.trainable = blocks, None

    def before_fit(self):
        late = [epoch for epoch, _ in self.schedule if epoch >= self.n_epoch]
        if late:
            warnings.warn(f"unfreeze_schedule: epoch{'s' * (len(late) > 1)} {', '.join(map(str, late))} (0-based) "
                          f"never come{'s' * (len(late) == 1)} in a fit of {self.n_epoch} epochs", stacklevel=2)

    def before_train(self):
        count = [c for epoch, c in self.schedule if epoch <= self.epoch][-1]
        if count != self.trainable:
            print(f"unfreeze_schedule: epoch {self.epoch + 1}: the top {count} of {len(self.blocks)} blocks train")
        self.set_trainable(count)

    def after_fit(self):
        self.set_trainable(len(self.blocks))

    def set_trainable(self, count: int) -> None:
        self.trainable = count
        for i, block in enumerate(self.blocks):
            train = i >= len(self.blocks) - count
            for p in block.parameters():
                p.requires_grad_(train)
                if not train:
                    p.grad = None
