"""Mid-run checkpoints: a run killed or preempted continues from its last completed epoch (``train.py --resume
RUN_ID``) and trains on as if it had never stopped: on the CPU its history equals an uninterrupted run's.

:class:`Checkpoint` writes, every ``checkpoint_every`` epochs, one file beside the run's record
(:attr:`~audiosweep.results.RunFiles.checkpoint`, replaced atomically): the whole model's weights, the optimizer's
state, the random generators (Python, NumPy, torch's CPU and CUDA ones, which augmentation and MixUp draw from, and
the training loader's shuffling generator), the epoch history, the state of the callbacks that carry one across
epochs (best epoch, divergence, plateau, gradient accumulation) and fastai's smoothed training loss. train.py
removes it once the run finished. Resuming skips the epochs done, across fine_tune's fits, so that every schedule
(one-cycle, cosine, step, plateau, progressive unfreezing) continues at its position.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fastai.callback.core import Callback, CancelEpochException
from fastai.learner import Learner
from fastai.optimizer import OptimWrapper
from fastai.torch_core import to_device
from fastcore.foundation import L

from .config import Config
from .errors import ConfigError, RecordError
from .results import NON_IDENTITY_KEYS, Record, RunFiles, write_atomic

FORMAT = 1
# Callback attributes a resumed run needs, by the callback's class name (those of one fit, such as PlateauLR's,
# are reset by the next fit's before_fit as they would have been).
CALLBACK_STATE = {"BestEpoch": ("best", "best_at", "epochs_trained", "state"),
                  "StopOnDivergence": ("epochs", "problem"), "PlateauLR": ("best", "wait"),
                  "GradientAccumulation": ("count",)}


def rng_states() -> dict[str, Any]:
    """Python's, NumPy's and torch's global generators (NumPy's key array as a tensor: the checkpoint loads with
    ``weights_only``)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    states = {"python": random.getstate(), "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss,
                                                     gauss), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])


def _plain(value: Any) -> Any:
    """``value`` with fastcore's lists as lists, fastai's tensor subclasses as tensors and NumPy scalars as Python
    numbers (fastai's optimizer, smoothed loss and trackers hold them), which ``torch.load(weights_only=True)``
    loads."""
    if isinstance(value, torch.Tensor):
        return value.as_subclass(torch.Tensor)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, L)):
        return type(value)(map(_plain, value)) if isinstance(value, tuple) else [_plain(v) for v in value]
    return value.item() if isinstance(value, np.generic) else value


def _callback_states(learn: Learner) -> dict[str, dict[str, Any]]:
    return {type(cb).__name__: {a: getattr(cb, a) for a in CALLBACK_STATE[type(cb).__name__]}
            for cb in learn.cbs if type(cb).__name__ in CALLBACK_STATE}


def _set_callback_states(learn: Learner, states: dict[str, dict[str, Any]]) -> None:
    for cb in learn.cbs:
        for attr, value in states.get(type(cb).__name__, {}).items():
            setattr(cb, attr, value)


