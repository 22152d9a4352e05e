"""Runs as one pandas DataFrame, from local result records, a W&B runs-table export or the W&B public API, with the
same columns.

A SOURCE is a folder of result records (searched recursively), a W&B runs-table export (a path ending in ``.csv``:
:mod:`analysis.wandb_csv` says what it holds) or ``wandb:ENTITY/PROJECT``. Columns, in order:
every :class:`audiosweep.config.Config` key (as :func:`audiosweep.config.effective` makes it, so records of
older versions compare with newer ones), the summary metrics of :data:`audiosweep.results.SUMMARY_METRICS`,
``status`` ("finished" for runs that completed; "failed", "stopped", or W&B's "crashed" / "killed" / "running"
otherwise; "unknown" for a status none of them knows),
``sweep``, ``run_id``, ``name`` (W&B's display name; None for records), ``record_path`` (None for W&B runs),
``history`` (per-epoch dicts of :data:`HISTORY_COLUMNS`: what records and W&B both hold) and ``env``.

The ``sweep`` of a local record is the folder holding it, relative to SOURCE; records directly in SOURCE take
SOURCE's own folder name. So ``results/smoke/*.json`` is sweep "smoke" whether SOURCE is ``results`` or
``results/smoke``. Which files are searched is :func:`audiosweep.results.record_files`' choice; JSON files there
that are no records at all, and ``*.json`` paths that are no regular files (a FIFO would block the read), are
skipped with a warning. For W&B runs ``sweep`` is the sweep's name (its id when
unnamed), for an export its id; "" for runs outside a sweep.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.std import tqdm  # not tqdm.auto: in Jupyter without ipywidgets it warns "IProgress not found"

from audiosweep.config import FIELDS, REPLICATE, coerce, effective, keys_with_role
from audiosweep.errors import ConfigError, SourceError
from audiosweep.results import (
    ACCURACY_KEYS,
    EPOCH_METRICS,
    RECORD_KEYS,
    STATUSES,
    SUMMARY_METRICS,
    Record,
    RunFiles,
    read_json,
    record_files,
)

from .paths import WANDB_PREFIX, is_export
from .wandb_csv import read_export

# Per epoch: what records and W&B both hold (W&B has no per-epoch time).
HISTORY_COLUMNS = ("epoch", *EPOCH_METRICS)
COLUMNS = [*FIELDS, *SUMMARY_METRICS, "status", "sweep", "run_id", "name", "record_path", "history", "env"]
OBJECT_COLUMNS = ("record_path", "history", "env")  # kept as they are (a path or None, lists, dicts)
# The statuses a run can have: a record's, or a W&B run's state; any other is shown as UNKNOWN_STATUS.
KNOWN_STATUSES = frozenset({*STATUSES, "crashed", "killed", "running", "pending", "preempting", "preempted"})
UNKNOWN_STATUS = "unknown"


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def hashable(value: Any) -> Any:
    """Config values usable as group keys: lists (of lists: unfreeze_schedule) become tuples."""
    return tuple(hashable(v) for v in value) if isinstance(value, list) else value


def _config_row(config: dict[str, Any], partial: bool = False) -> dict[str, Any]:
    """Every Config key, typed, with the value the run really used (older records and W&B runs may hold a knob
    that had no effect, e.g. pretrained=true for an architecture without pretrained weights). ``partial``: keys
    missing from ``config`` stay None (:func:`effective`'s rules read our defaults for them; no column shows one)."""
    values = {}
    for key in FIELDS:
        if partial and key not in config:
            continue
        value = config.get(key)
        try:
            value = coerce(key, value)
        except ConfigError:
            pass  # keep what the run recorded; the tables show it as is
        values[key] = value
    out = effective(values)
    if partial:
        out.update({k: None for k in FIELDS if k not in config})
    return {k: hashable(v) for k, v in out.items()}


def _history(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: row.get(k) for k in HISTORY_COLUMNS} for row in rows]


def is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def same_value(a: Any, b: Any) -> bool:
    """Equality of config values where None and NaN (pandas' stand-in for a None group key) match."""
    return (is_missing(a) and is_missing(b)) or (not is_missing(a) and not is_missing(b) and bool(a == b))


def select(df: pd.DataFrame, key: str, value: Any) -> pd.DataFrame:
    """Rows of ``df`` whose ``key`` is ``value``."""
    return df[df[key].map(lambda v: same_value(v, value)).astype(bool)]


