"""Your own clips listed in a CSV file (``--metadata``): columns ``file`` (relative to data_dir) and ``label``,
optionally ``fold`` (positive integers: the official split) and ``group`` (clips of one recording)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..errors import DatasetError
from .base import DatasetDef, check_inside, check_labels, numbered, read_csv

REQUIRED = ["file", "label"]


def metadata_path(data_dir: Path, metadata: str) -> Path:
    """``metadata`` as given, or relative to data_dir when it is not found as given."""
    path = Path(metadata).expanduser()
    return path if path.is_file() or path.is_absolute() else data_dir / path


def list_table(data_dir: Path, *, metadata: str | None, split: str, fold: int) -> pd.DataFrame:
    """The clips of the ``metadata`` file; with ``split`` official, ``fold`` must be one of its folds."""
    path = metadata_path(data_dir, metadata)
    if not path.is_file():
        raise DatasetError(f"metadata {metadata}: no such file (looked in the working folder and in {data_dir})")
    table = read_csv(path, REQUIRED, "file, label and optionally fold, group",
                     dtype={"file": str, "label": str, "group": str})
    blank = table.index[table.file.isna() | table.label.isna()]
    if len(blank):
        raise DatasetError(f"{path}: {len(blank)} row(s) without a file or label (first rows: "
                           f"{[int(i) + 2 for i in blank[:3]]})")
    check_inside(path, table.file, data_dir)
    dup = table.file[table.file.duplicated()]
    if len(dup):
        raise DatasetError(f"{path}: {len(dup)} file(s) listed more than once (first: {list(dup[:3])})")
    meta = pd.DataFrame({"filename": table.file, "label": table.label,
                         "group": table.group.fillna(table.file) if "group" in table else table.file})
    meta["fold"] = _folds(path, table) if "fold" in table else float("nan")
    check_labels(meta, str(path))
    if split == "official":
        if "fold" not in table:
            raise DatasetError(f"{path}: no fold column, so no official split; add one or use --split stratified")
        folds = sorted(int(f) for f in meta.fold.unique())
        if fold not in folds:
            raise DatasetError(f"{path}: fold {fold} is not one of its folds {folds}")
    return numbered(meta)


def _folds(path: Path, table: pd.DataFrame) -> pd.Series:
    folds = pd.to_numeric(table.fold, errors="coerce")
    bad = table.fold[folds.isna() | (folds < 1) | (folds != folds.round())]
    if len(bad):
        raise DatasetError(f"{path}: {len(bad)} fold value(s) are not positive integers (first: {list(bad[:3])})")
    return folds.astype(int)


TABLE = DatasetDef("csv", list_table, n_folds=None, default_seconds=5.0, strict=False, folds_in_metadata=True)
