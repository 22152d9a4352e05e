"""Data-pipeline and training-throughput benchmark: our path against a per-item pipeline like the report's.

    python bench/pipeline.py                         # report's best config, this machine's device
    python bench/pipeline.py --device cuda --baseline-clips 2000 --measure-epochs 3
    python bench/pipeline.py --n_mels 128 --rates 44100,16000 --skip-training

Both pipelines go from WAV files on disk to a normalised spectrogram batch on the device, every clip once
per epoch (training clips shuffled, then the validation clips):

* ours: decode and resample once into the float16 waveform cache (``audiosweep.data.load_waveforms``), log-mels
  of all clips once, batch-wise on the device (``compute_features``), ``normalize``, then one index gather per
  batch (``TensorLoader``);
* the per-item baseline, every epoch and for every clip: read the file with soundfile, resample it with
  torchaudio, compute its mel spectrogram with torchaudio, convert to dB, normalise (with statistics given for
  free), then collate the items into batches and send them to the device.

The dataset is ESC-50-shaped and real-size: ``--n-clips`` files (default 2000, 5 s at 44.1 kHz) under the
official file names, symbolic links cycling over the real clips of ``--data_dir`` (so decoding costs what real
files cost). Our path runs on all of them; the baseline runs on ``--baseline-clips`` of them and its times are
scaled linearly to ``--n-clips`` (marked "scaled"). Totals over ``--epochs`` epochs are extrapolated from the
measured first and steady-state epochs. Training throughput is measured over a few batches of random input at
the model's real input size and extrapolated to an epoch (marked "extrapolated"). The last line printed is the
ratio of the two pipelines' data time over the whole run at the first rate (the config's), cold cache:
``ratio: <N>x``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import sys
import tempfile
import textwrap
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F
import torchaudio
from tqdm.auto import tqdm

from audiosweep.config import Config, ConfigError, build_parser, load_yaml, merge, unknown_key_message
from audiosweep.data import ESC50_RATE, ESC50_SAMPLES, clip_problem, fingerprint, load_waveforms, official_metadata
from audiosweep.features import compute_features, n_frames, normalize
from audiosweep.models import create_arch
from audiosweep.synthetic import class_clip
from audiosweep.training import make_dls, resolve_device, resolve_precision

REPO = Path(__file__).resolve().parent.parent
SLICE = REPO.parent / "shared" / "esc50-slice"
# Our per-epoch batch gathering is cheap but noisy on the CPU (page faults on fresh batch tensors): average it
# over at least this many epochs (the first, then the steady state).
OURS_MIN_EPOCHS = 6
BENCH_KEYS = ("n_clips", "baseline_clips", "measure_epochs", "epochs", "rates", "archs", "skip_training",
              "train_batches", "train_bs", "workdir")


# ---------------------------------------------------------------------------------------------- options

def build_bench_parser() -> argparse.ArgumentParser:
    """train.py's parser (every Config key, ``--config FILE``) plus the benchmark's own options."""
    p = build_parser()
    p.prog = "bench/pipeline.py"
    p.description = textwrap.fill(
        "Time the data pipeline (files on disk -> normalised batch on the device) of audiosweep "
        "against a per-item pipeline like the report's, and training throughput. Config keys set "
        "the spectrogram (default: the report's best). --data_dir: where the real clips come from "
        f"(default here: {SLICE} if present, else data/ESC-50; synthetic clips if neither). "
        "The validation clips are those of --fold; keys that shape neither the data pipeline nor the "
        "model (split, esc10, cache_dir, logging) are accepted and ignored.", width=110)
    g = p.add_argument_group("benchmark")
    g.add_argument("--n-clips", type=int, default=2000, help="clips of the ESC-50-shaped dataset (default: 2000)")
    g.add_argument("--baseline-clips", type=int, default=200,
                   help="clips the per-item baseline runs on; scaled linearly to --n-clips (default: 200)")
    g.add_argument("--measure-epochs", type=int, default=2,
                   help="epochs measured: the first, then the steady state (default: 2, at least 2; our path's "
                        f"batch gathering: at least {OURS_MIN_EPOCHS})")
    g.add_argument("--epochs", type=int, default=80, help="length of the run the totals are for (default: 80)")
    g.add_argument("--rates", default="44100,22050",
                   help="sample rates in Hz; the config's sample_rate comes first, the others scale hop, window "
                        "and n_fft to the same durations and cap f_max at Nyquist (default: 44100,22050)")
    g.add_argument("--archs", default="resnet18,densenet161",
                   help="architectures whose training throughput is measured (default: resnet18,densenet161)")
    g.add_argument("--skip-training", action="store_true", default=False, help="do not measure training throughput")
    g.add_argument("--train-batches", type=int, default=None,
                   help="timed training batches per architecture, after one warm-up (default: 2 on CPU, 20 on GPU)")
    g.add_argument("--train-bs", type=int, default=None,
                   help="batch size of the throughput runs (default: batch_size on GPU, at most 4 on CPU)")
    g.add_argument("--workdir", default=None,
                   help="folder for the dataset links and the waveform cache (default: a temporary folder, removed)")
    g.add_argument("--data-dir", dest="data_dir", help="same as --data_dir")
    return p


def parse(argv: list[str] | None) -> tuple[Config, argparse.Namespace, bool]:
    """The validated Config, the benchmark options and whether --data_dir was given."""
    ns, rest = build_bench_parser().parse_known_args(argv)
    if rest:
        raise ConfigError("invalid options:\n  " + "\n  ".join(
            unknown_key_message(a[2:].split("=", 1)[0]) if a.startswith("--") else f"unexpected argument {a!r}"
            for a in rest))
    values = vars(ns)
    opts = argparse.Namespace(**{k: values.pop(k) for k in BENCH_KEYS})
    file_layer = load_yaml(values.pop("config")) if "config" in values else {}
    cfg = merge([file_layer, values])
    problems = [f"--{k.replace('_', '-')} must be >= {lo}, got {getattr(opts, k)}"
                for k, lo in (("n_clips", 2), ("baseline_clips", 2), ("measure_epochs", 2), ("epochs", 1))
                if getattr(opts, k) < lo]
    problems += [f"--{k.replace('_', '-')} must be >= 1, got {getattr(opts, k)}"
                 for k in ("train_batches", "train_bs") if getattr(opts, k) is not None and getattr(opts, k) < 1]
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
    for arch in opts.archs:
        try:
            merge([{"arch": arch}])
        except ConfigError as e:
            problems.append(f"--archs: {str(e).splitlines()[-1].strip()}")
    if problems:
        raise ConfigError("invalid benchmark options:\n  " + "\n  ".join(problems))
    return cfg, opts, "data_dir" in file_layer or "data_dir" in values


def at_rate(cfg: Config, rate: int) -> Config:
    """``cfg`` at another sample rate: hop, window(s) and n_fft keep their durations, f_max stops at Nyquist."""
    if rate == cfg.sample_rate:
        return cfg
    k = rate / cfg.sample_rate
    n_fft = max(16, round(cfg.n_fft * k))
    if cfg.n_fft & (cfg.n_fft - 1) == 0:  # a power of two stays one
        n_fft = 1 << (n_fft - 1).bit_length()
    d = cfg.to_dict()
    d.update(sample_rate=rate, n_fft=n_fft, hop_length=max(1, round(cfg.hop_samples * k)), hop_length_ms=None,
             f_max=min(cfg.f_max, rate / 2))
    wins = [min(n_fft, max(1, round(w * k))) for w in cfg.win_lengths]
    if cfg.stacked_win_lengths:
        d["stacked_win_lengths"] = wins
    else:
        d.update(win_length=wins[0], win_length_ms=None)
    return merge([d])


# ---------------------------------------------------------------------------------------------- data set

def source_clips(data_dir: Path, limit: int) -> list[Path]:
    """Up to ``limit`` valid ESC-50 clips (mono, 44.1 kHz, 5 s) under ``data_dir/audio``."""
    found = []
    for path in sorted((data_dir / "audio").glob("*.wav")):
        if clip_problem(path) is None:
            found.append(path)
        if len(found) == limit:
            break
    return found


def build_tree(root: Path, n_clips: int, sources: list[Path]) -> tuple[Path, np.ndarray]:
    """An ESC-50 tree of ``n_clips`` official file names at ``root``, linked cyclically to ``sources``; returns
    the root and the chosen rows of the official metadata (spread over all folds)."""
    meta = official_metadata()
    rows = np.unique(np.linspace(0, len(meta) - 1, min(n_clips, len(meta))).round().astype(int))
    audio = root / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(meta.filename.iloc[rows]):
        link = audio / name
        if not link.exists():
            link.symlink_to(sources[i % len(sources)].resolve())
    return root, rows


def synthetic_sources(folder: Path, n: int = 50) -> list[Path]:
    """``n`` synthetic clips (one per class) written as 16-bit WAV files, for machines without ESC-50."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for target in range(n):
        path = folder / f"synthetic-{target}.wav"
        sf.write(path, class_clip(target, rng), ESC50_RATE, subtype="PCM_16")
        paths.append(path)
    return paths


