"""What every dataset definition is made of: :class:`DatasetDef`, the listing's :data:`CLIP_COLUMNS` and the
shape of a listing function, and the helpers the listings share (reading a metadata table, checking and
numbering labels). The dataset modules import from here; the registry (the package) imports them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pandas as pd

from ..errors import DatasetError

# filename: relative to the definition's audio folder; target: 0..n-1 in class order; fold: int or NaN;
# group: clips of one recording, kept on one side of a stratified split.
CLIP_COLUMNS = ["filename", "label", "target", "fold", "group"]


class ListClips(Protocol):
    """One row per clip of the dataset at ``data_dir``, with :data:`CLIP_COLUMNS`. Only a dataset listed by the
    user's metadata (csv) reads ``metadata`` (its file), ``split`` and ``fold`` (checked against the folds the
    file gives); the others take them and ignore them."""

    def __call__(self, data_dir: Path, *, metadata: str | None, split: str, fold: int) -> pd.DataFrame: ...


@dataclass(frozen=True)
class DatasetDef:
    name: str
    list_clips: ListClips
    n_folds: int | None  # official folds; None: none, or (folds_in_metadata) as many as the metadata has
    default_seconds: float  # clip length when clip_seconds is null
    strict: bool  # every clip must already be default_seconds long at native_rate, mono (checked from headers)
    native_rate: int | None = None  # the sample rate of every clip of a strict dataset
    audio_dir: str = ""  # folder under data_dir that the listed filenames are relative to
    download_marker: str | None = None  # a file (or folder, ending in /) whose absence means "download"; None: never
    download_url: str | None = None  # the official archive, downloaded unless the config names another
    # a dataset in several archives, all unpacked into data_dir (instead of download_url); the config's
    # download_url is then the folder they are fetched from, under their own file names
    download_urls: tuple[str, ...] = ()
    default_dir: str | None = None  # data_dir when the config gives none (None: the user's own, data_dir needed)
    checksums_url: str | None = None  # JSON where the host publishes the archives' checksums (Zenodo, Hugging Face)
    folds_in_metadata: bool = False  # the folds come from the user's metadata (checked when it is read)
    fingerprint_columns: tuple[str, ...] = tuple(CLIP_COLUMNS)  # the listing's columns that make its identity


def read_csv(path: Path, required: list[str], expected: str | None = None, **kwargs) -> pd.DataFrame:
    """The metadata table at ``path`` (``pandas.read_csv`` with ``kwargs``), or a DatasetError naming the file
    when it cannot be read or lacks one of the ``required`` columns (``expected`` describes them all)."""
    try:
        table = pd.read_csv(path, **kwargs)
    except Exception as e:  # pandas raises several types for unreadable files
        raise DatasetError(f"{path}: cannot read the metadata ({' '.join(str(e).split())})") from e
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise DatasetError(f"{path}: columns {missing} missing; expected {expected or required} "
                           f"(found: {list(table.columns)})")
    return table


def check_inside(path: Path, files: pd.Series, data_dir: Path, column: str = "file", first_line: int = 2) -> None:
    """Refuse, before any file is touched, a listed clip path that leaves ``data_dir``: absolute, or climbing out
    with ``..``; the DatasetError names the metadata file, the line (row ``i`` of ``files`` is line ``first_line +
    i``) and the value. Links inside data_dir are followed: the owner of data_dir put them there (e.g. audio/ on
    another disk), while the metadata may come from anyone."""
    out = [(i, f) for i, f in enumerate(files) if os.path.isabs(f) or os.path.normpath(f).split(os.sep)[0] == ".."]
    if out:
        i, f = out[0]
        more = f" (and {len(out) - 1} more)" if len(out) > 1 else ""
        raise DatasetError(f"{path}, line {first_line + i}: {column} {f!r} is outside data_dir {data_dir}{more}; "
                           f"list each clip by its path relative to data_dir, without '..'")


def check_labels(meta: pd.DataFrame, where: str) -> None:
    """A class needs two clips to be in both the training and the validation split; name those with one."""
    counts = meta.label.value_counts()
    single = sorted(counts.index[counts < 2])
    if single:
        raise DatasetError(f"{where}: {len(single)} class(es) with a single clip (first: {single[:3]}); each class "
                           "needs at least 2 clips to appear in both training and validation")


def numbered(meta: pd.DataFrame) -> pd.DataFrame:
    """``meta`` with ``target`` = the position of its label among the sorted labels."""
    classes = sorted(meta.label.unique())
    return meta.assign(target=meta.label.map({c: i for i, c in enumerate(classes)}).astype(int))
