"""Data-pipeline and training-throughput benchmark: our path against a per-item pipeline like the report's.

Ours is train.py's: decode once into the waveform cache, log-mels of all clips once (``compute_features``,
``normalize``), one index gather per batch (``make_dls``); the baseline reads, resamples, mel-transforms and
normalises every clip in every epoch. Training runs through ``build_learner`` on random input of the real size.
The last line is the data-time ratio over an ``--epochs`` run, cold cache: ``ratio: <N>x``. See bench/README.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import platform
import shlex
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torchaudio

from audiosweep.config import Config, ConfigError, build_parser, merge, parse_known
from audiosweep.data import clip_problem, clip_samples, fingerprint, load_waveforms, official_metadata
from audiosweep.errors import UserError
from audiosweep.features import compute_features, n_frames, normalize
from audiosweep.models import ARCHS
from audiosweep.synthetic import make_synthetic_esc50
from audiosweep.training import build_learner, feature_dtype, make_dls, resolve_device, resolve_precision
from bench.measure import BatchTimes, Mem, machine, peak_memory, timed
from bench.per_item import PerItemPipeline

SLICE = Path(__file__).resolve().parents[2] / "shared" / "esc50-slice"
N_CLASSES = 50
# Our per-epoch batch gathering is cheap but noisy on the CPU (page faults on fresh batch tensors): average it
# over at least this many epochs (the first, then the steady state).
OURS_MIN_EPOCHS = 6


def build_bench_parser() -> argparse.ArgumentParser:
    """train.py's parser (every Config key, ``--config FILE``) plus the benchmark's own options."""
    p = build_parser()
    p.prog, p.description = "bench/pipeline.py", (
        "Time our data pipeline against a per-item one like the report's, and training throughput (bench/README.md).\n"
        f"--data_dir: the real clips (default here: {SLICE} if present, else data/ESC-50; synthetic if neither).")
    g = p.add_argument_group("benchmark")
    g.add_argument("--n-clips", type=int, default=2000, help="clips of the ESC-50-shaped dataset (default: 2000)")
    g.add_argument("--baseline-clips", type=int, default=200,
                   help="clips the per-item baseline runs on; scaled linearly to --n-clips (default: 200)")
    g.add_argument("--measure-epochs", type=int, default=2, help="epochs measured: the first, then the steady state "
                   f"(default: 2, at least 2; our path's batch gathering: at least {OURS_MIN_EPOCHS})")
    g.add_argument("--epochs", type=int, default=80, help="length of the run the totals are for (default: 80)")
    g.add_argument("--rates", default="44100,22050", help="sample rates in Hz; the config's sample_rate first, the "
                   "others keep the durations of hop, window and n_fft, f_max at most Nyquist (default: 44100,22050)")
    g.add_argument("--archs", default="resnet18,densenet161",
                   help="architectures whose training throughput is measured (default: resnet18,densenet161)")
    g.add_argument("--skip-training", action="store_true", default=False, help="do not measure training throughput")
    g.add_argument("--train-batches", type=int, default=None, help="timed training batches, and validation "
                   "batches, per architecture, each after one warm-up (default: 2 on CPU, 20 on GPU)")
    g.add_argument("--train-bs", type=int, default=None, help="training batch size of the throughput runs; "
                   "validation batches are twice that, as in a run (default: batch_size on GPU, at most 4 on CPU)")
    g.add_argument("--workdir", default=None,
                   help="folder for the dataset links and the waveform cache (default: a temporary folder, removed)")
    g.add_argument("--data-dir", dest="data_dir", help="same as --data_dir")
    return p


def parse(argv: list[str] | None) -> tuple[Config, argparse.Namespace, dict]:
    """The validated Config, the benchmark options (``rates``, ``archs`` as lists) and the config keys set."""
    cfg, explicit, extras = parse_known(argv, build_bench_parser())
    opts = argparse.Namespace(**extras)
    problems = [f"--{k.replace('_', '-')} must be >= {lo}, got {v}"
                for k, lo in (("n_clips", 2), ("baseline_clips", 2), ("measure_epochs", 2), ("epochs", 1),
                              ("train_batches", 1), ("train_bs", 2)) if (v := getattr(opts, k)) is not None and v < lo]
    try:
        opts.rates = list(dict.fromkeys([cfg.sample_rate, *(int(r) for r in opts.rates.split(",") if r.strip())]))
    except ValueError:
        problems.append(f"--rates: expected comma-separated integers in Hz, got {opts.rates!r}")
        opts.rates = []
    for rate in opts.rates:
        try:
            at_rate(cfg, rate)
        except (ConfigError, ValueError, ZeroDivisionError) as e:
            problems.append(f"--rates: {rate} Hz gives an invalid spectrogram: {' '.join(str(e).split())}")
    opts.archs = [a.strip() for a in opts.archs.split(",") if a.strip()]
    problems += [f"--archs: unknown architecture {a!r}; known: {', '.join(ARCHS)}" for a in opts.archs
                 if a not in ARCHS]
    if problems:
        raise ConfigError("invalid benchmark options:\n  " + "\n  ".join(problems))
    return cfg, opts, explicit


def at_rate(cfg: Config, rate: int) -> Config:
    """``cfg`` at another sample rate: hop, window(s) and n_fft keep their durations, f_max stops at Nyquist."""
    if rate == cfg.sample_rate:
        return cfg
    k = rate / cfg.sample_rate
    n_fft = max(16, round(cfg.n_fft * k))
    if cfg.n_fft & (cfg.n_fft - 1) == 0:  # a power of two stays one
        n_fft = 1 << (n_fft - 1).bit_length()
    wins = [min(n_fft, max(1, round(w * k))) for w in cfg.win_lengths]
    d = cfg.to_dict() | dict(sample_rate=rate, n_fft=n_fft, hop_length=max(1, round(cfg.hop_samples * k)),
                             hop_length_ms=None, f_max=min(cfg.f_max, rate / 2))
    d |= {"stacked_win_lengths": wins} if cfg.stacked_win_lengths else {"win_length": wins[0], "win_length_ms": None}
    return merge([d])


def input_shape(cfg: Config) -> tuple[int, int, int]:
    """(channels, n_mels, frames) of one 5 s clip's features: the model's input."""
    return cfg.n_channels, cfg.n_mels, n_frames(cfg, clip_samples(cfg.sample_rate))


def make_tree(work: Path, data_dir: Path, n_clips: int):
    """An ESC-50 tree at ``work/esc50`` of ``n_clips`` official file names spread over all folds, symbolic links to
    the valid clips of ``data_dir`` in turn (synthetic ones if none): (tree, its metadata rows, the clips' origin)."""
    valid = (p for p in sorted((data_dir / "audio").glob("*.wav")) if clip_problem(p) is None)
    sources, origin = [p for _, p in zip(range(n_clips), valid)], f"real clips of {data_dir}"
    if not sources:
        log(f"no valid ESC-50 clips under {data_dir / 'audio'}; using synthetic clips instead")
        sources = sorted((make_synthetic_esc50(work / "synthetic", per_class_per_fold=1) / "audio").glob("*.wav"))
        origin = f"synthetic clips (none under {data_dir})"
    meta = official_metadata()
    meta = meta.iloc[np.linspace(0, len(meta) - 1, min(n_clips, len(meta))).round().astype(int)].reset_index(drop=True)
    (work / "esc50" / "audio").mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(meta.filename):
        if not (link := work / "esc50" / "audio" / name).exists():
            link.symlink_to(sources[i % len(sources)].resolve())
    return work / "esc50", meta, f"{len(sources)} {origin}"


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


@dataclasses.dataclass
class PipelineTimes:
    first: float  # seconds of the first epoch, one-time work included
    steady: float  # seconds of one later epoch

    def total(self, epochs: int) -> float:
        return self.first + (epochs - 1) * self.steady


@dataclasses.dataclass
class RateResult:
    """Seconds measured at one sample rate; ``cfg`` is the config at that rate."""

    cfg: Config
    decode_cold: float  # ours: decode, resample, cache write
    decode_warm: float  # ours: cache read
    features: float  # ours: log-mels and normalisation
    gather: list[float]  # ours: batch gathering, per measured epoch
    baseline: PipelineTimes  # scaled to all clips

    def ours(self, cold: bool) -> PipelineTimes:
        first = (self.decode_cold if cold else self.decode_warm) + self.features + self.gather[0]
        return PipelineTimes(first, sum(self.gather[1:]) / len(self.gather[1:]))


def measure_rate(cfg: Config, tree: Path, meta, train_idx: torch.Tensor, valid_idx: torch.Tensor, base_rows, k_train,
                 work: Path, n_epochs: int, device: torch.device, peaks: dict) -> RateResult:
    """Our path on every clip, and the baseline on ``base_rows`` (the first ``k_train`` of them training clips), at
    ``cfg.sample_rate``; each stage's peak memory goes to ``peaks``."""
    rate, fp, targets = cfg.sample_rate, fingerprint(tree, meta), torch.tensor(meta.target.to_numpy())

    def load():
        return load_waveforms(tree, meta, rate, work / f"cache-{rate}", fp, cfg.num_workers)

    def warm_load():
        cached = load()
        return torch.empty_like(cached).copy_(cached)  # the cache is memory-mapped: read every page, as features do

    def our_epoch():
        for loader in (dls.train, dls.valid):
            for _ in loader:
                pass

    log(f"{rate} Hz: our path on {len(meta)} clips")
    with peak_memory(peaks, f"ours {rate} Hz, decode (cold cache)", device):
        decode_cold = timed(load, device)[1]
    wavs, decode_warm = timed(warm_load, device)
    with peak_memory(peaks, f"ours {rate} Hz, features + normalise", device):
        (feats, stats), features = timed(lambda w=wavs: normalize(compute_features(
            w, cfg, device, out_dtype=feature_dtype(cfg, device)), cfg.normalize, train_idx), device)
        del wavs
    dls = make_dls(feats, targets, train_idx, valid_idx, cfg, channels_last=device.type == "cuda", device=device)
    del feats
    with peak_memory(peaks, f"ours {rate} Hz, batches from resident features", device):
        gather = [timed(our_epoch, device)[1] for _ in range(max(n_epochs, OURS_MIN_EPOCHS))]
    log(f"{rate} Hz: per-item baseline on {len(base_rows)} clips")
    pipe = PerItemPipeline(cfg, [tree / "audio" / meta.filename[i] for i in base_rows], targets[base_rows], stats,
                           device)
    rng = np.random.default_rng(cfg.trial_num)
    with peak_memory(peaks, f"baseline {rate} Hz, {len(base_rows)} clips", device):
        base = [timed(lambda e=e: pipe.epoch(k_train, rng, f"baseline epoch {e + 1}"), device)[1]
                for e in range(n_epochs)]
    scale = len(meta) / len(base_rows)  # the same work for every clip: scaled linearly to all of them
    return RateResult(cfg, decode_cold, decode_warm, features, gather,
                      PipelineTimes(base[0] * scale, sum(base[1:]) / len(base[1:]) * scale))


@dataclasses.dataclass
class TrainResult:
    train_sps: float  # samples/s
    eval_sps: float
    mem: Mem


def measure_training(cfg: Config, device: torch.device, n_batches: int) -> TrainResult:
    """Training and validation throughput of ``cfg.arch`` trained as a run trains it: ``make_dls`` over random
    features of the real input size, ``build_learner`` (channels-last, MixUp, bf16/fp16, ``compile_model``) and
    a one-cycle epoch with every layer trainable; each phase has one warm-up batch, then ``n_batches``."""
    shape, bs, mem = input_shape(cfg), cfg.batch_size, {}
    n_train, n = bs * (1 + n_batches), 3 * bs * (1 + n_batches)  # validation batches are 2 x bs
    feats = torch.randn(n, *shape, device=device, dtype=feature_dtype(cfg, device))
    dls = make_dls(feats, torch.randint(0, N_CLASSES, (n,), device=device), torch.arange(n_train),
                   torch.arange(n_train, n), cfg, channels_last=device.type == "cuda", device=device)
    timer = BatchTimes(device)
    learn = build_learner(cfg, dls, shape[0], N_CLASSES, device, [timer])
    learn.unfreeze()
    with peak_memory(mem, "fit", device), learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(1, cfg.learning_rate)
    train, valid = timer.times[True], timer.times[False]
    return TrainResult(bs * len(train) / sum(train), 2 * bs * len(valid) / sum(valid), mem["fit"])


@dataclasses.dataclass
class BenchResult:
    """Everything one benchmark run measured and what it ran on; :func:`report` formats it."""

    cfg: Config
    opts: argparse.Namespace  # the benchmark options, train_bs and train_batches resolved
    command: str
    device: torch.device
    machine: str  # the GPU, or the CPU model and threads
    origin: str  # where the linked clips come from
    n_train: int
    n_valid: int
    n_baseline: int  # clips the baseline ran on
    started: datetime.datetime = dataclasses.field(default_factory=lambda: datetime.datetime.now().astimezone())
    load: tuple[float, float] | None = None  # 1-min load average at start and end
    rates: dict[int, RateResult] = dataclasses.field(default_factory=dict)
    train: dict[str, TrainResult | None] = dataclasses.field(default_factory=dict)  # None: out of memory
    peaks: dict[str, Mem] = dataclasses.field(default_factory=dict)


def table(rows: list[list], head: list[str]) -> list[str]:
    """Aligned text columns, the first left-aligned; numbers are seconds (:func:`secs`)."""
    rows = [[c if isinstance(c, str) else secs(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    return ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
            for r in [head, ["-" * w for w in widths], *rows]]


def secs(s: float) -> str:
    return f"{s:,.0f}" if s >= 100 else f"{s:.1f}" if s >= 1 else f"{s:.3g}"


def report(r: BenchResult) -> str:
    """The printed report: setup, a table per rate, training throughput, peak memory, and ``ratio: <N>x`` last."""
    o, cfg, n, gpu = r.opts, r.cfg, r.n_train + r.n_valid, r.device.type == "cuda"
    E, scale = o.epochs, n / r.n_baseline
    busy = "" if r.load is None else f"; 1-min load average {r.load[0]:.1f} at start, {r.load[1]:.1f} at end"
    out = [f"audiosweep data-pipeline benchmark, {r.started:%Y-%m-%d %H:%M %Z}", f"command: {r.command}",
           f"device {r.device} ({r.machine}{busy})",
           f"torch {torch.__version__}, torchaudio {torchaudio.__version__}, Python {platform.python_version()}",
           f"data: {n} ESC-50-shaped clips (5 s, 44.1 kHz WAV; {r.n_train} train / {r.n_valid} valid, fold "
           f"{cfg.fold} validation) linked cyclically to {r.origin}",
           f"ours: measured on all {n} clips, {max(o.measure_epochs, OURS_MIN_EPOCHS)} epochs; per-item baseline: "
           f"{'measured' if scale == 1 else f'scaled x{scale:.2f} from {r.n_baseline} clips'}, {o.measure_epochs} "
           f"epochs; steady = mean of the epochs after the first; totals for a {E}-epoch run: first + {E - 1} x steady",
           ""]
    for rate, res in r.rates.items():
        c, b, cold, warm = res.cfg, res.baseline, res.ours(cold=True), res.ours(cold=False)
        out.append(f"Data pipeline at {rate} Hz (files on disk -> normalised batch on {r.device.type}), seconds: "
                   f"n_fft {c.n_fft}, hop {c.hop_samples}, win {','.join(map(str, c.win_lengths))}, n_mels {c.n_mels}, "
                   f"f_max {c.f_max:g}, input {' x '.join(map(str, input_shape(c)))}")
        rows = [[name, t.first, t.steady, t.total(E)] for name, t in [
            ("ours, cold cache", cold), ("ours, warm cache", warm),
            (f"per-item baseline ({'measured' if scale == 1 else 'scaled'})", b)]]
        rows += [[f"ratio baseline / ours, {which}", f"{b.first / t.first:.1f}x", f"{b.steady / t.steady:.0f}x",
                  f"{b.total(E) / t.total(E):.1f}x"] for which, t in (("cold", cold), ("warm", warm))]
        out += table(rows, ["", "first epoch", "steady epoch", f"{E} epochs"])
        out += [f"  ours, one-time: decode + resample + cache write {secs(res.decode_cold)} s (cold) or cache read "
                f"{secs(res.decode_warm)} s (warm); log-mels + normalise {secs(res.features)} s; batch gather "
                f"{secs(res.gather[0])} s first epoch, {secs(cold.steady)} s steady", ""]
    cold, base = r.rates[cfg.sample_rate].ours(cold=True), r.rates[cfg.sample_rate].baseline
    if r.train:
        out.append(f"Training throughput at input {' x '.join(map(str, input_shape(cfg)))}, batch {o.train_bs} "
                   f"(validation {2 * o.train_bs}), {resolve_precision(cfg, r.device)}"
                   f"{', channels-last' if gpu else ''}{f', MixUp {cfg.mix_up:g}' if cfg.mix_up else ''}"
                   f"{', torch.compile' if cfg.compile else ''}: a run's Learner (build_learner) on random input, "
                   f"{o.train_batches} batches per phase after 1 warm-up; s/epoch and {E}-epoch times extrapolated "
                   f"to {r.n_train} train + {r.n_valid} valid clips")
        rows = []
        for arch, t in r.train.items():
            if t is None:
                rows.append([arch, "out of memory", "", "", "", "", ""])
                continue
            epoch = r.n_train / t.train_sps + r.n_valid / t.eval_sps
            rows.append([arch, f"{t.train_sps:.1f}", f"{t.eval_sps:.1f}", epoch, E * epoch, E * epoch + cold.total(E),
                         str(t.mem)])
        out += table(rows, ["arch", "train samples/s", "eval samples/s", "s/epoch (extrap.)", f"{E} ep. training "
                            "(extrap.)", f"{E} ep. run incl. data (extrap.)", "peak memory (+ added)"]) + [""]
    out.append(f"Peak memory per stage, MiB: host peak RSS{' and GPU max allocated' if gpu else ''}, each with what "
               "the stage added to the memory in use when it began")
    rows = [[k, f"{m.host:,.0f}", f"+{m.host_added:,.0f}", *([f"{m.gpu:,.0f}", f"+{m.gpu_added:,.0f}"] if gpu else [])]
            for k, m in r.peaks.items()]
    out += table(rows, ["stage", "host peak", "added"] + (["GPU peak", "added"] if gpu else [])) + [""]
    out.append(f"{E}-epoch data-pipeline ratio at {cfg.sample_rate} Hz, cold cache (steady-state per epoch: "
               f"{base.steady / cold.steady:.0f}x):")
    return "\n".join([*out, f"ratio: {base.total(E) / cold.total(E):.1f}x"])


def main(argv: list[str] | None = None) -> int:
    try:
        cfg, opts, explicit = parse(argv)
        device = resolve_device(cfg)
    except (ConfigError, UserError) as e:
        print(f"bench/pipeline.py: {e}", file=sys.stderr)
        return 2
    data_dir = Path(cfg.data_dir).expanduser() if "data_dir" in explicit or not SLICE.is_dir() else SLICE
    opts.train_bs = opts.train_bs or (cfg.batch_size if device.type == "cuda" else min(cfg.batch_size, 4))
    opts.train_batches = opts.train_batches or (20 if device.type == "cuda" else 2)
    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    command = shlex.join(["python", "bench/pipeline.py", *(sys.argv[1:] if argv is None else argv)])
    with tempfile.TemporaryDirectory(prefix="audiosweep-bench-") as tmp:
        work = Path(opts.workdir or tmp)
        tree, meta, origin = make_tree(work, data_dir, opts.n_clips)
        valid = (meta.fold == cfg.fold).to_numpy()
        train_idx, valid_idx = torch.from_numpy(np.flatnonzero(~valid)), torch.from_numpy(np.flatnonzero(valid))
        # The baseline's clips: spread over the rows (sorted by fold, so over the folds too), training clips first.
        pick = np.linspace(0, len(meta) - 1, min(opts.baseline_clips, len(meta))).round().astype(int)
        base_rows, k_train = np.concatenate([pick[~valid[pick]], pick[valid[pick]]]), int((~valid[pick]).sum())
        result = BenchResult(cfg, opts, command, device, machine(device), origin, len(train_idx), len(valid_idx),
                             len(base_rows))
        for rate in opts.rates:
            result.rates[rate] = measure_rate(at_rate(cfg, rate), tree, meta, train_idx, valid_idx, base_rows, k_train,
                                              work, opts.measure_epochs, device, result.peaks)
    for arch in [] if opts.skip_training else opts.archs:
        log(f"training throughput of {arch} at {input_shape(cfg)}, batch {opts.train_bs}")
        # Random initial weights (no download), and every layer trains, as in a run's unfrozen epochs.
        tcfg = dataclasses.replace(cfg, arch=arch, pretrained=False, batch_size=opts.train_bs)
        try:
            result.train[arch] = measure_training(tcfg, device, opts.train_batches)
        except torch.OutOfMemoryError:
            log(f"{arch}: out of memory at batch {opts.train_bs}; pass a smaller --train-bs")
            result.train[arch] = None
        if device.type == "cuda":
            torch.cuda.empty_cache()  # out here, the failed run's tensors are free: give their memory back
    result.load = None if load_start is None else (load_start, os.getloadavg()[0])
    print(report(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
