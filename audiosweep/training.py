"""The run's fastai Learner: :func:`build_learner` (the model, its recipes, and the callbacks every Learner of ours
has), :func:`fit` (the schedule of its fits), and the callbacks of a fit: what the Learner knows of its model's
body, per-epoch history, stopping on divergence, W&B."""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from pathlib import Path

import fastai.callback.fp16  # noqa: F401  (patches Learner.to_fp16 / to_bf16)
import fastai.callback.progress  # noqa: F401  (progress bar and per-epoch table)
import fastai.callback.schedule  # noqa: F401  (patches Learner.fit_one_cycle / fine_tune)
import torch
from fastai.callback.core import Callback, CancelFitException
from fastai.callback.mixup import MixUp
from fastai.callback.training import BnFreeze, GradientAccumulation
from fastai.data.core import DataLoaders
from fastai.learner import Learner
from fastai.metrics import accuracy
from fastai.torch_core import getcallable, trainable_params
from torch import nn

from .best_epoch import BestEpoch
from .config import Config
from .device import compile_model, resolve_precision
from .epoch_log import plain_epoch_lines
from .errors import Diverged, UserError
from .frozen_body import fit_head
from .models import build_model
from .recipes import UnfreezeBlocks, decays_bn_and_bias, fine_tune, fit_schedule, loss_func, opt_func
from .results import LAUNCH_ENV, HistoryRow, append_line, write_atomic


class ModelBody(Callback):
    """What the Learner knows of its model beyond fastai: whether the body holds ``pretrained`` weights, its
    ``blocks`` (input to output, what ``unfreeze_schedule`` unfreezes), and, while ``finetune: head`` trains the
    head alone as ``learn.model``, the ``whole_model`` the head belongs to. State only, read as
    ``learn.model_body``."""

    def __init__(self, pretrained: bool, blocks: list[nn.Module] | None = None):
        self.pretrained, self.blocks, self.whole_model = pretrained, blocks or [], None

    @property
    def whole(self) -> nn.Module:
        """The whole model: ``learn.model``, or the one whose head trains alone."""
        return self.learn.model if self.whole_model is None else self.whole_model


class StopOnDivergence(Callback):
    """Stop training when a training loss (checked at the end of the epoch's training batches: no host sync per
    batch) or a validation loss is not finite (what follows is noise) and keep why in ``problem``, naming the epoch
    and the first bad batch: :func:`fit` then raises :class:`~audiosweep.errors.Diverged`, so the run is recorded
    as failed, never as finished. Like fastai's ``TerminateOnNaNCallback``, plus validation and the reason."""

    order = 61  # after History (60): the epoch that diverged keeps its row

    def __init__(self):
        self.epochs, self.problem = 0, None  # training epochs begun, across fine_tune's phases

    def before_fit(self):
        if self.problem:  # fine_tune's second phase after a first that diverged
            raise CancelFitException

    def before_train(self):
        self.epochs += 1
        self.first_bad = None  # per epoch, on the loss's device: the first non-finite batch (0: none) and its loss

    def after_batch(self):
        # No host sync per batch (a GPU would wait for every step): the first bad batch is kept on the device and
        # read once, after the epoch's training batches.
        if not self.training:
            return
        loss = self.loss.detach().reshape(-1)
        bad = ~torch.isfinite(loss)
        if self.first_bad is None:
            self.first_bad = (torch.zeros((), dtype=torch.long, device=loss.device),
                              torch.zeros((), dtype=loss.dtype, device=loss.device))
        batch, value = self.first_bad
        first = bad.any() & (batch == 0)
        self.first_bad = (torch.where(first, self.iter + 1, batch),
                          torch.where(first, loss.gather(0, bad.int().argmax().reshape(1))[0], value))

    def after_train(self):
        if self.first_bad is None:
            return
        batch, value = (t.item() for t in self.first_bad)  # the epoch's one host sync
        if batch:
            self.stop(f"training loss became {value} at epoch {self.epochs}, batch {batch}")

    def after_epoch(self):
        valid = dict(zip(self.recorder.metric_names, self.recorder.log)).get("valid_loss")
        if isinstance(valid, float) and not math.isfinite(valid):
            self.stop(f"validation loss became {valid} at epoch {self.epochs}")

    def stop(self, problem: str):
        self.problem = f"{problem}: lower learning_rate, or check the data for non-finite values"
        raise CancelFitException


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
                append_line(self.progress, self._line(self.rows[-1]), create=len(self.rows) == 1)
            except OSError as e:  # a full disk must not end the run: only early termination loses its input
                warnings.warn(f"cannot append to {self.progress} ({e.strerror or e}); going on without it",
                              stacklevel=2)
                self.progress = None

    def restore(self, rows: list[HistoryRow]) -> None:
        """Start from ``rows``, the epochs of a checkpoint (a resumed run): the progress file is written anew
        with them (as this process's rows), dropping any epoch trained after the checkpoint."""
        self.rows = list(rows)
        if self.progress is not None:
            text = "".join(self._line(row) + "\n" for row in self.rows)
            write_atomic(self.progress, lambda f: f.write(text.encode()))

    @staticmethod
    def _line(row: HistoryRow) -> str:
        return json.dumps({**row, "pid": os.getpid(), "launch": os.environ.get(LAUNCH_ENV)})


