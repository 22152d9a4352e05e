"""The progress files of running runs (``<run_id>.progress.jsonl``: one row per epoch, appended by train.py while
it trains), as the runner reads them: a running run's file found by its launch id, its complete rows read safely.
Hyperband's pruner (early_terminate) reads each run's metric from them, the runner's ETA their epoch times."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

from tqdm.std import tqdm  # not tqdm.auto: it warns in Jupyter without ipywidgets

from .. import results
from .cost import run_epochs

_warned: set[tuple[Path, int]] = set()  # the progress lines warned about, once each


def finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The complete lines of a progress file (a line being written is left for the next read); an unreadable line
    (not UTF-8 JSON, or not an epoch's row with numbers or nulls as metrics) is skipped with one warning naming the
    file and line."""
    try:
        data = path.read_bytes()
    except OSError:
        return []
    rows = []
    for i, line in enumerate(data.splitlines(keepends=True), start=1):
        if not line.endswith(b"\n"):
            break
        try:
            row = json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            row = None
        if isinstance(row, dict) and type(row.get("epoch")) is int and all(
                row.get(k) is None or finite(row[k]) for k in results.EPOCH_METRICS):
            rows.append(row)
        elif (path, i) not in _warned:
            _warned.add((path, i))
            tqdm.write(f"warning: {path}, line {i}: unreadable progress line, skipped (not a JSON row of an "
                       "epoch and its metrics)", file=sys.stderr)
    return rows


def find_file(folder: Path, launch: str, started: float, claimed: set[Path]) -> Path | None:
    """The progress file of the run launched as ``launch`` at ``started`` (time.time()): the one not ``claimed``
    by another run, written since then, whose rows carry that launch id (runners on other machines share the
    folder and its process ids); None before its first epoch ends."""
    for path in folder.glob(f"*{results.PROGRESS_SUFFIX}"):
        rows = read_rows(path) if path not in claimed and path.stat().st_mtime >= started - 1 else []
        if rows and rows[0].get("launch") == launch:
            return path
    return None


def projected_seconds(rows: list[dict[str, Any]], epochs: int, since_start: float) -> float | None:
    """A running run's total seconds from its progress ``rows`` (the epochs done, each with its ``time_s``), the
    last written ``since_start`` seconds after the run started: the time spent outside its epochs so far
    (start-up, data, features) plus its mean epoch time times its ``epochs``; None before its first epoch."""
    times = [r["time_s"] for r in rows if finite(r.get("time_s"))]
    if not times:
        return None
    return max(since_start - sum(times), 0.0) + epochs * sum(times) / len(times)


class Projections:
    """The running runs' projected total seconds, from their progress files (found once, by launch id), for the
    runner's ETA before any run has ended."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.files: dict[str, Path] = {}  # launch id -> progress file, of the runs running now

    def seconds(self, jobs: list[Any]) -> list[float | None]:
        """Each of ``jobs`` (the runner's running Jobs) projected: None before its first epoch ends, or where its
        configuration is not known (a bayes trial's is, a W&B agent's is not)."""
        self.files = {launch: p for launch, p in self.files.items() if launch in {j.launch for j in jobs}}
        return [self._seconds(j) for j in jobs]

    def _seconds(self, job: Any) -> float | None:
        if "n_epochs" not in job.run.config:
            return None
        path = self.files.get(job.launch) or find_file(self.folder, job.launch, job.started, set(self.files.values()))
        if path is None:
            return None
        self.files[job.launch] = path
        try:
            since_start = path.stat().st_mtime - job.started
        except OSError:
            return None
        return projected_seconds(read_rows(path), run_epochs(job.run.config), since_start)