def _num(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else float("nan")


def _metrics(summary: dict, run_id: str) -> dict[str, float]:
    """The summary metrics as numbers; values no run can have (infinite, an accuracy outside [0, 1]: a W&B run or
    an export edited by hand; records holding them are refused by Record.parse) become missing, with a warning,
    so the run is never ranked."""
    values = {m: _num(summary.get(m)) for m in SUMMARY_METRICS}
    for m, v in values.items():
        if math.isinf(v) or (m in ACCURACY_KEYS and not math.isnan(v) and not 0 <= v <= 1):
            warn(f"run {run_id}: {m} is {v:g}, which no run can reach; left out of the statistics")
            values[m] = float("nan")
    return values


def make_row(config: dict, summary: dict, history: list[dict], status: str, sweep: str, run_id: str,
             record_path: str | None, env: dict | None = None, name: str | None = None,
             partial: bool = False) -> dict[str, Any]:
    """One DataFrame row; every loader goes through here so their columns cannot drift apart. ``env``: where the
    run ran (the record's device, package versions, git commit; a W&B run's ``env`` summary key). ``partial``: a
    source holding only some config keys and no history (an export): what it lacks stays missing."""
    row = _config_row(config, partial)
    row.update(_metrics(summary, run_id))
    if pd.isna(row["epochs"]) and not partial:
        row["epochs"] = float(len(history))
    status = status if status in KNOWN_STATUSES else UNKNOWN_STATUS
    row.update(status=status, sweep=sweep, run_id=run_id, name=name, record_path=record_path,
               history=_history(history), env=env if isinstance(env, dict) else {})
    return row


def frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Columns keep their values' types: a config column holding None stays ``object`` (no int -> float)."""
    df = pd.DataFrame(rows, columns=COLUMNS, dtype=object)
    for col in [c for c in COLUMNS if c not in OBJECT_COLUMNS]:
        if col in SUMMARY_METRICS:
            df[col] = df[col].astype(float)
        elif df[col].notna().all():
            df[col] = df[col].infer_objects()
    return df


def _is_other_json(obj: Any) -> bool:
    """True for JSON objects with none of a record's keys (e.g. a sweep runner's state file)."""
    return isinstance(obj, dict) and not RECORD_KEYS & obj.keys()


def sweep_name(root: Path, path: Path) -> str:
    rel = path.parent.relative_to(root)
    return rel.as_posix() if rel.parts else root.resolve().name


def load_local(root: str | Path, skip_bad: bool = False) -> pd.DataFrame:
    """Every result record under ``root``; a malformed one stops the load unless ``skip_bad``."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise SourceError(f"{root}: no such folder (give a folder of result records, a W&B export FILE.csv, or "
                          "wandb:ENTITY/PROJECT)")
    rows, skipped, bad, irregular = [], [], [], []
    for path in record_files(root, irregular=irregular):
        try:
            obj = read_json(path)  # each file is read once
            if _is_other_json(obj):
                skipped.append(path)
                continue
            rec = Record.parse(obj, path)
        except ValueError as e:
            if not skip_bad:
                raise SourceError(f"{e}\n  fix or remove that file, or pass --skip_bad to leave it out") from e
            bad.append(str(e))
            continue
        rows.append(make_row(rec.config, rec.summary.to_dict(), rec.history, rec.status, sweep_name(root, path),
                             rec.run_id or RunFiles(path).run_id, str(path), rec.env))
    if irregular:
        warn(f"skipped {len(irregular)} *.json path(s) that are not regular files (FIFOs, devices, folders), e.g. "
             f"{irregular[0]}")
    if skipped:
        warn(f"skipped {len(skipped)} JSON file(s) that are not result records, e.g. {skipped[0]}")
    for message in bad:
        warn(f"skipped malformed record: {message}")
    if not rows:
        raise SourceError(f"no result records under {root} (train.py writes "
                          f"{RunFiles.of('', '<run_id>').record} into --results_dir)")
    return frame(rows)


def wandb_api():
    """The W&B public API object (the one boundary the tests replace)."""
    import wandb

    return wandb.Api(timeout=60)


def _wandb_history(run) -> list[dict[str, Any]]:
    rows = list(run.scan_history(keys=list(EPOCH_METRICS)))
    if not rows:  # runs whose training loss was not logged at the epoch's last step
        rows = list(run.scan_history(keys=[m for m in EPOCH_METRICS if m != "train_loss"]))
    return [{"epoch": i + 1, **{k: row.get(k) for k in EPOCH_METRICS}} for i, row in enumerate(rows)]


def wandb_filters(sweep: str | None, tags: list[str] | None, filters: dict | None) -> dict | None:
    parts = [filters] if filters else []
    if sweep:
        parts.append({"sweep": sweep.rsplit("/", 1)[-1]})  # an id, or ENTITY/PROJECT/ID as `wandb sweep` prints
    if tags:
        parts.append({"tags": {"$in": list(tags)}})
    return None if not parts else parts[0] if len(parts) == 1 else {"$and": parts}


def load_wandb(path: str, sweep: str | None = None, tags: list[str] | None = None, filters: dict | None = None,
               history: bool = True) -> pd.DataFrame:
    """Runs of W&B project ``ENTITY/PROJECT`` (optionally of one sweep id, with any of ``tags``, or matching
    MongoDB-style ``filters`` on config/summary/state)."""
    if path.count("/") != 1 or not all(path.split("/")):
        raise SourceError(f"wandb:{path}: expected wandb:ENTITY/PROJECT")
    try:
        runs = list(wandb_api().runs(path, filters=wandb_filters(sweep, tags, filters), per_page=200,
                                     lazy=False))
    except Exception as e:  # network, credentials, unknown project: all reported the same way
        raise SourceError(f"wandb:{path}: cannot list runs ({type(e).__name__}: {e}); check the entity and "
                          "project names and log in with `wandb login` or WANDB_API_KEY") from e
    sweep_names: dict[str, str] = {}
    rows = []
    for run in tqdm(runs, desc="W&B runs", unit="run", disable=not history or len(runs) < 5):
        sweep_id = getattr(run, "sweep_name", None) or ""
        if sweep_id and sweep_id not in sweep_names:
            sweep_names[sweep_id] = getattr(run.sweep, "name", None) or sweep_id
        summary = run.summary
        env = summary.get("env")  # tracking.finish logs the record's env into the summary
        summary = {m: summary.get(m) for m in [*SUMMARY_METRICS, "_runtime"]}
        if summary["wall_time_s"] is None:
            summary["wall_time_s"] = summary["_runtime"]
        rows.append(make_row(dict(run.config), summary, _wandb_history(run) if history else [],
                             str(run.state).lower(), sweep_names.get(sweep_id, ""), run.id, None,
                             dict(env) if env is not None else None, getattr(run, "name", None)))
    if not rows:
        raise SourceError(f"no runs in wandb:{path} match (sweep={sweep}, tags={tags}, filters={filters})")
    return frame(rows)


def load_export(path: str, skip_bad: bool = False) -> pd.DataFrame:
    """Every run of a W&B runs-table export (:mod:`analysis.wandb_csv`); its rows that cannot be read stop the
    load unless ``skip_bad``."""
    export = read_export(path, skip_bad)
    if export.ignored:
        warn(f"{path}: left out {len(export.ignored)} column(s) that are neither config keys nor summary "
             f"metrics: {', '.join(export.ignored)}")
    for message in export.bad:
        warn(f"skipped unreadable row: {message}")
    if not export.runs:
        raise SourceError(f"{path}: no readable runs")
    return frame([make_row(r.config, r.summary, [], r.status, r.sweep, r.run_id, None, name=r.name, partial=True)
                  for r in export.runs])


def of_sweep(df: pd.DataFrame, sweep: str, source: str, where: str = "under") -> pd.DataFrame:
    """The runs of sweep ``sweep``; a SourceError listing the sweeps when there are none."""
    kept = df[df.sweep == sweep].reset_index(drop=True)
    if kept.empty:
        names = ", ".join(sorted(df.sweep.unique()))
        raise SourceError(f"no sweep {sweep!r} {where} {source}; sweeps there: {names}")
    return kept


def matching(df: pd.DataFrame, where: dict[str, Any], source: str) -> pd.DataFrame:
    """The runs whose config holds every ``key: value`` of ``where`` (typed values); a SourceError naming the
    first condition no run meets, with the values there are."""
    for i, (key, value) in enumerate(where.items()):
        kept = select(df, key, hashable(value))
        if kept.empty:
            there = ", ".join(sorted({str(v) for v in df[key]}))
            raise SourceError(f"--where {key}={value}: no run of {source} matches"
                              f"{' (with the conditions before it)' if i else ''}; {key} there: {there}")
        df = kept
    return df.reset_index(drop=True)


def load_runs(source: str, sweep: str | None = None, tags: list[str] | None = None, filters: dict | None = None,
              skip_bad: bool = False, history: bool = True, where: dict[str, Any] | None = None) -> pd.DataFrame:
    """Runs of ``source`` (a folder, a W&B runs-table export ``*.csv`` or ``wandb:ENTITY/PROJECT``), optionally of
    one sweep only and of the configurations ``where`` (config key: typed value, see :func:`matching`).

    For a folder, ``sweep`` is a sweep (folder) name; for W&B and an export, a sweep id. ``tags`` and ``filters``
    are W&B only.
    """
    if source.startswith(WANDB_PREFIX):
        df = load_wandb(source[len(WANDB_PREFIX):], sweep, tags, filters, history)
    elif tags or filters:
        raise SourceError("--tags and --filters select W&B runs; use them with a wandb:ENTITY/PROJECT source")
    elif is_export(source):
        df = load_export(source, skip_bad)
        if sweep is not None:  # an id, or ENTITY/PROJECT/ID as `wandb sweep` prints
            df = of_sweep(df, sweep.rsplit("/", 1)[-1], source, "in")
    else:
        df = load_local(source, skip_bad)
        if sweep is not None:
            df = of_sweep(df, sweep, source)
    return matching(df, where, source) if where else df


def finished(df: pd.DataFrame, metric: str = "accuracy") -> pd.DataFrame:
    """Runs that count in statistics: finished, with a value of ``metric``."""
    return df[(df.status == "finished") & df[metric].notna()]


def overview(df: pd.DataFrame, keys: list[str], metric: str = "accuracy") -> pd.DataFrame:
    """One line per run: its sweep, id and status, the parameters ``keys``, its replicate keys and its metrics."""
    replicates = [k for k in keys_with_role(REPLICATE) if k not in keys]
    metrics = [metric, *(m for m in SUMMARY_METRICS if m != metric)]
    return df[["sweep", "run_id", "status", *keys, *replicates, *metrics]]