class Checkpoint(Callback):
    """Writes the run's checkpoint to ``path`` after every ``every``-th epoch (0: never), with ``meta`` (run id,
    effective config); with ``resume`` (a checkpoint :func:`load_for_resume` read) it first restores it and skips
    the epochs it holds. ``seconds`` and ``writes``: what its writes cost (the README's figures)."""

    order = 99  # after every callback's after_epoch (History, BestEpoch, StopOnDivergence) and before_fit

    def __init__(self, path: Path, every: int, meta: dict[str, Any], resume: dict[str, Any] | None = None):
        self.path, self.every, self.meta, self.resume = path, every, meta, resume
        self.skip = resume["epoch"] if resume else 0  # epochs still to skip, over the run's fits
        self.start = 0  # the current fit's first epoch (0-based)
        self.trained = False  # the epoch under way trains (not a validation pass of get_preds)
        self.seconds, self.writes = 0.0, 0

    def after_create(self):
        if self.resume is not None:  # fit() reads learn._do_fit before its before_fit: replaced from the start
            self.learn._do_fit = self.fit_epochs

    def before_fit(self):
        if self.resume is None:
            return
        self.start = min(self.skip, self.n_epoch)
        self.skip -= self.start
        if self.start and not self.skip:  # the checkpoint's epoch is this fit's epoch ``start``
            self.restore(self.resume)
            self.resume = None

    def after_fit(self):
        self.start = 0
        if self.resume is None:
            self.learn.__dict__.pop("_do_fit", None)

    def fit_epochs(self) -> None:
        """fastai's ``Learner._do_fit`` from the fit's epoch ``start`` on. Not fastai's ``SkipToEpoch``
        (``fit(start_epoch=)``): it cancels the earlier epochs, whose after_epoch still runs in every callback (the
        Recorder logs an empty row, trackers read it); here they never begin. The schedules read ``pct_train``,
        which fastai sets from the epoch at each epoch's start."""
        learn = self.learn
        learn.train_iter = self.start * len(learn.dls.train)
        for epoch in range(self.start, learn.n_epoch):
            learn.epoch = epoch
            learn._with_events(learn._do_epoch, "epoch", CancelEpochException)

    def before_epoch(self):
        self.trained = False

    def before_train(self):
        self.trained = True

    def after_epoch(self):
        epoch = len(self.learn.history.rows)
        if self.trained and self.every and epoch % self.every == 0:  # not get_preds' validation-only passes
            t0 = time.perf_counter()
            state = self.state(epoch)
            write_atomic(self.path, lambda f: torch.save(state, f))
            self.seconds, self.writes = self.seconds + time.perf_counter() - t0, self.writes + 1

    def state(self, epoch: int) -> dict[str, Any]:
        learn = self.learn
        smooth = learn.recorder.smooth_loss
        accumulating = any(type(cb).__name__ == "GradientAccumulation" for cb in learn.cbs)
        scaler = getattr(learn, "scaler", None)
        return _plain({"format": FORMAT, **self.meta, "epoch": epoch, "history": list(learn.history.rows),
                "model": learn.model_body.whole.state_dict(), "opt": learn.opt.state_dict(), "rng": rng_states(),
                "loader_rng": getattr(learn.dls.train, "gen", None) and learn.dls.train.gen.get_state(),
                "callbacks": _callback_states(learn),
                "smooth_loss": (smooth.count, smooth.val), "scaler": scaler.state_dict() if scaler else None,
                # gradients that gradient accumulation carries into the next epoch
                "grads": [p.grad for p in learn.model.parameters()] if accumulating else None})

    def restore(self, ckpt: dict[str, Any]) -> None:
        """Put ``ckpt`` into the Learner at the start of the fit whose epoch it ended, as it was at that epoch's
        end; what the run does after that fit (fine_tune's unfreezing clears the optimizer's state, the next fit
        sets its learning rates and resets the smoothed loss) then happens as it did."""
        learn = self.learn
        learn.model_body.whole.load_state_dict(ckpt["model"])
        device = next(learn.model.parameters()).device
        if isinstance(learn.opt, OptimWrapper):  # torch's load_state_dict puts the state on its parameters' device
            learn.opt.load_state_dict(ckpt["opt"])
        else:
            learn.opt.load_state_dict(to_device(ckpt["opt"], device))
        set_rng_states(ckpt["rng"])
        if ckpt["loader_rng"] is not None:
            learn.dls.train.gen.set_state(ckpt["loader_rng"])
        _set_callback_states(learn, ckpt["callbacks"])
        if ckpt["grads"] is not None:
            for p, g in zip(learn.model.parameters(), ckpt["grads"]):
                p.grad = None if g is None else g.to(device)
        smooth = learn.recorder.smooth_loss
        smooth.count, smooth.val = ckpt["smooth_loss"][0], ckpt["smooth_loss"][1].to(device)
        if ckpt["scaler"] is not None and getattr(learn, "scaler", None) is not None:
            learn.scaler.load_state_dict(ckpt["scaler"])


def load_for_resume(cfg: Config) -> dict[str, Any]:
    """The checkpoint of run ``cfg.resume``, checked: the run has not finished, its checkpoint is there and
    readable, and it was trained with the same settings as ``cfg`` (keys of the environment role, such as
    ``results_dir`` or ``device``, may differ). A ConfigError saying why not otherwise."""
    run_id = cfg.resume
    if not run_id or Path(run_id).name != run_id or run_id.startswith("."):
        raise ConfigError(f"resume: {run_id!r} is not a run id; give the name of a record in results_dir without "
                          ".json, e.g. --resume 20260101-120000-abc123")
    files = RunFiles.of(cfg.results_dir, run_id)
    if files.record.exists():
        try:
            record = Record.load(files.record)
        except RecordError as e:
            raise ConfigError(f"resume: {e}") from e
        if record.status == "finished":
            raise ConfigError(f"resume: run {run_id} finished ({files.record}): nothing to resume; start a new run "
                              "without --resume")
    if not files.checkpoint.exists():
        raise ConfigError(f"resume: run {run_id} has no checkpoint {files.checkpoint} (it ended before its first "
                          "epoch, or ran with checkpoint_every 0; check results_dir); run it again without --resume")
    try:
        ckpt = torch.load(files.checkpoint, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds for a truncated or foreign file
        raise ConfigError(f"resume: cannot read {files.checkpoint} ({type(e).__name__}); remove it and run again "
                          "without --resume") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT or ckpt.get("run_id") != run_id:
        raise ConfigError(f"resume: {files.checkpoint} is not a checkpoint of run {run_id} of this version; remove "
                          "it and run again without --resume")
    then, now = ({k: v for k, v in c.items() if k not in NON_IDENTITY_KEYS}
                 for c in (ckpt["config"], cfg.effective_dict()))
    changed = [f"{k} {then.get(k)!r} -> {now.get(k)!r}" for k in sorted(then.keys() | now.keys())
               if then.get(k) != now.get(k)]
    if changed:
        raise ConfigError(f"resume: run {run_id} was trained with other settings ({'; '.join(changed[:4])}"
                          f"{'; ...' if len(changed) > 4 else ''}); resume it with the same ones")
    return ckpt
