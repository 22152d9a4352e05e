"""Memory of a training run: an estimate of what one batch takes, a refusal before any work of a CPU run that
cannot fit, and out-of-memory errors turned into a message saying what to change."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch
from torch import nn

from .config import Config
from .device import resolve_device, resolve_precision
from .errors import ConfigError, OutOfMemory, UserError
from .features import input_shape, mel_bands
from .models import build_model

FLOAT32_BYTES = 4
# Per parameter in fp32 training: the weight, its gradient and Adam's two moments (fastai's default optimiser).
PARAMETER_COPIES = 4
# Messages of out-of-memory errors that are plain RuntimeErrors: the CPU allocator, CUDA, MPS, cuBLAS, cuDNN.
OOM_MESSAGES = ("out of memory", "can't allocate memory", "not enough memory", "CUBLAS_STATUS_ALLOC_FAILED",
                "CUDNN_STATUS_ALLOC_FAILED")
GIB = 1 << 30


@dataclass(frozen=True)
class Estimate:
    """Bytes one training batch needs in float32, as :func:`estimate_training` counts them."""

    batch_size: int
    activations: int  # the input batch plus every leaf module's new outputs: what autograd keeps for backward
    parameters: int  # the weights alone

    @property
    def total(self) -> int:
        return self.activations + PARAMETER_COPIES * self.parameters

    def largest_batch(self, budget: int) -> int:
        """The largest batch size whose estimate stays within ``budget`` bytes (activations grow linearly)."""
        per_clip = self.activations / self.batch_size
        return max(0, math.floor((budget - PARAMETER_COPIES * self.parameters) / per_clip))


def estimate_training(cfg: Config, n_frames: int, n_classes: int, batch_size: int | None = None) -> Estimate:
    """Float32 memory of one training step of ``cfg.arch`` on a (batch_size, n_channels, n_mels, n_frames)
    batch, from one forward pass on PyTorch's meta device (shapes only: no memory, no arithmetic).

    Counted: the input batch and the output of every leaf module (convolutions, norms, pools, linear layers) in
    training mode, which is roughly what autograd keeps for backward (within a few percent for ResNets), plus
    ``PARAMETER_COPIES`` x the parameters (weights, gradients, Adam's two moments). Not counted: outputs that are
    their input or a view of it (in-place ReLUs, Flatten, Identity), tensors made outside modules (DenseNet's
    concatenations: it is then about 1.5x low; attention matrices), backward's transient buffers, the data.
    So it errs low: what it says cannot fit does not."""
    batch_size = cfg.batch_size if batch_size is None else batch_size
    shape = input_shape(cfg, n_frames)
    with torch.device("meta"):
        model = build_model(cfg, n_classes, shape, pretrained=False).model.train()
        x = torch.zeros(batch_size, *shape)
        activations = _leaf_output_bytes(model, x) + _bytes(x)
    return Estimate(batch_size, activations, sum(_bytes(p) for p in model.parameters()))


def _leaf_output_bytes(model: nn.Module, x: torch.Tensor) -> int:
    total = 0

    def count(module, inputs, output):
        nonlocal total
        ins = {id(t) for t in inputs if isinstance(t, torch.Tensor)}
        total += sum(_bytes(t) for t in _tensors(output) if id(t) not in ins and not t._is_view())

    leaves = [m for m in model.modules() if next(m.children(), None) is None]
    handles = [m.register_forward_hook(count) for m in leaves]
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    return total


def _tensors(out) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _tensors(o)]
    if isinstance(out, dict):
        return [t for o in out.values() for t in _tensors(o)]
    return []


def _bytes(t: torch.Tensor) -> int:
    # float32 on the CPU whatever dtype the meta tensor has (integer outputs, e.g. indices, are rare and small)
    return t.numel() * FLOAT32_BYTES


def machine_memory() -> int | None:
    """Total physical memory in bytes (not what is free now, nor a container's limit); None where unknown."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # no sysconf (Windows) or no such name
        return None


def check_fits_in_memory(cfg: Config, n_frames: int, n_classes: int, estimate=None) -> None:
    """Refuse, before any work, a CPU run whose :func:`estimate_training` exceeds the machine's memory, with a
    ConfigError naming batch_size and arch, the estimate, the memory and a batch_size/accumulate that fits.
    Not checked: GPU runs (their out-of-memory errors are explained by :func:`explain_oom`) and ``finetune: head``
    with a pretrained body, whose frozen body keeps no activations for backward. ``estimate``: a function like
    :func:`estimate_training` (the default), e.g. one that keeps its results."""
    try:
        if resolve_device(cfg).type != "cpu":
            return
    except UserError:  # cuda asked for but absent: the run fails with that message, not this one
        return
    effective = cfg.effective_dict()
    if effective["pretrained"] and effective["finetune"] == "head":  # a frozen body keeps nothing for backward
        return
    memory = machine_memory()
    if memory is None:
        return
    est = (estimate or estimate_training)(cfg, n_frames, n_classes)
    if est.total <= memory:
        return
    # Suggestions aim at half the memory: the waveforms, features and backward's transient buffers need room too.
    fits = est.largest_batch(memory // 2)
    if fits >= 2:
        b, k = _split(cfg.batch_size * cfg.accumulate, fits)
        todo = (f"use a smaller batch_size, e.g. --batch_size {b} --accumulate {k} (gradients of {k} batches add "
                f"up before each step: an effective batch of {b * k} clips)")
    else:
        todo = ("even batch_size=2 does not fit: use a smaller arch, fewer mel bands (n_mels, resize_to) or fewer "
                "frames (a larger hop_length, resize_to), or a GPU")
    weights = PARAMETER_COPIES * est.parameters
    raise ConfigError(
        f"batch_size and arch: training {cfg.arch} with batch_size={cfg.batch_size} on {cfg.n_channels} x "
        f"{mel_bands(cfg)} x {n_frames} spectrograms needs about {est.total / GIB:.1f} GiB on the CPU "
        f"({est.activations / GIB:.1f} GiB of activations kept for backward, {weights / GIB:.1f} GiB of weights, "
        f"gradients and Adam moments), more than this machine's {memory / GIB:.1f} GiB of memory: {todo}")


def _split(effective: int, largest: int) -> tuple[int, int]:
    """(batch_size, accumulate) with batch_size in 2..largest and batch_size x accumulate = ``effective`` where
    a divisor allows, else just above it."""
    first = math.ceil(effective / largest)
    k = next((k for k in range(first, effective // 2 + 1) if effective % k == 0), first)
    return math.ceil(effective / k), k


def is_oom(e: BaseException) -> bool:
    """Whether ``e``, or an exception it was raised from, is an out-of-memory error (CUDA, CPU allocator)."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, (torch.OutOfMemoryError, MemoryError)):
            return True
        if isinstance(e, RuntimeError) and any(m in str(e) for m in OOM_MESSAGES):
            return True
        e = e.__cause__
    return False


def explain_oom(e: BaseException, cfg: Config) -> BaseException:
    """An :class:`~audiosweep.errors.OutOfMemory` (recorded with reason "out of memory", no traceback) naming
    the batch size and arch that failed and what to change, when ``e`` is an out-of-memory error; else ``e``."""
    if isinstance(e, OutOfMemory) or not is_oom(e):
        return e
    # fastai re-raises an error from a callback with a first line of its own: keep the error's own line
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    first = next((line for line in lines if not line.startswith("Exception occured in `")), type(e).__name__)
    acc, bs = cfg.accumulate, cfg.batch_size
    try:
        device = resolve_device(cfg)
    except UserError:
        device = torch.device("cpu")
    precision = resolve_precision(cfg, device)
    todo = []
    if bs >= 4:
        todo.append(f"a smaller --batch_size with gradient accumulation, e.g. --batch_size {bs // 2} --accumulate "
                    f"{acc * 2} (the effective batch stays batch_size x accumulate = {bs * acc} clips)")
    if precision == "fp32" and device.type == "cuda":
        todo.append("--precision bf16 (or fp16), which halves activation memory")
    todo.append("a smaller arch, fewer mel bands (n_mels) or a larger hop_length")
    accumulated = f", accumulate={acc}" if acc > 1 else ""
    return OutOfMemory(f"out of memory with batch_size={bs}{accumulated}, arch={cfg.arch}, {precision} on {device} "
                       f"({first}); try {'; or '.join(todo)}")
