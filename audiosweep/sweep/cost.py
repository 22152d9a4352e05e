"""What a sweep costs before it runs: device-hours from the epoch times that earlier runs' records measured.

A run of architecture A with input shape S on device D is estimated from the finished and failed records of runs
of A and S on D (their history holds each training epoch's seconds): the median epoch time times the run's epochs
(``freeze_epochs`` + ``n_epochs``), plus the median time the measured runs spent outside their epochs (start-up,
features, evaluation). Batch size, dataset size and augmentation are not modelled: the estimate holds for runs
like the measured ones. ``sweep check --estimate`` prints it per file and in total; the runner's ETA starts from it
before any run of the sweep has ended (:func:`~audiosweep.sweep.runner.eta_seconds`).
"""

from __future__ import annotations

import platform
import shlex
import statistics
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import results
from ..config import ConfigError, merge
from ..errors import RecordError

Key = tuple[str, str, tuple[int, ...]]  # device, arch, input shape


@dataclass(frozen=True)
class Measured:
    """What records of one (device, arch, input shape) measured: the median seconds of an epoch and outside the
    epochs of a run, from ``epochs`` epochs of ``runs`` runs."""

    epoch_s: float
    fixed_s: float
    runs: int
    epochs: int


def device_label(env: dict[str, Any] | None) -> str | None:
    """The device a record's run trained on: its GPU's name, or ``cpu on HOST`` (CPU speed is the machine's)."""
    if not env or not env.get("device"):
        return None
    return env.get("gpu") or f"cpu on {env.get('hostname')}"


def this_device(device: str = "auto", init_cuda: bool = True) -> str | None:
    """The device runs with config ``device`` would train on here, named as :func:`device_label` names it. Without
    ``init_cuda`` (the runner, whose runs get the GPUs) a GPU is named by ``nvidia-smi``, and None when it cannot
    be."""
    import torch

    if device == "cpu" or not torch.cuda.is_available():  # is_available does not initialise CUDA
        return f"cpu on {platform.node()}"
    index = int(device.partition(":")[2] or 0)
    if init_cuda:
        return torch.cuda.get_device_name(index)
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader", f"--id={index}"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def shape_key(config: dict[str, Any]) -> tuple[str, tuple[int, ...]] | None:
    """(arch, model input shape) of a run's config; None when the config is not valid today (an old record)."""
    from ..features import input_shape

    try:
        cfg = merge([config])
    except (ConfigError, TypeError):
        return None
    return cfg.arch, tuple(input_shape(cfg))


def run_epochs(config: dict[str, Any]) -> int:
    """Training epochs of a run with effective ``config`` (a record's, or a plan's): the frozen ones first (0
    without pretrained weights, as effective configs say)."""
    return (config.get("freeze_epochs") or 0) + config["n_epochs"]


class CostModel:
    """Seconds per run from measured epoch times, by (device, arch, input shape)."""

    def __init__(self, measured: dict[Key, Measured]):
        self.measured = measured

    @classmethod
    def from_records(cls, root: Path) -> CostModel:
        """The epoch times of the records under ``root`` (searched recursively; unreadable files skipped)."""
        epochs: dict[Key, list[float]] = {}
        fixed: dict[Key, list[float]] = {}
        runs: dict[Key, int] = {}
        shapes: dict[str, tuple[str, tuple[int, ...]] | None] = {}  # by config id: each config's shape once
        for path in results.record_files(root) if root.is_dir() else []:
            try:
                rec = results.Record.load(path)
            except (RecordError, OSError, ValueError):
                continue
            times = [row["time_s"] for row in rec.history if isinstance(row.get("time_s"), (int, float))]
            device = device_label(rec.env)
            if not times or device is None:
                continue
            cid = results.config_id(rec.config)
            if cid not in shapes:
                shapes[cid] = shape_key(rec.config)
            if shapes[cid] is None:
                continue
            key = (device, *shapes[cid])
            epochs.setdefault(key, []).extend(times)
            runs[key] = runs.get(key, 0) + 1
            if rec.summary.wall_time_s is not None:
                fixed.setdefault(key, []).append(max(0.0, rec.summary.wall_time_s - sum(times)))
        return cls({k: Measured(statistics.median(v), statistics.median(fixed.get(k) or [0.0]), runs[k], len(v))
                    for k, v in epochs.items()})

    def run_seconds(self, config: dict[str, Any], device: str) -> float | None:
        """Estimated seconds of the run with effective ``config`` on ``device``; None without matching records."""
        shape = shape_key(config)
        m = None if shape is None else self.measured.get((device, *shape))
        return None if m is None else m.fixed_s + run_epochs(config) * m.epoch_s


@dataclass
class Estimate:
    """A sweep file's estimate: its runs, the seconds of those with matching records, and those without."""

    runs: int
    seconds: float
    unknown: list[dict[str, Any]]  # configs without matching records, in plan order
    used: dict[Key, Measured]


def estimate(model: CostModel, configs: Iterable[dict[str, Any]], device: str) -> Estimate:
    """The estimate of the runs with effective ``configs`` on ``device``."""
    out = Estimate(0, 0.0, [], {})
    for config in configs:
        out.runs += 1
        shape = shape_key(config)
        key = None if shape is None else (device, *shape)
        if key not in model.measured:
            out.unknown.append(config)
            continue
        m = out.used[key] = model.measured[key]
        out.seconds += m.fixed_s + run_epochs(config) * m.epoch_s
    return out


def estimate_lines(path: str, est: Estimate, device: str, results_dir: Path,
                   calibration: list[str] | None) -> list[str]:
    """What ``check --estimate`` prints for one file: the device-hours of the runs with matching records, what they
    are based on, and for runs without, the shapes missing and a short calibration run to make."""
    known = est.runs - len(est.unknown)
    lines = [f"  estimate: {known} of {est.runs} runs, {est.seconds / 3600:.2f} device-hours on {device}"
             + ("" if not est.unknown else f"; {len(est.unknown)} runs without an estimate")]
    for (_, arch, shape), m in est.used.items():
        lines.append(f"    {arch} {list(shape)}: {m.epoch_s:.2f} s an epoch, {m.fixed_s:.1f} s a run besides "
                     f"(medians of {m.epochs} epochs of {m.runs} records)")
    if est.unknown:
        missing = dict.fromkeys(shape_key(c) for c in est.unknown)
        listed = ", ".join(f"{s[0]} {list(s[1])}" for s in missing if s is not None)
        lines.append(f"    no records of {listed} on {device} under {results_dir}")
        if calibration:
            lines.append(f"    measure them with a short calibration run of the first such run: "
                         f"{shlex.join(calibration)}")
    return lines


def calibration_command(command: list[str], results_dir: Path) -> list[str]:
    """``command`` (a run's train.py command line) as a 2-epoch run writing its record under ``results_dir``
    (where ``--estimate`` looks), without W&B."""
    return [*command, "--n_epochs=2", "--freeze_epochs=0", f"--results_dir={results_dir / 'calibration'}",
            "--wandb_mode=disabled"]