class LastValidation(Callback):
    """The predictions of a fit's latest validation pass (kept on the device, detached), with the epoch they
    belong to, so that evaluation can use them instead of predicting the same clips again with the same weights
    (:meth:`predictions`). Passes outside a fit (``get_preds``) are left alone."""

    def __init__(self):
        self.fitting, self.batches, self.at_epoch, self.made_by = False, [], None, (None, None)

    def before_fit(self):
        self.fitting = True

    def after_fit(self):
        self.fitting = False

    def before_validate(self):
        if self.fitting:
            self.batches, self.at_epoch = [], None

    def after_batch(self):
        if self.fitting and not self.training:
            self.batches.append((self.pred.detach(), self.yb[0].detach()))

    def after_validate(self):
        if self.fitting:  # which weights, model and clips made them
            self.at_epoch, self.made_by = self.learn.best_epoch.epochs_trained, (self.learn.model, self.learn.dl)

    def predictions(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``learn.get_preds(ds_idx=1)``'s (probabilities, targets) on the CPU, the same values, when the model
        still holds the weights of the last validated epoch (``checkpoint: last``, or the best epoch was the last)
        and the same model and validation loader made them (not ``finetune: head``'s head alone); else None."""
        learn, best = self.learn, self.learn.best_epoch
        if (self.at_epoch is None or self.at_epoch != best.epochs_trained or self.at_epoch != best.evaluated
                or self.made_by[0] is not learn.model or self.made_by[1] is not learn.dls.valid or not self.batches):
            return None
        preds, targets = (torch.cat(t).cpu() for t in zip(*self.batches))  # as get_preds: on the CPU, then
        return getcallable(learn.loss_func, "activation")(preds), targets   # the loss's activation


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
    (its BatchNorm statistics too with ``finetune: head``), the unfreezing schedule over the model's blocks,
    precision and compilation. Every Learner has ``learn.model_body`` (:class:`ModelBody`),
    ``learn.stop_on_divergence``, ``learn.last_validation`` (:class:`LastValidation`) and ``learn.best_epoch``
    (:class:`~audiosweep.best_epoch.BestEpoch`)."""
    arch = build_model(cfg, n_out, (n_in, *dls.valid.x.shape[2:]))
    if device.type == "cuda":
        arch.model.to(memory_format=torch.channels_last)
    cbs = [*cbs, ModelBody(arch.pretrained, arch.blocks), StopOnDivergence(), LastValidation(),
           BestEpoch(evaluate=cfg.checkpoint == "best", save=cfg.save_model == "best")]
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
    learn = Learner(dls, arch.model, loss_func=loss_func(cfg), opt_func=opt_func(cfg), metrics=accuracy,
                    splitter=arch.splitter or trainable_params, cbs=cbs, wd=cfg.weight_decay, train_bn=not head_only,
                    wd_bn_bias=decays_bn_and_bias(cfg))
    plain_epoch_lines(learn)  # a log file (the sweep runner's) gets one line per epoch, no redrawn bars
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
    _fit(learn, cfg)
    if learn.stop_on_divergence.problem:
        raise Diverged(learn.stop_on_divergence.problem)
    best = learn.best_epoch
    if best.evaluate:
        best.load_best()
        print(f"checkpoint best: the weights of epoch {best.best_at} are evaluated (validation accuracy "
              f"{best.best:.4f})")


def _fit(learn: Learner, cfg: Config) -> None:
    lr, f, n = cfg.learning_rate, cfg.freeze_epochs, cfg.n_epochs
    schedule = _schedule_text(cfg)
    if learn.model_body.pretrained and cfg.finetune == "head":
        fit_head(learn, cfg)
    elif cfg.unfreeze_schedule:
        print(f"{schedule}: epoch{'s' * (n > 1)} {_span(1, n)} in one fit, the model's blocks unfrozen by "
              f"unfreeze_schedule {cfg.unfreeze_schedule}")
        learn.unfreeze()
        fit_schedule(learn, cfg, n, lr)
    elif learn.model_body.pretrained:
        frozen = f"epoch{'s' * (f > 1)} {_span(1, f)} with the pretrained body frozen, then " if f else ""
        rates = f"up to {lr / 2:g}" if cfg.discriminative_lr else f"{lr:g}"
        print(f"fine_tune: {frozen}epoch{'s' * (n > 1)} {_span(f + 1, f + n)} with all layers at {rates}; "
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
            "constant": f"constant learning rate {lr}",
            "step": f"learning rate {lr}, x{cfg.step_factor:g} "
                    + (f"every {cfg.step_size} epochs" if cfg.step_milestones is None
                       else f"at epochs {cfg.step_milestones} (0-based)")}[cfg.schedule]


def _span(first: int, last: int) -> str:
    return str(first) if first == last else f"{first}-{last}"
