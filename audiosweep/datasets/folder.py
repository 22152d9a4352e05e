"""Your own clips in one sub-folder per class (``data_dir/<class>/*.wav``); classes = the sorted folder names."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..errors import DatasetError
from .base import DatasetDef, check_labels, numbered

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg"}


def list_folder(data_dir: Path, **_: object) -> pd.DataFrame:
    """One row per audio file of each class folder (nested folders included); each file is its own group."""
    if not data_dir.is_dir():
        raise DatasetError(f"{data_dir}: no such folder; dataset folder needs data_dir with one sub-folder per class")
    classes = sorted(p.name for p in data_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DatasetError(f"{data_dir}: no class folders; dataset folder needs one sub-folder per class")
    rows, empty = [], []
    for label in classes:
        files = sorted(p for p in (data_dir / label).rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES
                       and not p.name.startswith("."))
        if not files:
            empty.append(label)
        rows += [(p.relative_to(data_dir).as_posix(), label) for p in files]
    if empty:
        raise DatasetError(f"{data_dir}: {len(empty)} class folder(s) without audio files "
                           f"({', '.join(sorted(AUDIO_SUFFIXES))}) (first: {empty[:3]})")
    meta = pd.DataFrame(rows, columns=["filename", "label"])
    check_labels(meta, str(data_dir))
    return numbered(meta.assign(fold=float("nan"), group=meta.filename))


FOLDER = DatasetDef("folder", list_folder, n_folds=None, default_seconds=5.0, strict=False)
