"""``method: bayes`` run locally on an Optuna study, with ``early_terminate: hyperband`` as its pruner.

Each trial is one train.py run: its parameters are the study's suggestions (constants as given), its final metric
(the record's summary) is told to the study; a failed run is told as failed, a pruned one as pruned. The study
lives in a journal file, ``RESULTS_DIR/<sweep>/optuna.journal``, or in ``--storage URL`` (an RDB URL): runners on
one study, on this machine or others, divide the trials between them and a second run of the same command
continues the study.
"""

from __future__ import annotations

import os
import random
import socket
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import Trial, TrialState
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, SQLAlchemyError
from tqdm.auto import tqdm

from .. import results
from ..config import ConfigError
from ..errors import SweepError
from .early_terminate import EarlyTermination, pruner, storage
from .params import Param, value_key
from .runner import Options, Runner
from .spec import Plan, Run, Sweep, run_config

UNBOUNDED = ("normal", "q_normal", "log_normal", "q_log_normal")
RUNNER = f"{socket.gethostname()}:{os.getpid()}"  # which runner asked for a trial
CREATE_TRIES = 5  # attempts at opening an RDB study that other runners are creating at the same moment
MAX_ASKS = 50  # suggestions in a row that repeat a configuration before the search space counts as exhausted


def to_optuna(param: Param) -> tuple[BaseDistribution, Any] | None:
    """The Optuna distribution of a W&B parameter and the function turning a suggestion into the value train.py
    gets; None for a constant."""
    d, s = param.distribution, param.spec
    if param.constant:
        return None
    if d in ("categorical", "categorical_w_probabilities"):  # probabilities: TPE's prior is uniform, not these
        values = param.grid_values()
        if all(v is None or isinstance(v, (bool, int, float, str)) for v in values):
            return CategoricalDistribution(values), _same
        by_key = {value_key(v): v for v in values}  # lists and mappings: Optuna's choices must be scalars
        return CategoricalDistribution(list(by_key)), by_key.__getitem__
    if d == "int_uniform":
        return IntDistribution(s["min"], s["max"]), _same
    if d in UNBOUNDED:
        raise SweepError(f"parameters.{param.name}: {d} has no bounds, which Optuna's samplers need: give a "
                         "uniform or log_uniform_values range for a bayes sweep run here")
    # beta: its support, not its shape. The log forms' bounds are values (W&B's exponent forms are refused), and
    # inv_log_uniform_values is log-uniform too: 1/x is log-uniform exactly when x is.
    lo, hi, log = (0.0, 1.0, False) if d.endswith("beta") else (s["min"], s["max"], "log" in d)
    q = s["q"] if d.startswith("q_") else None
    if q is None:
        return FloatDistribution(lo, hi, log=log), float
    if log:  # Optuna has no log scale with a step: sampled on the log scale, then rounded as W&B rounds
        return FloatDistribution(lo, hi, log=True), lambda x: _round(x, q)
    lo, hi = round(lo / q) * q, round(hi / q) * q  # the multiples of q that W&B's rounding can give
    if isinstance(q, int):
        return IntDistribution(int(lo), int(hi), step=q), _same
    return FloatDistribution(lo, hi, step=q), float


def _same(x: Any) -> Any:
    return x


def _round(x: float, q: float) -> float | int:
    x = round(x / q) * q
    return int(x) if isinstance(q, int) else float(x)


def suggest(trial: Trial, dists: dict[str, tuple[BaseDistribution, Any]]) -> dict[str, Any]:
    """The suggested value of each varying parameter, as train.py gets it."""
    out = {}
    for name, (dist, convert) in dists.items():
        if isinstance(dist, CategoricalDistribution):
            x = trial.suggest_categorical(name, dist.choices)
        elif isinstance(dist, IntDistribution):
            x = trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
        else:
            x = trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)
        out[name] = convert(x)
    return out


def sampler(seed: int) -> optuna.samplers.BaseSampler:
    """TPE, not a Gaussian process as W&B's bayes: it handles categorical and integer parameters natively, costs
    little per suggestion (no GP fit on the CPU the runs train on) and is Optuna's maintained default.
    constant_liar: runs in progress count as bad results, so parallel workers do not get the same suggestion."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True)


def open_study(sweep: Sweep, folder: Path, url: str | None = None, seed: int = 0) -> optuna.Study:
    """The sweep's study (named after it), created on first use."""
    goal = sweep.raw["metric"].get("goal", "minimize")
    try:
        for attempt in range(CREATE_TRIES):
            try:
                return optuna.create_study(storage=storage(url, folder), study_name=sweep.name, direction=goal,
                                           sampler=sampler(seed), pruner=pruner(sweep), load_if_exists=True)
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


