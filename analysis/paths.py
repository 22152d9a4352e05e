"""Where analysis reads and writes when not told: the repository's ``results/`` and ``reports/`` folders.

The notebook resolves its paths against the repository root, not the working directory: Jupyter starts its kernel
in ``analysis/``.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SOURCE_VARIABLE = "AUDIOSWEEP_SOURCE"  # the notebook's source when its SOURCE parameter is None
DEFAULT_SOURCE = "results"
REPORTS = "reports"  # reports go in here, one folder each (git ignores it)
WANDB_PREFIX = "wandb:"
EXPORT_SUFFIX = ".csv"  # a W&B runs-table export (analysis.wandb_csv)


def is_export(source: str) -> bool:
    """True for a source naming a W&B runs-table export rather than a folder of records."""
    return not source.startswith(WANDB_PREFIX) and source.lower().endswith(EXPORT_SUFFIX)


def from_repo(path: str | os.PathLike) -> Path:
    """``path``, a relative one taken from the repository root."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else REPO / path


def notebook_source(source: str | None = None) -> str:
    """The notebook's source: ``source``, else ``$AUDIOSWEEP_SOURCE``, else the repository's ``results/``; a
    folder relative to the repository root, a ``wandb:ENTITY/PROJECT`` source as given."""
    source = source or os.environ.get(SOURCE_VARIABLE) or DEFAULT_SOURCE
    return source if source.startswith(WANDB_PREFIX) else str(from_repo(source))


def report_dir(source: str, sweep: str | None = None) -> Path:
    """``reports/<name>`` (relative to the working directory) for a report on ``source``: named after the sweep
    when one is chosen, else after the source folder (the export's file name without .csv, or the W&B project)."""
    if sweep:
        name = sweep.rsplit("/", 1)[-1]  # a W&B sweep may be given as ENTITY/PROJECT/ID
    elif source.startswith(WANDB_PREFIX):
        name = source.rsplit("/", 1)[-1]
    else:
        path = Path(source).expanduser().resolve()
        name = path.stem if is_export(source) else path.name
    return Path(REPORTS) / name