# ---------------------------------------------------------------------------------------------- measuring

def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Mem:
    """Peak memory of a stage in MiB, and how much of it the stage added to what was in use when it began."""

    host: float
    host_added: float
    gpu: float | None = None
    gpu_added: float | None = None


class Peak:
    """Peak memory of a stage: host resident set (VmHWM, reset through /proc/self/clear_refs where Linux
    allows it, else ``resource``'s peak since the start) and, on a GPU, ``torch.cuda.max_memory_allocated``."""

    def __init__(self, device: torch.device):
        self.device = device
        self.resettable = Path("/proc/self/clear_refs").exists()
        self.start = (0.0, 0.0)

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        if self.resettable:
            try:
                Path("/proc/self/clear_refs").write_text("5")
            except OSError:
                self.resettable = False
        gpu = torch.cuda.memory_allocated(self.device) / 2**20 if self.device.type == "cuda" else 0.0
        self.start = (self._status("VmRSS:") or 0.0, gpu)

    @staticmethod
    def _status(key: str) -> float | None:
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith(key):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return None

    def read(self) -> Mem:
        host = self._status("VmHWM:") if self.resettable else None
        if host is None:
            import resource

            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            host = rss / 2**20 if sys.platform == "darwin" else rss / 1024
        mem = Mem(host, max(0.0, host - self.start[0]))
        if self.device.type == "cuda":
            mem.gpu = torch.cuda.max_memory_allocated(self.device) / 2**20
            mem.gpu_added = max(0.0, mem.gpu - self.start[1])
        return mem