class BayesRunner(EarlyTermination, Runner):
    """Runs trials of the sweep's study: ``count`` of them (at most the study's run_cap), as many at a time as
    there are workers; with early_terminate, reads each run's progress file and stops (SIGTERM) the pruned."""

    def __init__(self, sweep: Sweep, opts: Options, count: int | None, seed: int = 0, url: str | None = None):
        super().__init__(sweep, Plan([]), opts)
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # the runner reports each run itself
        self.dists = {n: d for n, p in sorted(sweep.params.items()) if (d := to_optuna(p)) is not None}
        self.constants = {n: p.grid_values()[0] for n, p in sweep.params.items() if p.constant}
        self.metric, self.seed, self.count = sweep.raw["metric"]["name"], seed, count
        self.study = open_study(sweep, self.folder, url, seed)
        # printed: an RDB URL's password stays out of the logs
        self.where = shown(url) if url else str(self.folder / "optuna.journal")
        self.init_pruning(sweep)

    def run(self) -> int:
        if self.opts.dry_run:
            return self.run_locked()
        with self.signals():  # no sweep lock: the study hands every runner its own trials
            return self.run_locked()

    def run_locked(self) -> int:
        self.index.refresh()
        if not self.opts.dry_run:
            self.fail_stale()
        states = self.states()
        budget = self.budget()
        print(f"sweep {self.sweep.name} ({self.sweep.path}): bayes (Optuna TPE) on study {self.sweep.name} in "
              f"{self.where}: {self.describe_states(states)} before; {budget} to run; results in {self.folder}",
              flush=True)
        if self.prunes:
            print(f"  early_terminate: {self.study.pruner.__class__.__name__} on {self.metric} per epoch")
        if self.opts.dry_run:
            for name, (dist, _) in self.dists.items():
                print(f"  {name}: {dist}")
            return 0
        self.pool([None] * budget)
        print(f"sweep {self.sweep.name}: {self.counts['finished']} finished, {self.counts['stopped']} stopped "
              f"early, {self.counts['failed']} failed now, {self.interrupted} interrupted; study: "
              f"{self.describe_states(self.states())}{self.best()}; results in {self.folder}")
        return self.exit_status()

    def fail_stale(self) -> None:
        """Trials left running by a runner of this machine that is gone (killed before it could tell the study)
        are failed, so their configurations can run again. A runner on another machine cannot be checked: its
        trials stay running, and count against run_cap, until that runner ends."""
        host = RUNNER.split(":")[0]
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            where, _, pid = str(t.user_attrs.get("runner", "")).rpartition(":")
            if where == host and pid.isdigit() and not _alive(int(pid)):
                self.study.tell(t.number, state=TrialState.FAIL)
                tqdm.write(f"  note: trial {t.number} was left running by runner pid {pid}, which ended; failed, "
                           "its configuration may run again")

    def states(self) -> dict[str, int]:
        trials = self.study.get_trials(deepcopy=False)
        return {s.name.lower(): sum(t.state == s for t in trials) for s in TrialState}

    @staticmethod
    def describe_states(states: dict[str, int]) -> str:
        return ", ".join(f"{n} {s}" for s, n in states.items() if n) or "no trials"

    def best(self) -> str:
        try:
            t = self.study.best_trial
        except ValueError:  # no completed trial
            return ""
        return f"; best {self.metric} {t.value:.4f} (trial {t.number}: {t.params})"

    def spent(self) -> int:
        """Trials that count against run_cap: all but those a user's Ctrl-C cut short and those not started."""
        return sum(not t.user_attrs.get("interrupted") and t.state != TrialState.WAITING
                   for t in self.study.get_trials(deepcopy=False))

    def budget(self) -> int:
        cap = self.sweep.run_cap
        left = cap - self.spent() if cap is not None else None
        return max(0, min(n for n in (self.count, left) if n is not None))

    def next_run(self, pending: list[Any]) -> Run | None:
        """A new trial's run; None when run_cap is reached or the study only repeats configurations run before."""
        pending.pop()
        for _ in range(MAX_ASKS):
            if self.sweep.run_cap is not None and self.spent() >= self.sweep.run_cap:
                return None
            trial = self.study.ask()
            trial.set_user_attr("runner", RUNNER)
            # Seeded by trial number, unique in the study: reproducible, and two runners never draw alike.
            self.study.sampler = sampler(self.seed + trial.number)
            point = {**self.constants, **suggest(trial, self.dists)}
            try:
                cid = results.config_id(run_config(point))
            except ConfigError as e:
                trial.set_user_attr("error", str(e))
                self.study.tell(trial, state=TrialState.FAIL)
                continue
            if self.repeat(trial, cid):
                continue
            self.trials[cid] = trial
            return Run(point, cid)
        tqdm.write(f"  note: {MAX_ASKS} suggestions in a row repeated configurations run before: search space "
                   "exhausted")
        return None

    def repeat(self, trial: Trial, cid: str) -> bool:
        """Whether ``cid`` ran before or runs now: a run done before gives its result again, not a second run."""
        status = self.index.status(cid)
        if cid in self.trials or any(t.state == TrialState.RUNNING and t.number != trial.number and
                                     t.params == trial.params for t in self.study.get_trials(deepcopy=False)):
            trial.set_user_attr("repeats", "a running trial")
            self.study.tell(trial, state=TrialState.FAIL)
        elif status in ("finished", "stopped"):
            path = max(r["path"] for r in self.index.by_id[cid] if r["status"] == status)
            trial.set_user_attr("repeats", str(path))
            self.tell(trial, results.Record.load(path))
        else:
            return False
        return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
