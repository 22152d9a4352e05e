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
