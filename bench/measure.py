"""How the benchmark measures: wall time with the device synchronised, epochs (first and steady), peak memory per
stage, the time of each training and validation batch of a fastai fit, what machine it ran on, and the tables."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from fastai.callback.core import Callback


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device):
    """(result of ``fn()``, seconds), the device synchronised on both sides."""
    sync(device)
    t = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - t


@dataclasses.dataclass
class PipelineTimes:
    first: float  # seconds of the first epoch, one-time work included
    steady: float  # seconds of one later epoch

    def total(self, epochs: int) -> float:
        return self.first + (epochs - 1) * self.steady

    @classmethod
    def of(cls, epochs: list[float], scale: float = 1.0, one_time: float = 0.0) -> PipelineTimes:
        """From measured epochs: the first (plus ``one_time``), then the median of the others (robust to a busy
        machine's stalls); epochs x ``scale``."""
        return cls(one_time + epochs[0] * scale, statistics.median(epochs[1:]) * scale)


def cores() -> int:
    """CPU cores this process may run on: the workers of the multi-worker baselines."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclasses.dataclass
class Mem:
    """Peak memory of a stage in MiB, and how much of it the stage added to what was in use when it began."""

    host: float
    host_added: float
    gpu: float | None = None
    gpu_added: float | None = None

    def __str__(self) -> str:
        text = f"host {self.host:,.0f} MiB (+{self.host_added:,.0f})"
        return text if self.gpu is None else f"{text}, GPU {self.gpu:,.0f} MiB (+{self.gpu_added:,.0f})"


@contextlib.contextmanager
def peak_memory(into: dict, name: str, device: torch.device):
    """Puts the ``with`` block's peak memory in ``into[name]``: host peak resident set (VmHWM, reset through
    /proc/self/clear_refs where Linux allows it, else the peak since the start; without /proc, ``resource``'s)
    and, on a GPU, ``torch.cuda.max_memory_allocated``."""

    def host(key: str) -> float:
        with contextlib.suppress(OSError, StopIteration):
            lines = Path("/proc/self/status").read_text().splitlines()
            return next(int(ln.split()[1]) / 1024 for ln in lines if ln.startswith(key))
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if sys.platform == "darwin" else 1024)

    gpu = device if device.type == "cuda" else None
    if gpu:
        torch.cuda.reset_peak_memory_stats(gpu)
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
    host0, gpu0 = host("VmRSS:"), torch.cuda.memory_allocated(gpu) / 2**20 if gpu else 0.0
    yield
    peak_host, peak_gpu = host("VmHWM:"), torch.cuda.max_memory_allocated(gpu) / 2**20 if gpu else None
    into[name] = Mem(peak_host, max(0.0, peak_host - host0), peak_gpu,
                     None if peak_gpu is None else max(0.0, peak_gpu - gpu0))


class BatchTimes(Callback):
    """Seconds of every training and validation batch but the first of each phase (the warm-up, which also
    compiles), the device synchronised on both sides."""

    order = -20  # first: the clock starts before MixUp and autocast, and stops before the Recorder's bookkeeping

    def __init__(self, device: torch.device):
        self.dev, self.times = device, {True: [], False: []}

    def before_batch(self):
        sync(self.dev)
        self.t0 = time.perf_counter()

    def after_batch(self):
        sync(self.dev)
        if self.iter > 0:
            self.times[self.training].append(time.perf_counter() - self.t0)


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    lines = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").is_file() else []
    model = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), platform.machine())
    return f"{model}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads"


def table(rows: list[list], head: list[str]) -> list[str]:
    """Aligned text columns, the first left-aligned; numbers are seconds (:func:`secs`)."""
    rows = [[c if isinstance(c, str) else secs(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    return ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
            for r in [head, ["-" * w for w in widths], *rows]]


def secs(s: float) -> str:
    return f"{s:,.0f}" if s >= 100 else f"{s:.1f}" if s >= 1 else f"{s:.3g}"


def ratio_row(name: str, base: PipelineTimes, ours: PipelineTimes, epochs: int) -> list[str]:
    """A table row: ``base`` over ``ours`` for the first epoch, the steady epoch and an ``epochs`` run."""
    steady = base.steady / ours.steady
    return [name, f"{base.first / ours.first:.1f}x", f"{steady:.1f}x" if steady < 10 else f"{steady:.0f}x",
            f"{base.total(epochs) / ours.total(epochs):.1f}x"]


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)
