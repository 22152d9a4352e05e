"""Checks before any work: a run that cannot succeed is refused in seconds, not found out after training."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from importlib import metadata
from pathlib import Path

import torch

from .config import Config
from .data import clip_samples
from .datasets.presence import check_data_dir
from .errors import ConfigError
from .features import check_clip_length, input_shape, n_frames
from .memory import Estimate, check_fits_in_memory, estimate_training
from .models import arch_entry, build_model
from .models.base import MissingWeights, missing_weights
from .results import check_results_dir
from .tracking import has_wandb_credentials, no_credentials_message

N_CLASSES = 50  # the head's width does not change what input the body accepts


def check_before_work(cfg: Config) -> None:
    """Raise a ConfigError naming the keys when W&B online has no credentials, the pretrained weights are missing
    offline, the results folder cannot take records, the clips are too short for the STFT, the architecture cannot
    take the spectrogram, a CPU run's batch cannot fit in memory, or a download was not asked for (an explicit
    data_dir that does not exist)."""
    if cfg.wandb_mode == "online" and not has_wandb_credentials():
        raise ConfigError(no_credentials_message("wandb_mode online", "pass --wandb_mode offline (its runs sync "
                                                 "later with `wandb sync`)"))
    if (missing := missing_weights(cfg)) is not None:
        raise ConfigError(weights_message(missing, cfg.arch))
    check_results_dir(cfg.results_dir)
    n_samples = clip_samples(cfg)
    check_clip_length(cfg, n_samples)
    frames = n_frames(cfg, n_samples)
    check_model_input_once(cfg, frames, N_CLASSES)
    check_fits_in_memory(cfg, frames, N_CLASSES, estimate=estimate_once)
    check_data_dir(cfg)


def weights_message(missing: MissingWeights, archs: str) -> str:
    """What is missing, why no download will fetch it, and what to do: one line, for the run or the sweep whose
    ``archs`` (names, comma-separated) need ``missing``."""
    if missing.blocked == "pretrained_path does not exist":
        return (f"pretrained_path: {missing.folder} does not exist ({archs} takes {missing.files}); give an existing "
                "one, or pass --pretrained false")
    local = ", give a local copy with --pretrained_path" if all(
        arch_entry(a).local_weights for a in archs.split(", ")) else ""
    return (f"pretrained: the weights of {archs} are not on this machine and {missing.blocked}: put {missing.files} "
            f"({missing.source}) into {missing.folder}{local}, or pass --pretrained false")


def check_model_input(cfg: Config, n_frames: int, n_classes: int) -> None:
    """Refuse, before any work, a spectrogram the architecture cannot take (too few mel bands or frames for its
    pooling), naming the keys that shape it and the smallest size the architecture accepts.

    The model is built and run on PyTorch's meta device: shapes only, no memory, no arithmetic."""
    shape = input_shape(cfg, n_frames)
    error = _forward_error(cfg, shape, n_classes)
    if error is None:
        return
    min_h = _smallest(lambda h: _forward_error(cfg, (shape[0], h, max(n_frames, 4096)), n_classes) is None)
    min_w = _smallest(lambda w: _forward_error(cfg, (shape[0], max(shape[1], 4096), w), n_classes) is None)
    if cfg.resize_to:
        keys, made, mels, frames = "arch and resize_to", f"resized to {shape[1]} x {n_frames}", "resize_to", "resize_to"
    else:
        hops = "/".join(map(str, sorted(set(cfg.hop_lengths))))
        keys, mels, frames = "arch, n_mels and hop_length", "n_mels", "a smaller hop_length"
        made = f"{cfg.n_mels} mel bands x {n_frames} frames of hop {hops} samples at {cfg.sample_rate} Hz"
    raise ConfigError(
        f"{keys}: {cfg.arch} cannot take a {' x '.join(map(str, shape))} spectrogram ({made}): {error}. It needs "
        f"at least {min_h} mel bands ({mels}) and {min_w} frames ({frames})")


MODEL_CHECKS = "model-checks"  # folder under cache_dir: what the meta-device passes found, per model and input


def check_model_input_once(cfg: Config, n_frames: int, n_classes: int) -> None:
    """:func:`check_model_input`, skipped when the same model took the same input before (a file under
    ``cache_dir``): a meta-device forward costs about 1.5 s a run (its first imports torch._dynamo), while a
    sweep checks the same few shapes again and again. Only passes are kept: a refusal is worked out anew, with
    its smallest sizes."""
    _remembered(_checks_file(cfg, n_frames, n_classes, "input"), lambda: check_model_input(cfg, n_frames, n_classes)
                or True)


def estimate_once(cfg: Config, n_frames: int, n_classes: int, batch_size: int | None = None) -> Estimate:
    """:func:`~audiosweep.memory.estimate_training`, kept under ``cache_dir`` per model, input and batch size (its
    meta-device forward costs as much as the input check's); the verdict against this machine's memory is made
    anew each time."""
    bs = cfg.batch_size if batch_size is None else batch_size
    return Estimate(*_remembered(_checks_file(cfg, n_frames, n_classes, f"memory-bs{bs}"),
                                 lambda: dataclasses.astuple(estimate_training(cfg, n_frames, n_classes, bs))))


def model_key(cfg: Config, n_frames: int, n_classes: int) -> str:
    """What decides how the model meets its input: the architecture, the input shape, the classes, the entry's
    own knobs (what :func:`build_model` passes to the builder), and the code that builds it (the versions of
    torch, torchvision and timm, and our model modules' sizes and modification times)."""
    models = Path(__file__).with_name("models")
    code = sorted((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in models.glob("*.py"))
    what = {"arch": cfg.arch, "shape": input_shape(cfg, n_frames), "n_classes": n_classes,
            "knobs": {k: getattr(cfg, k) for k in arch_entry(cfg.arch).knobs}, "code": code,
            "versions": [_version(p) for p in ("torch", "torchvision", "timm")]}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _checks_file(cfg: Config, n_frames: int, n_classes: int, what: str) -> Path:
    return Path(cfg.cache_dir).expanduser() / MODEL_CHECKS / f"{model_key(cfg, n_frames, n_classes)}-{what}.json"


def _remembered(path: Path, compute):
    """The JSON value in ``path``, or ``compute()``'s, then written there (atomically; a folder that cannot be
    written, or a file that cannot be read, only costs the computation)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        pass
    value = compute()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(value))
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
    return value


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


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
