"""Where and in what precision a run computes."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from audiosweep.config import merge
from audiosweep.device import compile_model, feature_dtype, resolve_device, resolve_precision, usable_device
from audiosweep.errors import UserError


def test_features_are_stored_in_float32_on_cpu():
    assert feature_dtype(merge([]), torch.device("cpu")) == torch.float32
    assert feature_dtype(merge([]), torch.device("cuda")) == torch.float16
    assert feature_dtype(merge([{"precision": "fp32"}]), torch.device("cuda")) == torch.float32


def test_the_cpu_trains_in_fp32_and_a_missing_gpu_is_named(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device(merge([])) == torch.device("cpu")
    assert resolve_precision(merge([{"precision": "bf16"}]), torch.device("cpu")) == "fp32"
    with pytest.raises(UserError, match="device=cuda, but no CUDA GPU is visible"):
        resolve_device(merge([{"device": "cuda"}]))


@pytest.mark.parametrize(("name", "gpus", "mps", "expected"), [
    ("cpu", 0, False, "cpu"), ("auto", 0, False, "cpu"), ("auto", 2, False, "cuda"), ("cuda:1", 2, False, "cuda:1"),
    ("mps", 0, True, "mps"), ("cuda:2", 2, False, "only 2 CUDA GPU(s) are visible (cuda:0, cuda:1)"),
    ("cuda", 0, True, "no CUDA GPU is visible (here: cpu, mps)"), ("mps", 1, False, "no Apple MPS device here"),
    ("xla", 0, False, "not a device; give auto, cpu, cuda, cuda:N or mps (here: cpu)"), ("gpu", 0, False, "not a"),
])
def test_a_device_is_checked_against_the_machines(monkeypatch, name, gpus, mps, expected):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    if " " in expected:  # a message, not a device
        with pytest.raises(UserError, match=f"^device {name}: .*{re.escape(expected)}"):
            usable_device(name)
    else:
        assert usable_device(name) == torch.device(expected)


@pytest.mark.parametrize("supported, auto", [(True, "bf16"), (False, "fp16")])
def test_auto_precision_on_a_gpu_is_bf16_where_supported(monkeypatch, supported, auto):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: supported)
    assert resolve_precision(merge([]), torch.device("cuda")) == auto
    assert resolve_precision(merge([{"precision": "fp32"}]), torch.device("cuda")) == "fp32"


def test_compiling_wraps_the_forward_and_keeps_the_module(monkeypatch):
    """The bound forward is compiled (``model.compile()`` would silently run nn.Sequential eagerly); the module
    stays, so fastai's splitters still index it. Real compilation takes about a minute on a CPU: a stand-in."""
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda forward: compiled.append(forward) or (lambda x: "compiled"))
    model = nn.Sequential(nn.Linear(2, 2))
    assert compile_model(model) is model and isinstance(model[0], nn.Linear)
    assert compiled[0].__self__ is model and model(torch.zeros(1, 2)) == "compiled"
