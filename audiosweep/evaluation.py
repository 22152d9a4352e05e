"""What a run does after training: test-time augmentation of the validation clips, the held-out test clips'
predictions, and the saved model."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import torch
from fastai.learner import Learner

from .augment import TrainingBatches, multi_view, waveform_active
from .config import Config
from .features import input_shape, stage_waveforms
from .loaders import TensorLoader
from .results import RunFiles, save_predictions, write_atomic

MODEL_FORMAT = 1


def save_model(path: Path, learn: Learner, cfg: Config, classes: list[str], norm_stats: dict) -> Path:
    """Write the weights (``save_model``: final, or the best epoch's, kept by ``learn.best_epoch``) and what
    rebuilds the model and its features: the effective config, the classes, the normalisation statistics, and the
    input shape the weights were trained on (so that a config edited afterwards is caught). Loads on a CPU.

    With ``checkpoint: best`` the model holds the best epoch's weights already, the ones evaluated: they are saved
    whichever ``save_model`` asks."""
    best = learn.best_epoch.state if cfg.save_model == "best" else None
    state = best if best is not None else {k: v.detach().to("cpu") for k, v in learn.model.state_dict().items()}
    obj = {"format": MODEL_FORMAT, "state_dict": state, "config": cfg.effective_dict(), "classes": classes,
           "norm_stats": norm_stats, "input_shape": list(input_shape(cfg)),
           "weights": "best" if cfg.checkpoint == "best" else cfg.save_model}
    return write_atomic(path, lambda f: torch.save(obj, f))


def tta_views(cfg: Config) -> Config:
    """The augmentation of the extra views: the run's own waveform or spectral augmentations, or, when it has
    none, a time shift of every view (+-``shift_max`` of the clip). SpecAugment masks are left out: they hide
    what a view should show."""
    if waveform_active(cfg):
        return dataclasses.replace(cfg, spec_freq_masks=0, spec_time_masks=0)
    return dataclasses.replace(cfg, shift_p=1.0, spec_freq_masks=0, spec_time_masks=0)


def tta_probs(learn: Learner, cfg: Config, waveforms: torch.Tensor, targets: torch.Tensor,
              valid_idx: torch.Tensor, norm_stats: dict, plain: torch.Tensor) -> torch.Tensor:
    """Mean softmax over the plain view (``plain``, already computed) and ``cfg.tta - 1`` augmented views of the
    clips ``valid_idx`` (the validation or the test clips), or with ``tta_views: augmented`` over ``cfg.tta``
    augmented views alone. The views are drawn from ``trial_num``: the same run gives the same TTA predictions.

    With an augmented input channel (``view_channels``), a view is the clip's input with its augmented channels
    drawn anew by the run's own augmentations, SpecAugment included, as in training; its original channels stay
    the clip's: the model learnt the augmented channel as a random one and the original as the clip itself (with
    ``augmented_view: fixed`` too: the views are drawn anew, not the ones the model trained on)."""
    device = learn.dls.device
    if multi_view(cfg):  # the training loader's transform, over row numbers, holds every clip's original view
        batches, waveforms = learn.dls.train.transform.views, learn.dls.train.x
    else:
        batches = TrainingBatches(tta_views(cfg), device, norm_stats)
    loader = TensorLoader(waveforms, targets, cfg.batch_size * 2, idx=valid_idx, device=device, transform=batches,
                          channels_last=device.type == "cuda")
    devices = [device] if device.type == "cuda" else []
    with_plain = cfg.tta_views == "plain+augmented"
    total = plain.clone().float() if with_plain else torch.zeros_like(plain, dtype=torch.float32)
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(cfg.trial_num)
        for _ in range(cfg.tta - 1 if with_plain else cfg.tta):
            probs, _ = learn.get_preds(dl=loader)
            total += probs.float()
    return total / cfg.tta


@dataclasses.dataclass
class Outcome:
    accuracy: float
    tta_accuracy: float | None
    files: dict[str, str]  # kind -> file name beside the record, for the files written
    test_accuracy: float | None = None  # the held-out test clips (none: None)
    test_tta_accuracy: float | None = None


def evaluate(learn: Learner, cfg: Config, data, norm_stats: dict, files: RunFiles,
             waveforms: torch.Tensor | None) -> Outcome:
    """The validation predictions (plain, and with TTA when ``cfg.tta`` > 1) written beside the record, the same
    for the held-out test clips (``data.test_idx``, when the run has them), and the model when ``cfg.save_model``
    asks. The model holds the evaluated epoch's weights (``checkpoint``), chosen on validation alone: the test
    clips are seen here, once. A file that cannot be written is a warning: the record matters more."""
    last = learn.last_validation.predictions()  # the last epoch's, when they are the evaluated weights'
    probs, targets = last if last is not None else learn.get_preds(ds_idx=1)
    outcome = Outcome(_accuracy(probs, targets), None, {})
    test_probs, test_targets = learn.get_preds(dl=test_loader(learn, data.test_idx)) if len(data.test_idx) else \
        (None, None)
    for kind, idx, p, t in (("", data.valid_idx, probs, targets), ("test_", data.test_idx, test_probs, test_targets)):
        if p is None:
            continue
        names = data.meta.filename.iloc[idx.numpy()].tolist()
        setattr(outcome, f"{kind}accuracy", _accuracy(p, t))
        _write(outcome, f"{kind}preds", files.predictions(test=bool(kind)),
               lambda path, p=p, t=t, names=names: save_predictions(path, p.float().numpy(), t.numpy(),
                                                                     data.classes, names))
        if cfg.tta > 1:
            if waveforms is None and not multi_view(cfg):
                waveforms = stage_waveforms(data.waveforms, learn.dls.device)
            tta = tta_probs(learn, cfg, waveforms, data.targets, idx, norm_stats, p)
            setattr(outcome, f"{kind}tta_accuracy", _accuracy(tta, t))
            _write(outcome, f"{kind}tta_preds", files.predictions(tta=True, test=bool(kind)),
                   lambda path, tta=tta, t=t, names=names: save_predictions(path, tta.numpy(), t.numpy(),
                                                                           data.classes, names))
    if cfg.save_model != "none":
        _write(outcome, "model", files.model, lambda p: save_model(p, learn, cfg, data.classes, norm_stats))
    return outcome


def test_loader(learn: Learner, test_idx: torch.Tensor) -> TensorLoader:
    """The held-out clips ``test_idx`` served as the validation clips are: the validation loader's features hold
    every clip's (normalised with the training clips' statistics, augmented views drawn once)."""
    valid = learn.dls.valid
    return TensorLoader(valid.x, valid.y, valid.bs, idx=test_idx, device=learn.dls.device,
                        channels_last=valid.channels_last)


def _accuracy(probs: torch.Tensor, targets: torch.Tensor) -> float:
    return (probs.argmax(1) == targets).float().mean().item()


def _write(outcome: Outcome, kind: str, path: Path, write) -> None:
    try:
        write(path)
    except OSError as e:
        warnings.warn(f"{kind} not saved to {path} ({e.strerror or e})", stacklevel=2)
    else:
        outcome.files[kind] = path.name
