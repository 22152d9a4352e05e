"""The printed report of bench/pipeline.py: setup, a table per rate and the augmented one, training throughput,
peak memory, the augmented per-epoch ratio, and ``ratio: <N>x`` last."""

from __future__ import annotations

import platform

import torch
import torchaudio

from audiosweep.config import FIELDS, Config, gate_keys
from audiosweep.data import ESC50_CLIPS
from audiosweep.device import resolve_precision
from audiosweep.features import input_shape
from bench.measure import cores, ratio_row, secs, table
from bench.results import BenchResult, RateResult


def report(r: BenchResult) -> str:
    """The printed report: setup, a table per rate (and the augmented one), training throughput, peak memory, the
    augmented per-epoch ratio, and ``ratio: <N>x`` last."""
    o, cfg, n, gpu, res = r.opts, r.cfg, r.n_train + r.n_valid, r.device.type == "cuda", r.rates[r.cfg.sample_rate]
    E, scale, w = o.epochs, n / r.n_baseline, res.workers
    busy = "" if r.load is None else f"; 1-min load average {r.load[0]:.1f} at start, {r.load[1]:.1f} at end"
    out = [f"audiosweep data-pipeline benchmark, {r.started:%Y-%m-%d %H:%M %Z}", f"command: {r.command}",
           f"device {r.device} ({r.machine}{busy})",
           f"torch {torch.__version__}, torchaudio {torchaudio.__version__}, Python {platform.python_version()}",
           data_line(r),
           f"ours: measured on all {n} clips, {len(res.gather)} epochs, interleaved with the fair baseline's (served "
           f"on all {n}, computed once on {r.n_baseline}, scaled); old per-item baselines: "
           f"{'measured' if scale == 1 else f'scaled x{scale:.2f} from {r.n_baseline} clips'}, {o.measure_epochs} "
           f"epochs, in 1 process ({torch.get_num_threads()} torch threads) and in a DataLoader with {w} workers (= "
           f"CPU cores, 1 torch thread each); steady = median of the epochs after the first; totals for a {E}-epoch "
           f"run: one-time work + first + {E - 1} x steady", ""]
    for rate, rr in r.rates.items():
        c, cold, warm = rr.cfg, rr.ours(cold=True), rr.ours(cold=False)
        fair = rr.fair.times
        bases = {"1 process": rr.baseline, f"{w} workers": rr.workers_baseline}
        out.append(f"Data pipeline at {rate} Hz (files on disk -> normalised batch on {r.device.type}), seconds: "
                   f"n_fft {c.n_fft}, hop {c.hop_samples}, win {','.join(map(str, c.win_lengths))}, n_mels {c.n_mels}, "
                   f"f_max {c.mel_f_max:g}, input {' x '.join(map(str, input_shape(c)))}")
        rows = [[name, t.first, t.steady, t.total(E)] for name, t in [
            ("ours, cold cache", cold), ("ours, warm cache", warm), (f"fair baseline, {rr.fair.workers} workers", fair),
            *((f"old: per-item baseline, {k} ({'measured' if scale == 1 else 'scaled'})", b)
              for k, b in bases.items())]]
        rows += [ratio_row(f"ratio fair / ours, {which}", fair, t, E) for which, t in (("cold", cold), ("warm", warm))]
        rows += [ratio_row(f"old: ratio {k} / ours, {which}", b, t, E) for k, b in bases.items()
                 for which, t in (("cold", cold), ("warm", warm))]
        out += table(rows, ["", "first epoch", "steady epoch", f"{E} epochs"])
        out += [f"  fair baseline: spectrograms computed once in a DataLoader with {rr.fair.workers} workers "
                f"{secs(rr.fair.compute)} s ({'measured' if scale == 1 else 'scaled'}; worker start-up included), "
                f"then served by a DataLoader with {rr.fair.workers} persistent workers (batch {c.batch_size}, "
                f"validation {2 * c.batch_size}), measured on all {n} clips, epochs interleaved with ours; its workers "
                f"start once: {secs(rr.fair.start)} s in the first epoch",
                "  old baselines (secondary): decode and compute the mels again every epoch",
                f"  ours, one-time: decode + resample + cache write {secs(rr.decode_cold)} s (cold) or cache read "
                f"{secs(rr.decode_warm)} s (warm); log-mels + normalise {secs(rr.features)} s; batch gather "
                f"{secs(rr.gather[0])} s first epoch, {secs(cold.steady)} s steady", ""]
        if rr.aug is not None:
            out += report_augmented(rr, r.n_train, n, E, r.device)
    cold, base = res.ours(cold=True), res.baseline
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
    out.append(f"old (secondary): {E}-epoch ratio against the single-process per-item baseline that decodes and "
               f"computes the mels every epoch: {base.total(E) / cold.total(E):.1f}x (steady epoch "
               f"{base.steady / cold.steady:.0f}x)")
    if res.aug is not None:
        a = res.aug
        out.append(f"old (secondary): augmented ratio against the per-item PitchShift baseline in {w} workers: "
                   f"{a.baseline.steady / a.ours(0.0).steady:.1f}x per steady epoch")
        out.append(f"augmented ratio: {a.fair.times.steady / a.ours(0.0).steady:.1f}x per steady epoch, "
                   f"{a.fair.times.total(E) / a.ours(rr_one_time(res)).total(E):.1f}x over {E} epochs at "
                   f"{cfg.sample_rate} Hz (fair augmented baseline: our operations per item in {a.fair.workers} "
                   "persistent workers / ours)")
    out.append(load_line(r.load, cores()))
    fair = res.fair.times
    out.append(f"{E}-epoch data-pipeline ratio at {cfg.sample_rate} Hz, cold cache, against the fair baseline "
               f"(spectrograms once in {res.fair.workers} workers, then a DataLoader with {res.fair.workers} "
               f"persistent workers; steady epoch {fair.steady / cold.steady:.1f}x):")
    return "\n".join([*out, f"ratio: {fair.total(E) / cold.total(E):.2f}x"])


