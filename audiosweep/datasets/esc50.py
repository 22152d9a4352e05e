"""ESC-50 (2000 clips, 50 classes, 5 official folds) and its ESC-10 subset: downloaded, strict 5 s clips."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..errors import DatasetError
from .base import DatasetDef, read_csv

ESC50_RATE = 44100
ESC50_SECONDS = 5
ESC50_SAMPLES = ESC50_SECONDS * ESC50_RATE
META = "meta/esc50.csv"
URL = "https://github.com/karolpiczak/ESC-50/archive/refs/heads/master.zip"
OFFICIAL_META = Path(__file__).resolve().parents[2] / "esc50_folds" / "esc50.csv"
FOLD_COLUMNS = ["filename", "fold", "target", "category", "esc10", "src_file", "take"]


def official_metadata() -> pd.DataFrame:
    return pd.read_csv(OFFICIAL_META)


def read_metadata(data_dir: Path) -> pd.DataFrame:
    """The dataset's own metadata, checked against the official fold assignment shipped in esc50_folds/."""
    path = data_dir / META
    meta = read_csv(path, FOLD_COLUMNS)
    dup = meta.filename[meta.filename.duplicated()]
    if len(dup):
        raise DatasetError(f"{path}: {len(dup)} clip(s) listed more than once (first: {list(dup[:3])}); restore "
                           "the official meta/esc50.csv")
    official = official_metadata().set_index("filename")
    mine = meta.set_index("filename")
    unknown = mine.index.difference(official.index)
    if len(unknown) or len(mine) != len(official):
        raise DatasetError(f"{path}: {len(mine)} rows, {len(unknown)} not in the official ESC-50 metadata "
                           f"(first: {list(unknown[:3])}); expected the official 2000 rows")
    cols = ["fold", "target", "category", "src_file"]
    differ = (mine.loc[official.index, cols].astype(str) != official[cols].astype(str)).any(axis=1)
    if differ.any():
        raise DatasetError(f"{path}: {int(differ.sum())} rows disagree with the official fold assignment "
                           f"(first: {list(official.index[differ][:3])}); restore the official meta/esc50.csv")
    return meta.reset_index(drop=True)


def list_esc50(data_dir: Path, **_: object) -> pd.DataFrame:
    meta = read_metadata(data_dir)
    return meta.assign(label=meta.category, group=meta.src_file)


def list_esc10(data_dir: Path, **_: object) -> pd.DataFrame:
    meta = list_esc50(data_dir)
    return meta[meta.esc10.astype(str).str.lower().eq("true")].reset_index(drop=True)


_COMMON = dict(n_folds=5, default_seconds=float(ESC50_SECONDS), strict=True, native_rate=ESC50_RATE, audio_dir="audio",
               download_marker=META, download_url=URL, fingerprint_columns=tuple(FOLD_COLUMNS),
               default_dir="data/ESC-50")
ESC50 = DatasetDef("esc50", list_esc50, **_COMMON)
ESC10 = DatasetDef("esc10", list_esc10, **_COMMON)
