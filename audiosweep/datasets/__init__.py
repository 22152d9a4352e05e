"""Dataset registry: one name -> one :class:`DatasetDef` (as the model registry does for architectures).

A definition lists a dataset's clips as a DataFrame with the columns of :data:`CLIP_COLUMNS` (plus any of its
own) and says how its clips look on disk. Everything after the listing (header checks, decoding, the cache,
the fingerprint, the splits) is shared, in :mod:`audiosweep.data`. Nothing here imports torch: the config
reads the registry to validate folds and clip lengths.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from ..errors import DatasetError

if TYPE_CHECKING:
    from ..config import Config

# filename: relative to the definition's audio folder; target: 0..n-1 in class order; fold: int or NaN;
# group: clips of one recording, kept on one side of a stratified split.
CLIP_COLUMNS = ["filename", "label", "target", "fold", "group"]


@dataclass(frozen=True)
class DatasetDef:
    name: str
    list_clips: Callable[[Path, Config], pd.DataFrame]  # (data_dir, cfg) -> one row per clip, CLIP_COLUMNS
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


from . import dcase2017, esc50, folder, gtzan, table, urbansound8k  # noqa: E402  (they use the helpers above)

DATASETS: dict[str, DatasetDef] = {d.name: d for d in (esc50.ESC50, esc50.ESC10, folder.FOLDER, table.TABLE,
                                                       urbansound8k.URBANSOUND8K, gtzan.GTZAN,
                                                       dcase2017.DCASE2017_SCENES)}


def dataset_entry(name: str) -> DatasetDef | None:
    return DATASETS.get(name)
