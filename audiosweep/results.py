"""Result records: one JSON file per run (written atomically), its validation predictions beside it."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import secrets
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

RECORD_VERSION = 1
# Keys that change where and how a run is logged, not what it computes.
NON_IDENTITY_KEYS = {"project", "wandb_mode", "results_dir", "cache_dir", "num_workers"}
PACKAGES = ["torch", "torchvision", "torchaudio", "fastai", "fastcore", "wandb", "numpy", "soundfile"]


def config_id(config: dict[str, Any]) -> str:
    """Identity of a run's configuration, independent of key order and of logging-only keys."""
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


def make_record(config: dict[str, Any], run_id: str, status: str, history: list[dict], summary: dict,
                env: dict, error: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"record_version": RECORD_VERSION, "run_id": run_id, "config_id": config_id(config), "status": status,
            "error": error, "config": config, "history": history, "summary": summary, "env": env, **extra}


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a readable result record ({e})") from e


def check_record(rec: Any, path: Path) -> dict[str, Any]:
    """``rec`` when it has a record's keys, else a ValueError naming ``path``."""
    if not isinstance(rec, dict):
        raise ValueError(f"{path}: not a result record (a JSON {type(rec).__name__}, not an object)")
    missing = [k for k in ("config", "history", "summary", "status") if k not in rec]
    if missing:
        raise ValueError(f"{path}: not a result record (missing {', '.join(missing)})")
    return rec


def load_record(path: Path) -> dict[str, Any]:
    """Read one record, failing with the file's name when it is not a valid record."""
    return check_record(read_json(path), path)
