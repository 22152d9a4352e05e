"""GTZAN genres (1000 clips of about 30 s, 10 genres): ``genres/<genre>/<genre>.000NN.wav``; downloaded,
variable clips. It has no official split; the field's protocol is 10-fold stratified cross-validation, so
``split: official`` uses 10 fixed folds: within each genre, the clips in file-name order go to folds 1, 2, ...,
10, 1, ... (100 clips per genre: 10 of each genre per fold). One of its files (jazz.00054) is known to be
unreadable: ``--allow_missing true`` leaves it out."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..errors import DatasetError
from .base import DatasetDef
from .folder import list_folder

URL = "https://huggingface.co/datasets/marsyas/gtzan/resolve/main/data/genres.tar.gz"
AUDIO_DIR = "genres"


N_FOLDS = 10


def list_gtzan(data_dir: Path, **_: object) -> pd.DataFrame:
    """The genre folders' clips, as dataset folder lists them, with their fold; each file is its own group
    (GTZAN lists no recordings)."""
    if not (data_dir / AUDIO_DIR).is_dir():
        raise DatasetError(f"{data_dir}: no {AUDIO_DIR}/ folder; GTZAN's root holds {AUDIO_DIR}/<genre>/*.wav")
    meta = list_folder(data_dir / AUDIO_DIR).sort_values("filename", kind="stable")
    meta["fold"] = meta.groupby("label").cumcount() % N_FOLDS + 1
    return meta.sort_index()


GTZAN = DatasetDef("gtzan", list_gtzan, n_folds=N_FOLDS, default_seconds=30.0, strict=False, audio_dir=AUDIO_DIR,
                   download_marker=AUDIO_DIR + "/", download_url=URL, default_dir="data/GTZAN",
                   checksums_url="https://huggingface.co/api/datasets/marsyas/gtzan/tree/main/data")
