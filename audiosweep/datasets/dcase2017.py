"""DCASE 2017 Task 1, acoustic scene classification: TUT Acoustic Scenes 2017, development set (4680 segments
of 10 s, 15 scenes, 4 official folds; 44.1 kHz stereo, downmixed like any variable clip).

On disk: ``audio/<location>_<start>_<end>.wav`` and ``evaluation_setup/fold<k>_evaluate.txt`` (lines
``audio/<file>.wav<TAB><scene>``); the four evaluate lists partition the set, so fold k is the clips of
``fold<k>_evaluate.txt``. The segments of one recording location are one group. The set comes in eleven zip
archives (ten of audio, one of metadata), all unpacked into one folder.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..errors import DatasetError
from .base import DatasetDef, check_inside, check_labels, numbered

BASE_URL = "https://zenodo.org/records/400515/files/"
URLS = tuple(BASE_URL + f"TUT-acoustic-scenes-2017-development.{part}.zip"
             for part in ("meta", *(f"audio.{i}" for i in range(1, 11))))
N_FOLDS = 4
SETUP = "evaluation_setup"


def evaluate_list(k: int) -> str:
    return f"{SETUP}/fold{k}_evaluate.txt"


def read_evaluate_list(path: Path) -> list[tuple[str, str]]:
    """The (file, scene) pairs of one evaluate list, or a DatasetError naming the file and line."""
    if not path.is_file():
        raise DatasetError(f"{path}: no such file; a DCASE 2017 development folder holds "
                           f"{SETUP}/fold1..{N_FOLDS}_evaluate.txt (from the meta archive) and audio/ (from the "
                           "audio archives): point --data_dir at it, or at an empty folder to download into")
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split("\t")]
        if len(fields) != 2 or not all(fields) or not fields[0].endswith(".wav"):
            raise DatasetError(f"{path}, line {n}: expected 'audio/<file>.wav<TAB><scene label>', got {line!r}")
        check_inside(path, pd.Series([fields[0]]), path.parent.parent, first_line=n)
        rows.append((fields[0], fields[1]))
    return rows


def list_dcase2017(data_dir: Path, **_: object) -> pd.DataFrame:
    rows = [(file, label, k) for k in range(1, N_FOLDS + 1)
            for file, label in read_evaluate_list(data_dir / evaluate_list(k))]
    meta = pd.DataFrame(rows, columns=["filename", "label", "fold"])
    folds = meta.groupby("filename").fold.agg(list)
    twice = folds[folds.str.len() > 1]
    if len(twice):
        first, where = twice.index[0], twice.iloc[0]
        raise DatasetError(f"{data_dir / SETUP}: {len(twice)} clip(s) listed more than once across the evaluate "
                           f"lists, which must partition the set (first: {first} in folds {where}); restore the "
                           "official evaluation_setup")
    check_labels(meta, f"DCASE 2017 scenes at {data_dir}")
    # file names are <location>_<start>_<end>.wav: segments of one location stay on one side of a split
    group = meta.filename.str.rsplit("/", n=1).str[-1].str.split("_", n=1).str[0]
    return numbered(meta.assign(group=group))


DCASE2017_SCENES = DatasetDef("dcase2017_scenes", list_dcase2017, n_folds=N_FOLDS, default_seconds=10.0,
                              strict=False, audio_dir="", download_marker=evaluate_list(N_FOLDS),
                              download_urls=URLS, default_dir="data/DCASE2017-scenes",
                              checksums_url="https://zenodo.org/api/records/400515")
