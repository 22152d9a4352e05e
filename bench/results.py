"""What one benchmark run measured: the seconds at each sample rate (:class:`RateResult`), each architecture's
training throughput (:class:`TrainResult`) and the whole run with what it ran on (:class:`BenchResult`).
bench/pipeline.py fills them, bench/report.py formats them."""

from __future__ import annotations

import argparse
import dataclasses
import datetime

import torch

from audiosweep.config import Config
from audiosweep.data import ESC50_CLIPS, ClipSpec
from bench.augmented import AugResult
from bench.fair import FairTimes
from bench.measure import Mem, PipelineTimes


@dataclasses.dataclass
class RateResult:
    """Seconds measured at one sample rate; ``cfg`` is the config at that rate."""

    cfg: Config
    decode_cold: float  # ours: decode, resample, cache write
    decode_warm: float  # ours: cache read
    features: float  # ours: log-mels and normalisation
    gather: list[float]  # ours: batch gathering, per measured epoch
    fair: FairTimes  # the fair baseline: spectrograms once in workers, served by persistent workers
    baseline: PipelineTimes  # per-item, one process, scaled to all clips
    workers_baseline: PipelineTimes  # per-item in a DataLoader with ``workers`` processes, scaled
    workers: int
    aug: AugResult | None = None

    def ours(self, cold: bool) -> PipelineTimes:
        return PipelineTimes.of(self.gather, one_time=(self.decode_cold if cold else self.decode_warm) + self.features)


@dataclasses.dataclass
class TrainResult:
    """One architecture's training throughput and the peak memory of its fit."""

    train_sps: float  # samples/s
    eval_sps: float
    mem: Mem


@dataclasses.dataclass
class BenchResult:
    """Everything one benchmark run measured and what it ran on; :func:`bench.report.report` formats it."""

    cfg: Config
    opts: argparse.Namespace  # the benchmark options, train_bs and train_batches resolved
    command: str
    device: torch.device
    machine: str  # the GPU, or the CPU model and threads
    origin: str  # where the clips come from
    n_train: int
    n_valid: int
    n_baseline: int  # clips the baseline ran on
    spec: ClipSpec = ESC50_CLIPS  # the dataset's clips, as the run makes them
    started: datetime.datetime = dataclasses.field(default_factory=lambda: datetime.datetime.now().astimezone())
    load: tuple[float, float] | None = None  # 1-min load average at start and end
    rates: dict[int, RateResult] = dataclasses.field(default_factory=dict)
    train: dict[str, TrainResult | None] = dataclasses.field(default_factory=dict)  # None: out of memory
    peaks: dict[str, Mem] = dataclasses.field(default_factory=dict)
