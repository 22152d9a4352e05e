"""The Optuna side of local sweeps: where a study lives (a journal file beside the sweep's records, or an RDB URL),
its sampler (bayes) and pruner (``early_terminate: hyperband``), opening it, and telling it how a run went."""

from __future__ import annotations

import math
import random
import time
import warnings
from pathlib import Path

import optuna
from optuna.trial import Trial, TrialState
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, SQLAlchemyError

from .. import results
from ..errors import SweepError
from .spec import Sweep

CREATE_TRIES = 5  # attempts at opening an RDB study that other runners are creating at the same moment


def storage(url: str | None, folder: Path) -> str | optuna.storages.BaseStorage:
    """``url`` (an RDB URL such as sqlite:///study.db), else the journal file beside the sweep's records, locked
    for runners that share it."""
    if url:
        return url
    folder.mkdir(parents=True, exist_ok=True)
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(str(folder / "optuna.journal")))


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