def timed(fn, device: torch.device):
    """(result of ``fn()``, seconds), the device synchronised on both sides."""
    sync(device)
    t = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - t


@dataclass
class PipelineTimes:
    first: float  # seconds of the first epoch, one-time work included
    steady: float  # seconds of one later epoch
    parts: dict = field(default_factory=dict)

    def total(self, epochs: int) -> float:
        return self.first + (epochs - 1) * self.steady


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def epoch_order(n_train: int, n_valid: int, rng: np.random.Generator, bs: int) -> list[np.ndarray]:
    """One epoch's batches of row positions: shuffled training batches, then validation batches of 2 x bs."""
    train = np.array_split(rng.permutation(n_train), max(1, -(-n_train // bs)))
    valid = np.array_split(n_train + np.arange(n_valid), max(1, -(-n_valid // (2 * bs)))) if n_valid else []
    return train + valid


class PerItemPipeline:
    """The report's kind of data pipeline: every clip read, resampled, turned into a mel spectrogram and
    normalised on its own, every epoch; items collated into batches and sent to the device."""

    def __init__(self, cfg: Config, paths: list[Path], targets: torch.Tensor, stats: dict, device: torch.device):
        self.paths, self.targets, self.device = paths, targets, device
        self.resample = (torchaudio.transforms.Resample(ESC50_RATE, cfg.sample_rate)
                         if cfg.sample_rate != ESC50_RATE else None)
        self.mels = [torchaudio.transforms.MelSpectrogram(
            sample_rate=cfg.sample_rate, n_fft=cfg.n_fft, win_length=w, hop_length=cfg.hop_samples, f_min=cfg.f_min,
            f_max=cfg.f_max, n_mels=cfg.n_mels, power=2.0, norm="slaney", mel_scale="slaney") for w in cfg.win_lengths]
        self.to_db = torchaudio.transforms.AmplitudeToDB("power", top_db=80.0)
        c = cfg.n_channels
        self.mean = torch.tensor(stats.get("mean", [0.0] * c)).view(c, 1, 1)
        self.std = torch.tensor(stats.get("std", [1.0] * c)).view(c, 1, 1)

    def item(self, i: int) -> torch.Tensor:
        wav, _ = sf.read(str(self.paths[i]), dtype="float32", always_2d=False)
        x = torch.from_numpy(wav)
        if self.resample is not None:
            x = self.resample(x)
        spec = torch.stack([self.to_db(mel(x)) for mel in self.mels])
        return (spec - self.mean) / self.std

    def batch(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        xb = torch.stack([self.item(int(i)) for i in rows])
        return xb.to(self.device, non_blocking=True), self.targets[rows].to(self.device)

    def epoch(self, batches: list[np.ndarray], desc: str) -> None:
        for rows in tqdm(batches, desc=desc, unit="batch", disable=None, leave=False):
            self.batch(rows)


def measure_ours(cfg: Config, tree: Path, meta, targets, train_idx, valid_idx, device, cache_dir: Path,
                 n_epochs: int, peak: Peak) -> tuple[PipelineTimes, PipelineTimes, dict, dict]:
    """Our path at ``cfg.sample_rate``: (cold-cache times, warm-cache times, normalisation stats, peaks)."""
    fp = fingerprint(tree, meta)
    peak.reset()
    _, cold = timed(lambda: load_waveforms(tree, meta, cfg.sample_rate, cache_dir, fp, cfg.num_workers), device)
    peaks = {"decode (cold cache)": peak.read()}

    def warm_load():
        cached = load_waveforms(tree, meta, cfg.sample_rate, cache_dir, fp, cfg.num_workers)
        return torch.empty_like(cached).copy_(cached)  # read every page, as computing the features will

    wavs, warm = timed(warm_load, device)
    store = torch.float16 if device.type == "cuda" and cfg.precision != "fp32" else torch.float32
    peak.reset()

    def features(w):
        return normalize(compute_features(w, cfg, device, out_dtype=store), cfg.normalize, train_idx)

    (feats, stats), feat_s = timed(lambda w=wavs: features(w), device)
    del wavs
    peaks["features + normalise"] = peak.read()
    dls = make_dls(feats, targets, train_idx, valid_idx, cfg, channels_last=device.type == "cuda", device=device)
    del feats
    peak.reset()

    def one_epoch():
        for loader in (dls.train, dls.valid):
            for _ in loader:
                pass

    epochs = [timed(one_epoch, device)[1] for _ in range(max(n_epochs, OURS_MIN_EPOCHS))]
    peaks["batches from resident features"] = peak.read()
    steady = sum(epochs[1:]) / len(epochs[1:])
    parts = {"decode_cold": cold, "decode_warm": warm, "features": feat_s, "gather_first": epochs[0],
             "gather_steady": steady}
    return (PipelineTimes(cold + feat_s + epochs[0], steady, parts),
            PipelineTimes(warm + feat_s + epochs[0], steady, parts), stats, peaks)


def measure_baseline(cfg: Config, paths: list[Path], targets: torch.Tensor, n_train: int, stats: dict, device,
                     bs: int, n_epochs: int, peak: Peak) -> tuple[PipelineTimes, Mem]:
    """The per-item pipeline over ``paths`` (the first ``n_train`` are training clips): measured epoch times."""
    pipe = PerItemPipeline(cfg, paths, targets, stats, device)
    rng = np.random.default_rng(cfg.trial_num)
    peak.reset()
    times = []
    for e in range(n_epochs):
        batches = epoch_order(n_train, len(paths) - n_train, rng, bs)
        times.append(timed(lambda b=batches, e=e: pipe.epoch(b, f"baseline epoch {e + 1}"), device)[1])
    return PipelineTimes(times[0], sum(times[1:]) / len(times[1:])), peak.read()


def measure_training(arch: str, cfg: Config, shape: tuple[int, ...], device: torch.device, bs: int, n_batches: int,
                     peak: Peak) -> dict:
    """Training and inference samples/s of ``arch`` on random input of ``shape`` (C, n_mels, frames), as a run
    trains it: channels-last and mixed precision on a GPU, ``torch.compile`` if the config says so."""
    model = create_arch(arch, shape[0], 50, pretrained=False).model.to(device)
    fmt = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    model = model.to(memory_format=fmt)
    if cfg.compile:
        model.compile()
    precision = resolve_precision(cfg, device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    autocast = (lambda: torch.autocast(device.type, dtype=dtype)) if dtype else nullcontext
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.randn(bs, *shape, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, 50, (bs,), device=device)

    def train_steps(n):
        model.train()
        for _ in tqdm(range(n), desc=f"{arch} training", unit="batch", disable=None, leave=False):
            with autocast():
                loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()

    @torch.no_grad()
    def eval_steps(n):
        model.eval()
        for _ in range(n):
            with autocast():
                model(x)

    peak.reset()
    train_steps(1)
    train_s = timed(lambda: train_steps(n_batches), device)[1]
    eval_steps(1)
    eval_s = timed(lambda: eval_steps(n_batches), device)[1]
    return {"train_sps": bs * n_batches / train_s, "eval_sps": bs * n_batches / eval_s, "mem": peak.read(),
            "precision": precision}


# ---------------------------------------------------------------------------------------------- report

def fmt_s(s: float) -> str:
    return f"{s:,.0f}" if s >= 100 else f"{s:.1f}" if s >= 1 else f"{s:.3g}"


def fmt_mem(m: Mem) -> str:
    text = f"host {m.host:,.0f} MiB (+{m.host_added:,.0f})"
    return text if m.gpu is None else f"{text}, GPU {m.gpu:,.0f} MiB (+{m.gpu_added:,.0f})"


def table(rows: list[list[str]], head: list[str]) -> list[str]:
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

    def line(r: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))

    return [line(head), "  ".join("-" * w for w in widths), *map(line, rows)]


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads"


def main(argv: list[str] | None = None) -> int:
    try:
        cfg, opts, data_dir_given = parse(argv)
    except ConfigError as e:
        print(f"bench/pipeline.py: {e}", file=sys.stderr)
        return 2
    opts.command = shlex.join(["python", "bench/pipeline.py", *(sys.argv[1:] if argv is None else argv)])
    device = resolve_device(cfg)
    data_dir = Path(cfg.data_dir).expanduser() if data_dir_given or not SLICE.is_dir() else SLICE
    train_bs = opts.train_bs or (cfg.batch_size if device.type == "cuda" else min(cfg.batch_size, 4))
    train_batches = opts.train_batches or (20 if device.type == "cuda" else 2)
    peak = Peak(device)
    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    with tempfile.TemporaryDirectory(prefix="audiosweep-bench-") as tmp:
        work = Path(opts.workdir or tmp)
        sources = source_clips(data_dir, opts.n_clips)
        origin = f"{len(sources)} real clips of {data_dir}"
        if not sources:
            log(f"no valid ESC-50 clips under {data_dir / 'audio'}; using synthetic clips instead")
            sources = synthetic_sources(work / "synthetic")
            origin = f"{len(sources)} synthetic clips (no ESC-50 clips under {data_dir})"
        tree, rows = build_tree(work / "esc50", opts.n_clips, sources)
        meta = official_metadata().iloc[rows].reset_index(drop=True)
        targets = torch.tensor(meta.target.to_numpy(), dtype=torch.long)
        valid = (meta.fold == cfg.fold).to_numpy()
        train_idx, valid_idx = torch.from_numpy(np.flatnonzero(~valid)), torch.from_numpy(np.flatnonzero(valid))
        n, n_train, n_valid = len(meta), len(train_idx), len(valid_idx)
        k = min(opts.baseline_clips, n)
        # The baseline's clips: the same train/valid proportions, training clips first.
        k_train = max(1, round(k * n_train / n))
        base_rows = np.concatenate([train_idx.numpy()[np.linspace(0, n_train - 1, k_train).round().astype(int)],
                                    valid_idx.numpy()[np.linspace(0, n_valid - 1, k - k_train).round().astype(int)]
                                    if n_valid and k > k_train else np.array([], dtype=int)])
        base_paths = [tree / "audio" / meta.filename[i] for i in base_rows]
        scale = n / len(base_rows)

        results, peaks, rate_cfgs = {}, {}, {}
        for rate in opts.rates:
            rcfg = at_rate(cfg, rate)
            rate_cfgs[rate] = rcfg
            log(f"{rate} Hz: our path on {n} clips")
            cold, warm, stats, p = measure_ours(rcfg, tree, meta, targets, train_idx, valid_idx, device,
                                                work / f"cache-{rate}", opts.measure_epochs, peak)
            peaks.update({f"ours {rate} Hz, {k_}": v for k_, v in p.items()})
            log(f"{rate} Hz: per-item baseline on {len(base_rows)} clips")
            base, bp = measure_baseline(rcfg, base_paths, targets[base_rows], k_train, stats, device,
                                        cfg.batch_size, opts.measure_epochs, peak)
            peaks[f"baseline {rate} Hz, {len(base_rows)} clips"] = bp
            results[rate] = (cold, warm, PipelineTimes(base.first * scale, base.steady * scale))

        train = {}
        if not opts.skip_training:
            for arch in opts.archs:
                shape = (cfg.n_channels, cfg.n_mels, n_frames(cfg, ESC50_SAMPLES * cfg.sample_rate // ESC50_RATE))
                log(f"training throughput of {arch} at {shape}, batch {train_bs}")
                try:
                    train[arch] = measure_training(arch, cfg, shape, device, train_bs, train_batches, peak)
                except torch.OutOfMemoryError:
                    log(f"{arch}: out of memory at batch {train_bs}; pass a smaller --train-bs")
                    train[arch] = None
                    if device.type == "cuda":
                        torch.cuda.empty_cache()

    load = None if load_start is None else (load_start, os.getloadavg()[0])
    print_report(cfg, opts, device, origin, n, n_train, n_valid, len(base_rows), scale, rate_cfgs, results,
                 train, train_bs, train_batches, peaks, load)
    return 0


def print_report(cfg, opts, device, origin, n, n_train, n_valid, n_base, scale, rate_cfgs, results, train,
                 train_bs, train_batches, peaks, load) -> None:
    E = opts.epochs
    scaled = "measured" if scale == 1 else f"scaled x{scale:.2f} from {n_base} clips"
    busy = "" if load is None else f"; 1-min load average {load[0]:.1f} at start, {load[1]:.1f} at end"
    out = [f"audiosweep data-pipeline benchmark, {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}",
           f"command: {opts.command}",
           f"device {device} ({machine(device)}{busy})",
           f"torch {torch.__version__}, torchaudio {torchaudio.__version__}, Python {platform.python_version()}",
           f"data: {n} ESC-50-shaped clips (5 s, 44.1 kHz WAV; {n_train} train / {n_valid} valid, fold {cfg.fold} "
           f"validation) linked cyclically to {origin}",
           f"ours: measured on all {n} clips, {max(opts.measure_epochs, OURS_MIN_EPOCHS)} epochs; per-item "
           f"baseline: {scaled}, {opts.measure_epochs} epochs; steady = mean of the epochs after the first; totals "
           f"for a {E}-epoch run: first + {E - 1} x steady", ""]
    for rate, (cold, warm, base) in results.items():
        c = rate_cfgs[rate]
        out.append(f"Data pipeline at {rate} Hz (files on disk -> normalised batch on {device.type}), seconds: "
                   f"n_fft {c.n_fft}, hop {c.hop_samples}, win {','.join(map(str, c.win_lengths))}, n_mels {c.n_mels}, "
                   f"f_max {c.f_max:g}, input {c.n_channels} x {c.n_mels} x "
                   f"{n_frames(c, ESC50_SAMPLES * rate // ESC50_RATE)}")
        rows = [["ours, cold cache", fmt_s(cold.first), fmt_s(cold.steady), fmt_s(cold.total(E))],
                ["ours, warm cache", fmt_s(warm.first), fmt_s(warm.steady), fmt_s(warm.total(E))],
                [f"per-item baseline ({'measured' if scale == 1 else 'scaled'})", fmt_s(base.first),
                 fmt_s(base.steady), fmt_s(base.total(E))],
                ["ratio baseline / ours, cold", f"{base.first / cold.first:.1f}x", f"{base.steady / cold.steady:.0f}x",
                 f"{base.total(E) / cold.total(E):.1f}x"],
                ["ratio baseline / ours, warm", f"{base.first / warm.first:.1f}x", f"{base.steady / warm.steady:.0f}x",
                 f"{base.total(E) / warm.total(E):.1f}x"]]
        out += table(rows, ["", "first epoch", "steady epoch", f"{E} epochs"])
        p = cold.parts
        out += [f"  ours, one-time: decode + resample + cache write {fmt_s(p['decode_cold'])} s (cold) or cache read "
                f"{fmt_s(p['decode_warm'])} s (warm); log-mels + normalise {fmt_s(p['features'])} s; batch gather "
                f"{fmt_s(p['gather_first'])} s first epoch, {fmt_s(p['gather_steady'])} s steady", ""]
    if train:
        shape = (cfg.n_channels, cfg.n_mels, n_frames(cfg, ESC50_SAMPLES * cfg.sample_rate // ESC50_RATE))
        prec = resolve_precision(cfg, device)
        out.append(f"Training throughput at input {' x '.join(map(str, shape))}, batch {train_bs}, {prec}"
                   f"{', channels-last' if device.type == 'cuda' else ''}{', torch.compile' if cfg.compile else ''}: "
                   f"measured over {train_batches} batches after 1 warm-up; s/epoch and {E}-epoch times extrapolated "
                   f"to {n_train} train + {n_valid} valid clips")
        cold = results[cfg.sample_rate][0]
        rows = []
        for arch, t in train.items():
            if t is None:
                rows.append([arch, "out of memory", "", "", "", "", ""])
                continue
            epoch = n_train / t["train_sps"] + n_valid / t["eval_sps"]
            rows.append([arch, f"{t['train_sps']:.1f}", f"{t['eval_sps']:.1f}", fmt_s(epoch), fmt_s(E * epoch),
                         fmt_s(E * epoch + cold.total(E)), fmt_mem(t["mem"])])
        out += table(rows, ["arch", "train samples/s", "eval samples/s", "s/epoch (extrap.)",
                            f"{E} ep. training (extrap.)", f"{E} ep. run incl. data (extrap.)",
                            "peak memory (+ added)"])
        out.append("")
    out.append("Peak memory per stage, MiB: host peak RSS" + (" and GPU max allocated" if device.type == "cuda" else "")
               + ", each with what the stage added to the memory in use when it began")
    head = ["stage", "host peak", "added"] + (["GPU peak", "added"] if device.type == "cuda" else [])
    rows = [[k, f"{m.host:,.0f}", f"+{m.host_added:,.0f}"]
            + ([f"{m.gpu:,.0f}", f"+{m.gpu_added:,.0f}"] if m.gpu is not None else []) for k, m in peaks.items()]
    out += table(rows, head)
    out.append("")
    cold, _, base = results[cfg.sample_rate]
    out.append(f"{E}-epoch data-pipeline ratio at {cfg.sample_rate} Hz, cold cache (steady-state per epoch: "
               f"{base.steady / cold.steady:.0f}x):")
    out.append(f"ratio: {base.total(E) / cold.total(E):.1f}x")
    print("\n".join(out), flush=True)


if __name__ == "__main__":
    sys.exit(main())
