"""UrbanSound8K (8732 clips of up to 4 s, 10 classes, 10 official folds): downloaded, variable clips.

On disk: ``audio/fold<k>/<slice_file_name>`` and ``metadata/UrbanSound8K.csv``. Clips of one freesound
recording (``fsID``) are one group; the official folds already keep each recording in one fold.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..errors import DatasetError
from .base import DatasetDef, check_inside, read_csv

URL = "https://zenodo.org/records/1203745/files/UrbanSound8K.tar.gz"
META = "metadata/UrbanSound8K.csv"
COLUMNS = ["slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class"]
N_FOLDS = 10


def list_urbansound8k(data_dir: Path, **_: object) -> pd.DataFrame:
    path = data_dir / META
    meta = read_csv(path, COLUMNS, dtype={"slice_file_name": str, "fsID": str, "class": str})
    for col in ("fold", "classID"):
        values = pd.to_numeric(meta[col], errors="coerce")
        bad = meta[col][values.isna() | (values != values.round())]
        if len(bad):
            raise DatasetError(f"{path}: {len(bad)} {col} value(s) are not integers (first: {list(bad[:3])})")
    outside = meta.fold[~meta.fold.between(1, N_FOLDS)]
    if len(outside):
        raise DatasetError(f"{path}: {len(outside)} fold value(s) outside 1..{N_FOLDS} (first: {list(outside[:3])})")
    names = meta.groupby("classID")["class"].nunique()
    if (names > 1).any() or meta.groupby("class").classID.nunique().gt(1).any():
        raise DatasetError(f"{path}: classID and class disagree (class IDs with several names: "
                           f"{list(names.index[names > 1][:3])}); restore the official metadata")
    check_inside(path, meta.slice_file_name, data_dir, "slice_file_name")
    dup = meta.slice_file_name[meta.slice_file_name.duplicated()]
    if len(dup):
        raise DatasetError(f"{path}: {len(dup)} clip(s) listed more than once (first: {list(dup[:3])})")
    fold = meta.fold.astype(int)
    return meta.assign(filename="fold" + fold.astype(str) + "/" + meta.slice_file_name, label=meta["class"],
                       target=meta.classID.astype(int), fold=fold, group=meta.fsID)


URBANSOUND8K = DatasetDef("urbansound8k", list_urbansound8k, n_folds=N_FOLDS, default_seconds=4.0, strict=False,
                          audio_dir="audio", download_marker=META, download_url=URL,
                          default_dir="data/UrbanSound8K", checksums_url="https://zenodo.org/api/records/1203745")
