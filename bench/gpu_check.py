"""The Python steps of bench/gpu_check.sh (../shared/gpu/CHECKLIST.md), each writing its figures under a folder.

    python bench/gpu_check.py gpu-tests                 node ids of the tests that need CUDA (decorators naming it)
    python bench/gpu_check.py data ROOT [--dry]         the synthetic ESC-50 tree (2000 real-size clips; dry: 50)
    python bench/gpu_check.py train OUT -- ARGS...      train.py ARGS in this process; peak GPU memory to OUT
    python bench/gpu_check.py epochs RESULTS OUT        per-epoch seconds of the run under RESULTS (record or progress)
    python bench/gpu_check.py gpu-log CSV OUT           mean and peak utilisation and memory of nvidia-smi's samples
    python bench/gpu_check.py sweep RESULTS WALL OUT    runs, their seconds, runs per hour of a sweep's records
    python bench/gpu_check.py sync OUT [--batches N]    host syncs of a few training batches (set_sync_debug_mode)
"""

from __future__ import annotations

import argparse
import ast
import csv
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def write(out: Path, name: str, figures: dict) -> None:
    """``figures`` as ``key: value`` lines into ``out/name``, and echoed."""
    out.mkdir(parents=True, exist_ok=True)
    text = "".join(f"{k}: {v}\n" for k, v in figures.items())
    (out / name).write_text(text)
    print(f"[{name}]\n{text}", end="", flush=True)


def gpu_tests(tests: Path = REPO / "tests") -> list[str]:
    """Tests a CPU machine skips for want of CUDA: those whose decorators, or whose module's ``pytestmark``,
    mention cuda."""
    ids = []
    for path in sorted(tests.glob("test_*.py")):
        source = path.read_text()
        tree = ast.parse(source)
        marks = [n for n in tree.body if isinstance(n, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "pytestmark" for t in n.targets)]
        rel = path.relative_to(tests.parent).as_posix()
        if any("cuda" in ast.get_source_segment(source, m).lower() for m in marks):
            ids.append(rel)
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.ClassDef) and node.name.startswith(("test", "Test")) and any(
                    "cuda" in ast.get_source_segment(source, d).lower() for d in node.decorator_list):
                ids.append(f"{rel}::{node.name}")
    return ids


def make_data(root: Path, dry: bool) -> None:
    """Real size: all 2000 official names (1600 train / 400 valid with fold 1), 5 s at 44.1 kHz; dry: one clip per
    ESC-10 class and fold (runs need ``--allow_missing``)."""
    from audiosweep.synthetic import make_synthetic_esc50

    t = time.perf_counter()
    make_synthetic_esc50(root, esc10=dry, per_class_per_fold=1 if dry else None)
    n = len(list((root / "audio").glob("*.wav")))
    print(f"{n} synthetic clips written to {root} in {time.perf_counter() - t:.1f} s", flush=True)


def train(out: Path, argv: list[str]) -> int:
    """train.py's main with ``argv`` in this process; then its peak GPU memory (allocated, reserved) into
    ``out/train_memory.txt``."""
    import torch

    sys.path.insert(0, str(REPO))
    import train as train_py

    t = time.perf_counter()
    code = train_py.main(argv)
    figures = {"exit_status": code, "seconds_in_main": round(time.perf_counter() - t, 1)}
    if torch.cuda.is_available():
        figures |= {"peak_allocated_MiB": round(torch.cuda.max_memory_allocated() / 2**20),
                    "peak_reserved_MiB": round(torch.cuda.max_memory_reserved() / 2**20),
                    "device": torch.cuda.get_device_name()}
    else:
        figures["peak_gpu_memory"] = "no CUDA (dry mode)"
    write(out, "train_memory.txt", figures)
    return code


def epochs(results: Path, out: Path) -> None:
    """Per-epoch seconds of the one run under ``results``: from its record, or (a run stopped by its time limit)
    from its progress rows."""
    from audiosweep.results import PROGRESS_SUFFIX

    records = [p for p in results.glob("*.json")]
    if records:
        rows, source = json.loads(records[0].read_text())["history"], records[0].name
    else:
        progress = sorted(results.glob(f"*{PROGRESS_SUFFIX}"))
        rows = [json.loads(ln) for p in progress for ln in p.read_text().splitlines() if ln.strip()]
        source = ", ".join(p.name for p in progress) or "nothing: the run wrote no epoch"
    times = [r["time_s"] for r in rows]
    summary = json.loads(records[0].read_text())["summary"] if records else {}
    write(out, "train_epochs.txt", {
        "source": source, "epochs": len(times), "epoch_s": " ".join(f"{s:.2f}" for s in times),
        "first_epoch_s": f"{times[0]:.2f}" if times else "n/a",
        "median_epoch_s": f"{statistics.median(times[1:] or times):.2f}" if times else "n/a",
        "sum_epochs_s": f"{sum(times):.1f}", "feature_s": summary.get("feature_s"),
        "wall_time_s": summary.get("wall_time_s"), "accuracy": summary.get("accuracy")})


def gpu_log(samples: Path, out: Path) -> None:
    """Mean and peak GPU utilisation and memory of ``nvidia-smi --query-gpu=utilization.gpu,memory.used
    --format=csv,noheader,nounits -l 1`` samples."""
    rows = [r for r in csv.reader(samples.open()) if len(r) >= 2] if samples.is_file() else []
    util, mem = [float(r[0]) for r in rows], [float(r[1]) for r in rows]
    write(out, f"{samples.stem}_summary.txt", {
        "samples": len(rows), "mean_utilisation_pct": f"{statistics.mean(util):.0f}" if util else "n/a",
        "max_utilisation_pct": f"{max(util):.0f}" if util else "n/a",
        "max_memory_used_MiB": f"{max(mem):.0f}" if mem else "n/a"})


