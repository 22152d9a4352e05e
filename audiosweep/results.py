"""The record contract: one JSON file per run (written atomically) and the files beside it, the metrics a run
logs, the schema of its history and summary. Every other module reads these names from here.

    results_dir/<run_id>.json        the record: config, history, summary, env, status, error
    results_dir/<run_id>.preds.npz   validation probabilities, targets, class names and clip names

Records may sit in subfolders (one per sweep); the folders in :data:`NON_RECORD_DIRS` hold none.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import secrets
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, TypedDict

import numpy as np

from .config import ENVIRONMENT, keys_with_role

RECORD_VERSION = 1
RECORD_SUFFIX = ".json"
PREDS_SUFFIX = ".preds.npz"
NON_RECORD_DIRS = frozenset({"wandb", "logs"})  # W&B's own files; the sweep runner's logs
REQUIRED_KEYS = ("config", "history", "summary", "status")
RECORD_KEYS = frozenset({"record_version", "run_id", *REQUIRED_KEYS})  # a JSON object with none is no record
STATUSES = ("finished", "failed")
# Keys that say where things live and how a run executes, not what it computes (Config's environment role).
NON_IDENTITY_KEYS = frozenset(keys_with_role(ENVIRONMENT))
# Metrics a run logs every epoch (history, W&B) and in its summary, with the direction that means better.
METRIC_GOALS = {"accuracy": "maximize", "best_accuracy": "maximize", "valid_loss": "minimize",
                "train_loss": "minimize"}
EPOCH_METRICS = ("train_loss", "valid_loss", "accuracy")
PACKAGES = ["torch", "torchvision", "torchaudio", "fastai", "fastcore", "wandb", "numpy", "soundfile"]


class HistoryRow(TypedDict):
    """One training epoch; ``epoch`` counts from 1 across the frozen and unfrozen phases."""

    epoch: int
    train_loss: float | None
    valid_loss: float | None
    accuracy: float | None
    time_s: float


HISTORY_KEYS = tuple(HistoryRow.__annotations__)


@dataclass
class Summary:
    """A run's final numbers; a failed run has only ``wall_time_s`` (and what it reached before failing)."""

    accuracy: float | None = None  # validation accuracy after the last epoch
    best_accuracy: float | None = None  # best validation accuracy of any epoch
    train_loss: float | None = None
    valid_loss: float | None = None
    epochs: int | None = None
    n_train: int | None = None
    n_valid: int | None = None
    feature_s: float | None = None  # seconds to compute and normalise the features
    norm_stats: dict | None = None  # normalisation statistics the model was trained with
    pretrained_weights: bool | None = None  # the body started from pretrained weights
    wall_time_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# Summary values analysis tabulates as numbers.
SUMMARY_METRICS = ("accuracy", "best_accuracy", "train_loss", "valid_loss", "epochs", "wall_time_s")


@dataclass(frozen=True)
class RunFiles:
    """Where one run's files live: its record and, beside it, its predictions."""

    record: Path

    @classmethod
    def of(cls, results_dir: str | os.PathLike, run_id: str) -> RunFiles:
        return cls(Path(results_dir) / f"{run_id}{RECORD_SUFFIX}")

    @property
    def run_id(self) -> str:
        return self.record.name.removesuffix(RECORD_SUFFIX)

    @property
    def preds(self) -> Path:
        return self.record.with_name(self.run_id + PREDS_SUFFIX)


def record_files(root: Path, recursive: bool = True) -> list[Path]:
    """Candidate record files under ``root``: ``*.json`` outside hidden (temporary) files and the folders that
    hold no records."""
    files = []
    for path in sorted(root.rglob(f"*{RECORD_SUFFIX}") if recursive else root.glob(f"*{RECORD_SUFFIX}")):
        parts = path.relative_to(root).parts
        if not (NON_RECORD_DIRS & set(parts[:-1]) or any(p.startswith(".") for p in parts)):
            files.append(path)
    return files


def config_id(config: dict[str, Any]) -> str:
    """Identity of a run's configuration (as recorded: effective values), independent of key order and of
    the keys that say where things live."""
    core = {k: v for k, v in config.items() if k not in NON_IDENTITY_KEYS}
    return hashlib.sha1(json.dumps(core, sort_keys=True, default=str).encode()).hexdigest()[:12]


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


def write_json_atomic(path: Path, obj: Any) -> Path:
    """Write ``obj`` to ``path`` via a temporary file and a rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, allow_nan=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def save_predictions(path: Path, probs: np.ndarray, targets: np.ndarray, classes: list[str],
                     filenames: list[str]) -> Path:
    """Validation probabilities, labels, class names and clip names, for confusion matrices offline."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
    np.savez_compressed(tmp, probs=probs.astype(np.float32), targets=targets.astype(np.int64),
                        classes=np.array(classes), filenames=np.array(filenames))
    os.replace(tmp, path)
    return path


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def environment(device: str | None = None, dataset_fingerprint: str | None = None) -> dict[str, Any]:
    versions = {}
    for p in PACKAGES:
        try:
            versions[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            versions[p] = None
    env = {"device": device, "python": sys.version.split()[0], "platform": platform.platform(),
           "hostname": platform.node(), "cpu_count": os.cpu_count(), "packages": versions,
           "git_commit": git_commit(), "dataset_fingerprint": dataset_fingerprint}
    if device and device.startswith("cuda"):
        import torch

        env["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return env


def make_record(config: dict[str, Any], run_id: str, status: str, history: list[HistoryRow], summary: Summary,
                env: dict, error: str | None = None, **extra: Any) -> dict[str, Any]:
    if status not in STATUSES:
        raise ValueError(f"record status must be one of {', '.join(STATUSES)}, got {status!r}")
    return {"record_version": RECORD_VERSION, "run_id": run_id, "config_id": config_id(config), "status": status,
            "error": error, "config": config, "history": history, "summary": summary.to_dict(), "env": env,
            **extra}


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a readable result record ({e})") from e


def check_record(rec: Any, path: Path) -> dict[str, Any]:
    """``rec`` when it has a record's keys, else a ValueError naming ``path``."""
    if not isinstance(rec, dict):
        raise ValueError(f"{path}: not a result record (a JSON {type(rec).__name__}, not an object)")
    missing = [k for k in REQUIRED_KEYS if k not in rec]
    if missing:
        raise ValueError(f"{path}: not a result record (missing {', '.join(missing)})")
    return rec


def load_record(path: Path) -> dict[str, Any]:
    """Read one record, failing with the file's name when it is not a valid record."""
    return check_record(read_json(path), path)
