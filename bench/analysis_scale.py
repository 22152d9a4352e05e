"""How analysis and planning scale: ``analysis.summarize`` and ``analysis.report`` over N synthetic result records,
and ``python -m audiosweep.sweep check`` over grids of 10 to 10,000 points, each timed in-process (imports done
before, as warm as a notebook), median of ``--repeats``.

    python bench/analysis_scale.py                             # this checkout: 1k and 10k records, 10/1000/10000 points
    python bench/analysis_scale.py --against /tmp/base         # and a baseline checkout, rounds interleaved

``check`` refuses grids over MAX_GRID_POINTS (1000) and offers no way past it (run_cap cuts the grid to 1000 runs):
the 10,000-point row runs the same ``check`` with that limit raised in this process, and is labelled so.
With ``--against DIR`` each round runs one repeat of every measure in a subprocess with PYTHONPATH=DIR, then one
with this checkout, alternating, on the same records and sweep files; the table gives both medians.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LABELS = {"summarize": "summarize {n} records", "report": "report {n} records", "check": "check {n} grid points"}


def write_records(folder: Path, n: int) -> Path:
    """``n`` finished runs (2 epochs each) of a 3 x 5 x 2 grid (n_mels, learning_rate, arch) over trials."""
    from tests.analysis_records import write_run

    out = folder / f"records{n}" / "scale"
    out.mkdir(parents=True)
    for i in range(n):
        write_run(out, f"r{i:05d}", round(0.6 + 0.3 * ((i * 7919) % 1000) / 1000, 4),
                  n_mels=(32, 64, 128)[i % 3], learning_rate=(1e-4, 3e-4, 1e-3, 3e-3, 1e-2)[i // 3 % 5],
                  arch=("simple_cnn", "resnet18")[i // 15 % 2], trial_num=i // 30 + 1)
    return out.parent


def write_grid(folder: Path, n: int) -> Path:
    """A grid sweep file of ``n`` (10, 1000 or 10000) points over learning_rate, n_mels, batch_size, trial_num."""
    axes = {"learning_rate": [round(1e-4 * (i + 1), 6) for i in range(10)], "n_mels": [32 + 8 * i for i in range(10)],
            "batch_size": [8 + 4 * i for i in range(10)], "trial_num": list(range(1, 11))}
    params = {k: {"values": v} for k, v in list(axes.items())[:len(str(n)) - 1]}
    path = folder / f"grid{n}.yaml"
    path.write_text(json.dumps({"program": str(ROOT / "train.py"), "method": "grid",
                                "metric": {"name": "accuracy", "goal": "maximize"},
                                "parameters": {"arch": {"value": "simple_cnn"}, **params}}))
    return path


def measure(work: Path, records: list[int], grids: list[int]) -> dict[str, float]:
    """One timing of each measure, in this process (seconds, by label)."""
    from analysis import report, summarize
    from audiosweep.sweep import cli, spec

    out: dict[str, float] = {}

    def timed(label: str, main, argv: list[str]) -> None:
        t = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            code = main(argv)
        out[label] = time.perf_counter() - t
        if code:
            raise SystemExit(f"{label}: exit status {code}")

    for n in records:
        src = str(work / f"records{n}")
        timed(LABELS["summarize"].format(n=n), summarize.main, [src, "--by", "n_mels,learning_rate"])
        timed(LABELS["report"].format(n=n), report.main, [src, "--out", str(work / f"report{n}")])
    for n in grids:
        label = LABELS["check"].format(n=n) + (" (limit raised)" if n > spec.MAX_GRID_POINTS else "")
        saved, spec.MAX_GRID_POINTS = spec.MAX_GRID_POINTS, max(spec.MAX_GRID_POINTS, n)
        try:
            timed(label, cli.main, ["check", str(work / f"grid{n}.yaml"), "--no_weights"])
        finally:
            spec.MAX_GRID_POINTS = saved
    return out


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", default="1000,10000", help="record counts (default 1000,10000)")
    p.add_argument("--grids", default="10,1000,10000", help="grid sizes: 10, 100, 1000 or 10000 (default all but 100)")
    p.add_argument("--repeats", type=int, default=3, help="timings per measure; the median is shown (default 3)")
    p.add_argument("--against", metavar="DIR", help="a baseline checkout, timed in interleaved rounds")
    p.add_argument("--work", metavar="DIR", help="(internal) the folder of records and sweep files")
    p.add_argument("--once", action="store_true", help="(internal) one round, as JSON on stdout")
    args = p.parse_args(argv)
    records, grids = [int(x) for x in args.records.split(",") if x], [int(x) for x in args.grids.split(",") if x]
    if args.once:
        print(json.dumps(measure(Path(args.work), records, grids)))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        t = time.perf_counter()
        for n in records:
            write_records(work, n)
        for n in grids:
            write_grid(work, n)
        print(f"wrote {', '.join(map(str, records))} records and {len(grids)} sweep files in "
              f"{time.perf_counter() - t:.0f} s; {load()}", flush=True)
        sides = {"this": str(ROOT), **({"baseline": args.against} if args.against else {})}
        times: dict[str, dict[str, list[float]]] = {side: {} for side in sides}
        for _ in range(args.repeats):
            for side, path in reversed(sides.items()):
                env = {**os.environ, "PYTHONPATH": path}
                res = subprocess.run([sys.executable, __file__, "--once", "--work", tmp, "--records", args.records,
                                      "--grids", args.grids], env=env, capture_output=True, text=True, cwd=path)
                if res.returncode:
                    raise SystemExit(f"{side}: {res.stderr[-2000:]}")
                for label, s in json.loads(res.stdout.splitlines()[-1]).items():
                    times[side].setdefault(label, []).append(s)
        print(f"medians of {args.repeats} ({'interleaved with the baseline, ' if args.against else ''}{load()})")
        head = f"{'measure':<44}" + "".join(f"{side:>12}" for side in reversed(sides))
        print(head + ("     ratio" if args.against else ""))
        for label in times["this"]:
            med = {side: statistics.median(times[side][label]) for side in sides}
            line = f"{label:<44}" + "".join(f"{med[side]:>11.2f}s" for side in reversed(sides))
            print(line + (f"{med['baseline'] / med['this']:>9.1f}x" if args.against else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
