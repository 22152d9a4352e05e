"""W&B runs-table exports (the runs table's "Export as CSV") read as runs, for :func:`analysis.runs.load_runs`.

An export has one row per run: ``Name``, ``ID``, ``Runtime`` (seconds), ``Sweep`` (its id, empty outside a
sweep), optionally ``State``, then a column per config and summary key the runs logged, each cell W&B's JSON value
written as text (``true``, ``0.01``, ``resnet18``, ``[512, 1024]``; empty where a run did not log the key).

How its columns become ours:

- a column named after a Config key, or one of the report's keys (:data:`audiosweep.config.ALIASES`), is config:
  the report's keys and value forms turn into ours (``normalize: true`` is ``global``) and values are typed as a
  W&B run's are (:func:`audiosweep.config.coerce`, then :func:`~audiosweep.config.effective`);
- a column named after a summary metric (:data:`audiosweep.results.SUMMARY_METRICS`) is that metric; without
  ``epochs``, ``epoch`` (what fastai's WandbCallback logs: epochs run, the frozen one included) stands for it,
  and without ``wall_time_s``, ``Runtime``;
- the status is ``State`` lower-cased (W&B's finished, failed, crashed, killed, running), "finished" without it;
- other columns are left out, and named in :attr:`Export.ignored`.

Keys the export lacks (a column it does not have, or a run's empty cell) stay missing (None), not our defaults:
an export holds what the runs logged, and our default need not be what they ran (the report's export has no
sample_rate, fold or trial_num columns, though its runs had them). The analysis does without them: durations in
samples are shown without their milliseconds, runs are not paired on (fold, trial_num), the per-fold table has a
single fold "none". An export has no per-epoch history, no predictions and no record (no learning curves,
ensembles or confusion matrices).

A row that cannot be read (no ID, a metric or config value that is not one) stops the load, or with ``skip_bad``
is left out and named in :attr:`Export.bad`.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audiosweep.config import ALIASES, FIELDS, coerce, key_type, resolve_aliases
from audiosweep.errors import SourceError
from audiosweep.results import SUMMARY_METRICS

REQUIRED = ("Name", "ID", "Runtime", "Sweep")
STATE = "State"
# Stand-ins for summary metrics the export may lack: fastai's WandbCallback logs `epoch`, W&B itself `Runtime`.
STAND_INS = {"epochs": "epoch", "wall_time_s": "Runtime"}


@dataclass(frozen=True)
class ExportRun:
    """One row: config under our keys (only those the row has), summary metrics, and who the run is."""

    config: dict[str, Any]
    summary: dict[str, float]
    status: str
    sweep: str
    run_id: str
    name: str


@dataclass
class Export:
    """The runs of an export, the messages about rows left out (``skip_bad``) and the columns not used."""

    runs: list[ExportRun] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


def _cell_value(key: str, text: str) -> Any:
    """A config cell as the JSON value W&B wrote (text for plain string keys: an arch stays as written)."""
    if key_type(key) is not str:
        try:
            return json.loads(text)
        except ValueError:
            pass
    return text


def _number(column: str, text: str) -> float:
    if not text.strip():
        return math.nan
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{column}: expected a number, got {text!r}") from None


def _config(row: dict[str, str], columns: list[str]) -> dict[str, Any]:
    errors: list[str] = []
    layer = resolve_aliases({c: _cell_value(c, row[c]) for c in columns if row[c].strip()}, errors)
    config = {k: coerce(k, v, errors) for k, v in layer.items()}
    if errors:
        raise ValueError("; ".join(errors))
    return config


def _summary(row: dict[str, str]) -> dict[str, float]:
    summary = {}
    for metric in SUMMARY_METRICS:
        column = metric if metric in row else STAND_INS.get(metric)
        summary[metric] = _number(column, row[column]) if column in row else math.nan
    return summary


def _run(row: dict[str, str | None], config_columns: list[str]) -> ExportRun:
    if None in row or None in row.values():  # csv's key for the cells of a long row, its filler of a short one
        raise ValueError("not as many cells as the header has columns")
    cells: dict[str, str] = row  # type: ignore[assignment]
    if not cells["ID"].strip():
        raise ValueError("no ID")
    status = cells.get(STATE, "finished").strip().lower()
    if not status:
        raise ValueError(f"no {STATE}")
    return ExportRun(_config(cells, config_columns), _summary(cells), status, cells["Sweep"].strip(),
                     cells["ID"].strip(), cells["Name"].strip())


def read_export(path: str | Path, skip_bad: bool = False) -> Export:
    """The runs of the W&B runs-table export ``path``; a SourceError for a file that is not one, or for its first
    unreadable row unless ``skip_bad``."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise SourceError(f"{path}: no such file (give a W&B runs-table export, a folder of result records, or "
                          "wandb:ENTITY/PROJECT)")
    export = Export()
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            missing = [c for c in REQUIRED if c not in header]
            if missing:
                raise SourceError(f"{path}: not a W&B runs-table export: missing column(s) {', '.join(missing)} "
                                  f"(it needs {', '.join(REQUIRED)}, optionally {STATE}, then config and summary "
                                  "columns)")
            config_columns = [c for c in header if c in FIELDS or c in ALIASES]
            used = {*REQUIRED, STATE, *config_columns, *SUMMARY_METRICS, *STAND_INS.values()}
            export.ignored = [c for c in header if c not in used]
            for row in reader:
                try:
                    export.runs.append(_run(row, config_columns))
                except ValueError as e:
                    message = f"{path}, line {reader.line_num} (ID {row.get('ID') or '?'}): {e}"
                    if not skip_bad:
                        raise SourceError(f"{message}\n  fix or remove that row, or pass --skip_bad to leave it "
                                          "out") from e
                    export.bad.append(message)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise SourceError(f"{path}: not a readable CSV file ({type(e).__name__}: {e})") from e
    if not export.runs and not export.bad:
        raise SourceError(f"{path}: no runs (a header and no rows)")
    return export
