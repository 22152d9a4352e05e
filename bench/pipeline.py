"""Data-pipeline and training-throughput benchmark: our path against a per-item pipeline like the report's.

Ours is train.py's: decode once into the waveform cache, log-mels of all clips once (``compute_features``,
``normalize``), one index gather per batch (``make_dls``); the baseline reads, resamples, mel-transforms and
normalises every clip in every epoch, in one process and in DataLoader workers. With augmentation (bench/augmented.py)
ours makes training batches from resident waveforms as train.py does; the baseline augments every item. Training
runs through ``build_learner`` on random input of the real size. The last line is the data-time ratio over an
``--epochs`` run, single-process baseline / ours, cold cache: ``ratio: <N>x``. See bench/README.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from audiosweep.config import Config, build_parser, merge, parse_known
from audiosweep.data import (
    ESC50_CLIPS,
    ClipSpec,
    clip_problem,
    ensure_dataset,
    fingerprint,
    load_waveforms,
    official_metadata,
    split,
    validate_clips,
)
from audiosweep.datasets import check_labels, dataset_entry
from audiosweep.device import feature_dtype, resolve_device
from audiosweep.errors import ConfigError, UserError
from audiosweep.features import compute_features, input_shape, normalize
from audiosweep.loaders import make_dls
from audiosweep.models import ARCHS
from audiosweep.synthetic import make_synthetic_esc50
from audiosweep.training import build_learner
from bench.augmented import augmentation_config, measure_augmented
from bench.fair import fair_plain
from bench.measure import BatchTimes, Mem, cores, log, machine, peak_memory, timed
from bench.per_item import PerItemPipeline, time_epochs
from bench.report import report
from bench.results import BenchResult, RateResult, TrainResult

SLICE = Path(__file__).resolve().parents[2] / "shared" / "esc50-slice"
N_CLASSES = 50
# Our per-epoch batch gathering is cheap but noisy on the CPU (page faults on fresh batch tensors): average it
# over at least this many epochs (the first, then the steady state).
OURS_MIN_EPOCHS = 6


def build_bench_parser() -> argparse.ArgumentParser:
    """train.py's parser (every Config key, ``--config FILE``) plus the benchmark's own options."""
    p = build_parser()
    p.prog, p.description = "bench/pipeline.py", (
        "Time our data pipeline against a per-item one like the report's (plain and augmented, in one process and in "
        "DataLoader workers), and training throughput (bench/README.md).\n"
        f"--data_dir: the real clips (default here: {SLICE} if present, else data/ESC-50; synthetic if neither).")
    g = p.add_argument_group("benchmark")
    g.add_argument("--n_clips", type=int, default=2000, help="clips of the ESC-50-shaped dataset (default: 2000)")
    g.add_argument("--baseline_clips", type=int, default=100, help="clips the old per-item baselines run on, and "
                   "the fair baseline computes once; scaled linearly to --n_clips (default: 100)")
    g.add_argument("--measure_epochs", type=int, default=2, help="epochs measured: the first, then the steady state "
                   f"(default: 2, at least 2; our path's batch gathering: at least {OURS_MIN_EPOCHS})")
    g.add_argument("--epochs", type=int, default=80, help="length of the run the totals are for (default: 80)")
    g.add_argument("--rates", default="", help="sample rates in Hz; the config's sample_rate first, the others keep "
                   "the durations of hop, window and n_fft, f_max at most Nyquist (default: the config's only; e.g. "
                   "44100,22050)")
    g.add_argument("--archs", default="resnet18",
                   help="architectures whose training throughput is measured (default: resnet18; e.g. "
                   "resnet18,densenet161)")
    g.add_argument("--skip_training", action="store_true", default=False, help="do not measure training throughput")
    g.add_argument("--skip_augmented", action="store_true", default=False,
                   help="do not measure the augmented path and the per-item augmented baseline")
    g.add_argument("--aug_baseline_clips", type=int, default=32, help="clips the augmented baselines run on; "
                   "scaled linearly to --n_clips (default: 32)")
    g.add_argument("--aug_train_clips", type=int, default=None, help="training clips our augmented batches are "
                   "timed on, scaled linearly to all (default: all on GPU, 128 on CPU)")
    g.add_argument("--train_batches", type=int, default=None, help="timed training batches, and validation "
                   "batches, per architecture, each after one warm-up (default: 2 on CPU, 20 on GPU)")
    g.add_argument("--train_bs", type=int, default=None, help="training batch size of the throughput runs; "
                   "validation batches are twice that, as in a run (default: batch_size on GPU, at most 4 on CPU)")
    g.add_argument("--workdir", default=None,
                   help="folder for the dataset links and the waveform cache (default: a temporary folder, removed)")
    return p


def parse(argv: list[str] | None) -> tuple[Config, argparse.Namespace, dict]:
    """The validated Config, the benchmark options (``rates``, ``archs`` as lists) and the config keys set."""
    cfg, explicit, extras = parse_known(argv, build_bench_parser())
    opts = argparse.Namespace(**extras)
    problems = [f"--{k} must be >= {lo}, got {v}"
                for k, lo in (("n_clips", 2), ("baseline_clips", 2), ("aug_baseline_clips", 2), ("aug_train_clips", 2),
                              ("measure_epochs", 2), ("epochs", 1), ("train_batches", 1), ("train_bs", 2))
                if (v := getattr(opts, k)) is not None and v < lo]
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
                             hop_length_ms=None, f_max=None if cfg.f_max is None else min(cfg.f_max, rate / 2))
    d |= {"stacked_win_lengths": wins} if cfg.stacked_win_lengths else {"win_length": wins[0], "win_length_ms": None}
    return merge([d])


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


def dataset_clips(cfg: Config, explicit: dict, work: Path, n_clips: int):
    """The clips to measure and how: (folder, metadata rows, validation mask, origin text, ClipSpec). esc50: the
    linked tree of :func:`make_tree`, fold ``cfg.valid_fold`` validation; any other dataset: ``n_clips`` of its listed,
    valid clips (as ``prepare_data`` checks them) spread over folds and classes, split as a run splits them."""
    if cfg.dataset_name == "esc50":
        data_dir = Path(cfg.data_root).expanduser() if "data_dir" in explicit or not SLICE.is_dir() else SLICE
        tree, meta, origin = make_tree(work, data_dir, n_clips)
        return tree, meta, (meta.fold == cfg.valid_fold).to_numpy(), origin, ESC50_CLIPS
    entry = dataset_entry(cfg.dataset_name)
    spec, data_dir = ClipSpec.of(entry, cfg), ensure_dataset(cfg)
    listed = entry.list_clips(data_dir, metadata=cfg.metadata, split=cfg.split, fold=cfg.valid_fold)
    meta = validate_clips(data_dir, listed, cfg.allow_missing, spec, cfg.sample_rate)
    # Sorted by fold, then class: evenly spaced rows cover every fold and class in proportion.
    meta = meta.sort_values(["fold", "target"], kind="stable").reset_index(drop=True)
    meta = meta.iloc[np.linspace(0, len(meta) - 1, min(n_clips, len(meta))).round().astype(int)].reset_index(drop=True)
    if not entry.strict:
        check_labels(meta, f"{spec.title} at {data_dir} (the {len(meta)} clips measured)")
    valid = np.isin(np.arange(len(meta)), split(meta, cfg, "group")[1])
    how = f"fold {cfg.valid_fold} validation" if cfg.split == "official" else f"stratified, valid_pct {cfg.valid_pct:g}"
    origin = f"{len(meta)} of the {len(listed)} listed clips of {data_dir} ({how})"
    return data_dir, meta, valid, origin, spec


def spread(valid: np.ndarray, count: int) -> tuple[np.ndarray, int]:
    """``count`` rows spread over all (sorted by fold, so over the folds), training rows first; how many train."""
    pick = np.linspace(0, len(valid) - 1, min(count, len(valid))).round().astype(int)
    return np.concatenate([pick[~valid[pick]], pick[valid[pick]]]), int((~valid[pick]).sum())


@dataclasses.dataclass
class Setup:
    """What every rate's measurement shares: the dataset's folder, its metadata and split, the options."""

    tree: Path
    meta: pd.DataFrame
    valid: np.ndarray  # True for the validation rows
    work: Path
    device: torch.device
    opts: argparse.Namespace
    peaks: dict[str, Mem]  # peak memory per stage, filled as the stages run
    spec: ClipSpec = ESC50_CLIPS  # where the clips are and what length they are made

    def idx(self, valid: bool) -> torch.Tensor:
        return torch.from_numpy(np.flatnonzero(self.valid == valid))

    def paths(self, rows: np.ndarray) -> list[Path]:
        return [self.tree / self.spec.audio_dir / self.meta.filename[i] for i in rows]


def measure_rate(cfg: Config, s: Setup, aug: Config | None) -> RateResult:
    """Our path on every clip, and the per-item baseline in one process and in as many workers as cores on
    ``--baseline_clips`` clips, at ``cfg.sample_rate``; with ``aug`` (the augmented config), the augmented
    comparison too."""
    rate, meta, device, o = cfg.sample_rate, s.meta, s.device, s.opts
    fp, targets = fingerprint(s.tree, meta, s.spec), torch.tensor(meta.target.to_numpy())
    train_idx, valid_idx = s.idx(False), s.idx(True)

    def load():
        return load_waveforms(s.tree, meta, rate, s.work / f"cache-{rate}", fp, cfg.num_workers, s.spec)

    def warm_load():
        cached = load()
        return torch.empty_like(cached).copy_(cached)  # the cache is memory-mapped: read every page, as features do

    def our_epoch():
        for loader in (dls.train, dls.valid):
            for _ in loader:
                pass

    log(f"{rate} Hz: our path on {len(meta)} clips")
    with peak_memory(s.peaks, f"ours {rate} Hz, decode (cold cache)", device):
        decode_cold = timed(load, device)[1]
    wavs, decode_warm = timed(warm_load, device)
    with peak_memory(s.peaks, f"ours {rate} Hz, features + normalise", device):
        (feats, stats), features = timed(lambda w=wavs: normalize(compute_features(
            w, cfg, device, out_dtype=feature_dtype(cfg, device)), cfg.normalize, train_idx), device)
    wavs = wavs if aug is not None else None  # the augmented path makes its training batches from them
    dls = make_dls(feats, targets, train_idx, valid_idx, cfg, channels_last=device.type == "cuda", device=device)
    rows, k_train = spread(s.valid, o.baseline_clips)
    pipe = PerItemPipeline(cfg, s.paths(rows), targets[rows], stats, device, n_train=k_train, spec=s.spec)
    log(f"{rate} Hz: fair baseline: spectrograms of {len(rows)} clips once in {cores()} workers")
    with peak_memory(s.peaks, f"fair baseline {rate} Hz, spectrograms once, {cores()} workers", device):
        fair = fair_plain(pipe, len(train_idx), len(valid_idx), cores(), device, feats.dtype)
    log(f"{rate} Hz: our batches and the fair baseline's, epochs interleaved")
    with peak_memory(s.peaks, f"ours {rate} Hz, batches from resident features (fair baseline's interleaved)", device):
        gather = []
        for _ in range(max(o.measure_epochs, OURS_MIN_EPOCHS)):
            gather.append(timed(our_epoch, device)[1])
            fair.epoch()
    fair_times = fair.close()
    log(f"{rate} Hz: per-item baseline on {len(rows)} clips, in 1 process, then {cores()} workers")
    result = RateResult(cfg, decode_cold, decode_warm, features, gather, fair_times, *(
        time_epochs(pipe, o.measure_epochs, w, len(meta) / len(rows), s.peaks, device,
                    f"baseline {rate} Hz, {len(rows)} clips, {w or 1} {'workers' if w else 'process'}")
        for w in (0, cores())), cores())
    if aug is not None:
        rows, k_train = spread(s.valid, o.aug_baseline_clips)
        result.aug = measure_augmented(aug, wavs, feats, stats, targets, train_idx, valid_idx, o.aug_train_clips,
                                       s.paths(rows), targets[rows], k_train, o.measure_epochs, device, s.peaks,
                                       cores(), s.spec)
    return result


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


def main(argv: list[str] | None = None) -> int:
    try:
        cfg, opts, explicit = parse(argv)
        device = resolve_device(cfg)
    except (ConfigError, UserError) as e:
        print(f"bench/pipeline.py: {e}", file=sys.stderr)
        return 2
    opts.train_bs = opts.train_bs or (cfg.batch_size if device.type == "cuda" else min(cfg.batch_size, 4))
    opts.train_batches = opts.train_batches or (20 if device.type == "cuda" else 2)
    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    command = shlex.join(["python", "bench/pipeline.py", *(sys.argv[1:] if argv is None else argv)])
    with tempfile.TemporaryDirectory(prefix="audiosweep-bench-") as tmp:
        work = Path(opts.workdir or tmp)
        try:
            tree, meta, valid, origin, spec = dataset_clips(cfg, explicit, work, opts.n_clips)
        except UserError as e:
            print(f"bench/pipeline.py: {e}", file=sys.stderr)
            return 2
        opts.aug_train_clips = opts.aug_train_clips or (int((~valid).sum()) if device.type == "cuda" else 128)
        result = BenchResult(cfg, opts, command, device, machine(device), origin, int((~valid).sum()),
                             int(valid.sum()), len(spread(valid, opts.baseline_clips)[0]), spec)
        setup = Setup(tree, meta, valid, work, device, opts, result.peaks, spec)
        aug = augmentation_config(cfg, explicit)
        for rate in opts.rates:
            result.rates[rate] = measure_rate(at_rate(cfg, rate), setup,
                                              None if opts.skip_augmented or rate != cfg.sample_rate else aug)
    for arch in [] if opts.skip_training else opts.archs:
        log(f"training throughput of {arch} at {input_shape(cfg)}, batch {opts.train_bs}")
        # Random initial weights (no download), and every layer trains, as in a run's unfrozen epochs.
        tcfg = dataclasses.replace(cfg, arch=arch, pretrained=False, batch_size=opts.train_bs)
        try:
            result.train[arch] = measure_training(tcfg, device, opts.train_batches)
        except torch.OutOfMemoryError:
            log(f"{arch}: out of memory at batch {opts.train_bs}; pass a smaller --train_bs")
            result.train[arch] = None
        if device.type == "cuda":
            torch.cuda.empty_cache()  # out here, the failed run's tensors are free: give their memory back
    result.load = None if load_start is None else (load_start, os.getloadavg()[0])
    print(report(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