def rr_one_time(res: RateResult) -> float:
    """Our augmented path's one-time work: decode with a cold cache, and the features."""
    return res.decode_cold + res.features


def load_line(load: tuple[float, float] | None, n_cores: int) -> str:
    """Quiet or busy: busy when other processes used more than half the cores before the bench began, or the load
    at its end exceeds what the bench itself adds (about one per core)."""
    if load is None:
        return "machine: load average unknown (no os.getloadavg): quiet or busy not known"
    busy = load[0] > 0.5 * n_cores or load[1] > 1.5 * n_cores
    return (f"machine: {'BUSY' if busy else 'quiet'} (1-min load average {load[0]:.2f} at start, {load[1]:.2f} at end, "
            f"{n_cores} cores){': other processes shared the cores, the times are slower and noisier' if busy else ''}")


def data_line(r: BenchResult) -> str:
    """Which dataset, how many clips of what origin, and how they are split."""
    n, split = r.n_train + r.n_valid, f"{r.n_train} train / {r.n_valid} valid"
    if r.spec == ESC50_CLIPS:
        return (f"data: {n} ESC-50-shaped clips (5 s, 44.1 kHz WAV; {split}, fold {r.cfg.valid_fold} validation) "
                f"linked cyclically to {r.origin}")
    s = r.spec
    made = (f"{s.seconds:g} s at {s.native_rate} Hz, mono" if s.strict else
            f"of any rate and channels: downmixed, cropped or padded ({s.pad_mode}) to {s.seconds:g} s")
    title = s.title if s.title.endswith(s.dataset) else f"{s.title} (dataset {s.dataset})"
    return f"data: {title}, {n} clips ({made}; {split}): {r.origin}"


def describe(cfg: Config) -> str:
    """The augmentation keys that act: those switched on and their ranges."""
    on = cfg.effective_dict()
    keys = [k for k, f in FIELDS.items() if f.metadata["group"] == "augmentation" and on[k]
            and (not gate_keys(k) or any(on[g] for g in gate_keys(k)))]
    return ", ".join(f"{k} {on[k]:g}" if isinstance(on[k], float) else f"{k} {on[k]}" for k in keys) or "none"


def report_augmented(rr: RateResult, n_train: int, n_clips: int, epochs: int, device: torch.device) -> list[str]:
    """The augmented table at ``rr``'s rate: ours (cold cache) and the baseline in workers, and how ours was timed."""
    a = rr.aug
    ours, b, scale = a.ours(rr_one_time(rr)), a.baseline, n_clips / a.n_baseline
    fair, how = a.fair.times, "measured" if scale == 1 else "scaled"
    rows = [["ours augmented, cold cache", ours.first, ours.steady, ours.total(epochs)],
            [f"fair augmented baseline, {a.fair.workers} workers ({how})", fair.first, fair.steady,
             fair.total(epochs)],
            [f"old: per-item augmented baseline, {a.workers} workers ({how})", b.first, b.steady, b.total(epochs)],
            ratio_row("ratio fair / ours", fair, ours, epochs),
            ratio_row("old: ratio per-item baseline / ours", b, ours, epochs)]
    steady_train = sum(a.train[1:]) / len(a.train[1:])
    return [f"Augmented training batches at {a.cfg.sample_rate} Hz ({describe(a.cfg)}), seconds; the baseline in a "
            f"DataLoader with {a.workers} workers (= CPU cores), "
            f"{'measured' if scale == 1 else f'scaled x{scale:.2f} from {a.n_baseline} clips'}; ours "
            f"{'measured' if a.timed_clips == n_train else f'training batches scaled from {a.timed_clips} clips'}",
            *table(rows, ["", "first epoch", "steady epoch", f"{epochs} epochs"]),
            f"  ours augmented: training batches {secs(steady_train)} s per steady epoch for {n_train} clips on "
            f"{device.type} (on a GPU the target is under 1 s), validation batches {secs(a.valid[-1])} s; one-time: "
            f"decode + resample + cache write {secs(rr.decode_cold)} s, log-mels + normalise (validation features, "
            f"statistics) {secs(rr.features)} s, TrainingBatches and loaders {secs(a.setup)} s",
            f"  fair augmented baseline: training waveforms and validation spectrograms computed once in a DataLoader "
            f"with {a.fair.workers} workers {secs(a.fair.compute)} s; every epoch each training item gets our "
            f"operations (TrainingBatches on a batch of one) in {a.fair.workers} persistent workers; their start-up "
            f"{secs(a.fair.start)} s once; epochs interleaved with ours",
            "  old (secondary): the per-item baseline decoding every epoch, with torch-audiomentations' time-domain "
            "PitchShift (a different algorithm from our spectral warps)", ""]
