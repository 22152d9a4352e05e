"""Dataset registry: one name -> one :class:`DatasetDef` (as the model registry does for architectures).

A definition lists a dataset's clips as a DataFrame with the columns of :data:`CLIP_COLUMNS` (plus any of its
own) and says how its clips look on disk; its parts and shared helpers are in :mod:`.base`, each dataset in its
own module. Everything after the listing (header checks, decoding, the cache, the fingerprint, the splits) is
shared, in :mod:`audiosweep.data`. Nothing here imports torch: the config reads the registry to validate folds
and clip lengths.
"""

from __future__ import annotations

from . import dcase2017, esc50, folder, gtzan, table, urbansound8k
from .base import CLIP_COLUMNS, DatasetDef, ListClips, check_labels, numbered, read_csv

__all__ = ["CLIP_COLUMNS", "DATASETS", "DatasetDef", "ListClips", "check_labels", "dataset_entry", "numbered",
           "read_csv"]

DATASETS: dict[str, DatasetDef] = {d.name: d for d in (esc50.ESC50, esc50.ESC10, folder.FOLDER, table.TABLE,
                                                       urbansound8k.URBANSOUND8K, gtzan.GTZAN,
                                                       dcase2017.DCASE2017_SCENES)}


def dataset_entry(name: str) -> DatasetDef | None:
    return DATASETS.get(name)
