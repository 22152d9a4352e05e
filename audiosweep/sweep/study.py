"""The Optuna side of local sweeps: where a study lives (a journal file beside the sweep's records, or an RDB URL),
its sampler (bayes) and pruner (``early_terminate: hyperband``), opening it, and telling it how a run went."""

from __future__ import annotations

import json
import math
import os
import random
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
from optuna.storages.journal import JournalFileBackend
from optuna.storages.journal._file import get_lock_file
from optuna.storages.journal._storage import JournalOperation
from optuna.trial import Trial, TrialState
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, SQLAlchemyError

from .. import results
from ..errors import SweepError
from .spec import Sweep

CREATE_TRIES = 5  # attempts at opening an RDB study that other runners are creating at the same moment


WARNED: set[tuple[Path, int]] = set()  # the journal lines warned about, once each in a process


class TolerantJournal(JournalFileBackend):
    """Optuna's journal file, read past torn lines. Optuna (5.0) raises on the first unreadable line that another
    line follows (JSONDecodeError; UnicodeDecodeError at once), so one garbage line, or a line a killed runner left
    half written and the next append ran on, stops every later run of the study. Here an unreadable line is
    skipped, with one warning naming the file and line; the file itself is never rewritten (an append first ends a
    torn last line, so that the new operations stay whole). What a skipped line recorded is lost to the study only:
    the runs' records keep their results, and a skipped trial's later operations are ignored by Optuna's replay."""

    def __init__(self, path: Path):
        super().__init__(str(path))
        self.path = path
        self.offsets: dict[int, tuple[int, int]] = {0: (0, 1)}  # good lines read -> (byte offset, line number)

    def read_logs(self, log_number_from: int) -> Iterator[dict[str, Any]]:
        start = log_number_from if log_number_from in self.offsets else max(
            (n for n in self.offsets if n <= log_number_from), default=0)
        offset, line_no = self.offsets[start]
        n = start
        with open(self.path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            f.seek(offset)
            for line in f:
                offset += len(line)
                if offset > size or not line.endswith(b"\n"):
                    break  # being written (or torn: the next append ends it, and it is skipped then)
                log = _log(line)
                if log is None:
                    if (self.path, line_no) not in WARNED:
                        WARNED.add((self.path, line_no))
                        warn(f"{self.path}, line {line_no}: unreadable Optuna journal line, skipped (the study "
                             "goes on without it; the records in the folder keep every run's result)")
                    line_no += 1
                    continue
                n, line_no = n + 1, line_no + 1
                self.offsets[n] = (offset, line_no)
                if n > log_number_from:
                    yield log

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        with get_lock_file(self._lock):
            data = "".join(json.dumps(log, separators=(",", ":")) + "\n" for log in logs).encode()
            with open(self.path, "ab") as f:
                if f.tell() and not _ends_with_newline(self.path):
                    data = b"\n" + data  # a torn last line stays one line of its own
                f.write(data)
                f.flush()
                os.fsync(f.fileno())


# The keys Optuna's replay reads from each operation (optuna/storages/journal/_storage.py, 5.0), besides
# worker_id: a line without them would raise a KeyError there.
OP_KEYS = {JournalOperation.CREATE_STUDY: ("study_name", "directions"), JournalOperation.DELETE_STUDY: ("study_id",),
           JournalOperation.SET_STUDY_USER_ATTR: ("study_id", "user_attr"),
           JournalOperation.SET_STUDY_SYSTEM_ATTR: ("study_id", "system_attr"),
           JournalOperation.CREATE_TRIAL: ("study_id", "datetime_start"),
           JournalOperation.SET_TRIAL_PARAM: ("trial_id", "param_name", "param_value_internal", "distribution"),
           JournalOperation.SET_TRIAL_STATE_VALUES: ("trial_id", "state", "values"),
           JournalOperation.SET_TRIAL_INTERMEDIATE_VALUE: ("trial_id", "step", "intermediate_value"),
           JournalOperation.SET_TRIAL_USER_ATTR: ("trial_id", "user_attr"),
           JournalOperation.SET_TRIAL_SYSTEM_ATTR: ("trial_id", "system_attr"), JournalOperation.DISCARD_TRIALS: ()}


def _log(line: bytes) -> dict[str, Any] | None:
    """One journal operation, or None for a line that is none."""
    try:
        log = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
    if not isinstance(log, dict) or type(log.get("op_code")) is not int or log["op_code"] not in OP_KEYS:
        return None
    return log if all(k in log for k in ("worker_id", *OP_KEYS[JournalOperation(log["op_code"])])) else None


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def warn(text: str) -> None:
    print(f"warning: {text}", file=sys.stderr, flush=True)


def storage(url: str | None, folder: Path) -> str | optuna.storages.BaseStorage:
    """``url`` (an RDB URL such as sqlite:///study.db), else the journal file beside the sweep's records, locked
    for runners that share it and read past torn lines."""
    if url:
        return url
    folder.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(TolerantJournal(folder / "optuna.journal"))


def sampler(seed: int) -> optuna.samplers.BaseSampler:
    """TPE, not a Gaussian process as W&B's bayes: it handles categorical and integer parameters natively, costs
    little per suggestion (no GP fit on the CPU the runs train on) and is Optuna's maintained default.
    constant_liar: runs in progress count as bad results, so parallel workers do not get the same suggestion."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True)


def pruner(sweep: Sweep) -> optuna.pruners.BasePruner:
    """W&B's hyperband as Optuna's SuccessiveHalvingPruner: W&B stops a run at each bracket min_iter * eta^k
    (min_iter = max_iter / eta^s in the max_iter form) when its metric is not in the top 1/eta of the runs that
    reached that bracket, one set of brackets for every run: asynchronous successive halving. Optuna's
    HyperbandPruner would instead spread the trials over several such sets with different first brackets."""
    et = sweep.raw.get("early_terminate")
    if not et:
        return optuna.pruners.NopPruner()
    eta = et.get("eta", 3)  # W&B's default
    if not float(eta).is_integer():  # Optuna's reduction factor is an integer
        raise SweepError(f"{sweep.path}: early_terminate.eta must be an integer to run here, got {eta!r}")
    min_iter = int(et["min_iter"] if "min_iter" in et else et["max_iter"] / eta ** et["s"])
    if min_iter < 1:
        raise SweepError(f"{sweep.path}: early_terminate's max_iter / eta^s is below 1 epoch: lower s")
    return optuna.pruners.SuccessiveHalvingPruner(min_resource=min_iter, reduction_factor=int(eta),
                                                  min_early_stopping_rate=0)


def open_study(sweep: Sweep, folder: Path, url: str | None = None, seed: int = 0,
               name: str | None = None) -> optuna.Study:
    """The sweep's study, named ``name`` (default: the sweep's name), created on first use."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the runner reports each run itself
    goal = sweep.raw["metric"].get("goal", "minimize")
    try:
        for attempt in range(CREATE_TRIES):
            try:
                return optuna.create_study(storage=storage(url, folder), study_name=name or sweep.name,
                                           direction=goal, sampler=sampler(seed), pruner=pruner(sweep),
                                           load_if_exists=True)
            except IntegrityError:  # runners started together both creating the tables or the study: one wins
                if attempt == CREATE_TRIES - 1:
                    raise
                time.sleep(0.5 + random.random())
    except (ImportError, SQLAlchemyError) as e:  # no driver for the URL's database, a bad URL, no server
        problem = " ".join(str(e).split("(Background on")[0].split())
        raise SweepError(f"--storage {shown(url)}: cannot open the study there ({problem[:300]}). Give an RDB URL "
                         "such as postgresql://user:password@host:5432/database or sqlite:///study.db, for a server "
                         "that is running and reachable (PostgreSQL's driver, psycopg, comes with audiosweep; "
                         "another database needs its SQLAlchemy driver installed)") from e


def shown(url: str) -> str:
    """``url`` with its password hidden, for logs and errors."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url.split("@")[-1]


def tell_result(study: optuna.Study, trial: Trial, rec: results.Record | None, metric: str,
         interrupted: bool = False) -> None:
    """The study learns how the run went: its metric, pruned, or failed (interrupted by the user: marked so)."""
    if rec is not None:
        trial.set_user_attr("record", rec.run_id)
    value = getattr(rec.summary, metric, None) if rec else None  # the sweep's metric: a summary field
    if rec and rec.status == "stopped":
        study.tell(trial, state=TrialState.PRUNED)
    elif rec and rec.status == "finished" and isinstance(value, (int, float)) and math.isfinite(value):
        study.tell(trial, value)
    else:
        if interrupted:
            trial.set_user_attr("interrupted", True)
        study.tell(trial, state=TrialState.FAIL)