def sweep(results: Path, wall: float, out: Path) -> None:
    """The sweep's records: how many finished, each run's wall time, runs per hour against one at a time."""
    records = [json.loads(p.read_text()) for p in sorted(results.rglob("*.json"))
               if p.parent.name != "logs" and not p.name.startswith(".")]
    records = [r for r in records if isinstance(r, dict) and "summary" in r]
    runs = [r["summary"].get("wall_time_s") or 0.0 for r in records]
    write(out, "sweep.txt", {
        "records": len(records), "finished": sum(r.get("status") == "finished" for r in records),
        "run_wall_s": " ".join(f"{s:.1f}" for s in runs), "sweep_wall_s": f"{wall:.1f}",
        "runs_per_hour": f"{3600 * len(records) / wall:.0f}" if wall > 0 else "n/a",
        "runs_per_hour_one_at_a_time_est": f"{3600 * len(runs) / sum(runs):.0f}" if sum(runs) else "n/a"})


def sync_check(out: Path, n_batches: int, dry: bool) -> None:
    """A few training batches of a run's Learner (ResNet-18 at the config's input size on random features; dry: a
    small CNN on small input) with
    ``torch.cuda.set_sync_debug_mode("warn")`` on from the second batch on: the synchronising calls warned per
    batch. Without CUDA the batches run on the CPU and nothing is counted."""
    import torch
    from fastai.callback.core import Callback

    from audiosweep.config import merge
    from audiosweep.device import feature_dtype, resolve_device
    from audiosweep.features import input_shape
    from audiosweep.loaders import make_dls
    from audiosweep.training import build_learner

    cuda = torch.cuda.is_available()
    small = {"sample_rate": 16000, "n_fft": 512, "win_length": 400, "hop_length": 160, "n_mels": 32,
             "batch_size": 8} if dry else {}
    cfg = merge([{"arch": "simple_cnn" if dry else "resnet18", "pretrained": False,
                  "device": "cuda" if cuda else "cpu", **small}])
    device, shape, bs = resolve_device(cfg), input_shape(cfg), cfg.batch_size
    n_train = bs * (n_batches + 1)
    feats = torch.randn(n_train + 2 * bs, *shape, device=device, dtype=feature_dtype(cfg, device))
    dls = make_dls(feats, torch.randint(0, 50, (len(feats),), device=device), torch.arange(n_train),
                   torch.arange(n_train, len(feats)), cfg, channels_last=cuda, device=device)

    class SyncDebug(Callback):
        """Sync-debug mode on around every training batch but the first (warm-up: cuDNN picks its algorithms)."""

        def before_batch(self):
            if cuda and self.training and self.iter > 0:
                torch.cuda.set_sync_debug_mode("warn")

        def after_batch(self):
            if cuda:
                torch.cuda.set_sync_debug_mode("default")

    learn = build_learner(cfg, dls, shape[0], 50, device, [SyncDebug()])
    with warnings.catch_warnings(record=True) as caught, learn.no_bar(), learn.no_logging():
        warnings.simplefilter("always")
        learn.fit_one_cycle(1, cfg.learning_rate)
    syncs = [w for w in caught if "synchroniz" in str(w.message).lower()]
    where = sorted({f"{Path(w.filename).name}:{w.lineno}" for w in syncs})
    write(out, "sync_debug.txt", {
        "device": str(device), "input": " x ".join(map(str, shape)), "batch": bs, "batches_watched": n_batches,
        "sync_warnings": len(syncs) if cuda else "not counted: no CUDA (dry mode)",
        "per_batch": f"{len(syncs) / n_batches:.1f}" if cuda else "n/a", "where": " ".join(where) or "-"})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/gpu_check.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("gpu-tests")
    d = sub.add_parser("data")
    d.add_argument("root", type=Path)
    d.add_argument("--dry", action="store_true")
    t = sub.add_parser("train")
    t.add_argument("out", type=Path)
    t.add_argument("args", nargs=argparse.REMAINDER)
    e = sub.add_parser("epochs")
    e.add_argument("results", type=Path)
    e.add_argument("out", type=Path)
    g = sub.add_parser("gpu-log")
    g.add_argument("csv", type=Path)
    g.add_argument("out", type=Path)
    s = sub.add_parser("sweep")
    s.add_argument("results", type=Path)
    s.add_argument("wall", type=float)
    s.add_argument("out", type=Path)
    y = sub.add_parser("sync")
    y.add_argument("out", type=Path)
    y.add_argument("--batches", type=int, default=4)
    y.add_argument("--dry", action="store_true")
    a = p.parse_args(argv)
    if a.cmd == "gpu-tests":
        print("\n".join(gpu_tests()))
    elif a.cmd == "data":
        make_data(a.root, a.dry)
    elif a.cmd == "train":
        return train(a.out, [x for x in a.args if x != "--"])
    elif a.cmd == "epochs":
        epochs(a.results, a.out)
    elif a.cmd == "gpu-log":
        gpu_log(a.csv, a.out)
    elif a.cmd == "sweep":
        sweep(a.results, a.wall, a.out)
    else:
        sync_check(a.out, a.batches, a.dry)
    return 0


if __name__ == "__main__":
    sys.exit(main())
