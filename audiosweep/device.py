"""Where and in what precision a run computes: its device, its training precision, how resident features are stored,
and ``torch.compile``."""

from __future__ import annotations

import torch
from torch import nn

from .config import Config
from .errors import UserError


def resolve_device(cfg: Config) -> torch.device:
    if cfg.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device={cfg.device}, but no CUDA GPU is visible; use --device cpu or auto")
    return torch.device(cfg.device)


def available_devices() -> list[str]:
    """The devices this machine can compute on: the CPU, each visible CUDA GPU, Apple's MPS."""
    mps = torch.backends.mps.is_available()
    return ["cpu", *(f"cuda:{i}" for i in range(torch.cuda.device_count())), *(["mps"] if mps else [])]


def usable_device(name: str) -> torch.device:
    """The device ``name`` (auto, cpu, cuda, cuda:N, mps) if this machine has it, checked before anything is
    loaded on it; a UserError naming it and the devices there are otherwise (torch's own errors come late, as
    tracebacks about drivers)."""
    here = available_devices()
    gpus = [d for d in here if d.startswith("cuda")]
    if name == "auto":
        return torch.device("cuda" if gpus else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:  # torch's message lists 20 device types, most of which we cannot run on
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps"):
        raise UserError(f"device {name}: not a device; give auto, cpu, cuda, cuda:N or mps (here: {', '.join(here)})")
    if device.type == "cuda" and not gpus:
        raise UserError(f"device {name}: no CUDA GPU is visible (here: {', '.join(here)}); use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= len(gpus):
        raise UserError(f"device {name}: only {len(gpus)} CUDA GPU(s) are visible ({', '.join(gpus)}); give one "
                        "of them")
    if device.type == "mps" and "mps" not in here:
        raise UserError(f"device {name}: no Apple MPS device here (here: {', '.join(here)}); use --device cpu")
    return device


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
