"""``method: bayes`` run locally on an Optuna study (see ``study``), with ``early_terminate: hyperband`` as its
pruner.

Each trial is one train.py run: its parameters are the study's suggestions (constants as given), its final metric
(the record's summary) is told to the study; a failed run is told as failed, a pruned one as pruned. The study
lives in a journal file, ``RESULTS_DIR/<sweep>/optuna.journal``, or in ``--storage URL`` (an RDB URL): runners on
one study, on this machine or others, divide the trials between them and a second run of the same command
continues the study.
"""

from __future__ import annotations

import itertools
import math
import os
import random
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import Trial, TrialState
from tqdm.std import tqdm  # not tqdm.auto: it warns in Jupyter without ipywidgets

from .. import results
from ..display import short_number
from ..errors import ConfigError, SweepError
from .claims import Claims, alive
from .params import Param, value_key
from .runner import RecordIndex
from .spec import Run, Sweep, run_config
from .study import open_study, sampler, shown, tell_result

UNBOUNDED = ("normal", "q_normal", "log_normal", "q_log_normal")
RUNNER = f"{socket.gethostname()}:{os.getpid()}"  # which runner asked for a trial
MAX_ASKS = 50  # suggestions in a row that repeat a configuration before the search space counts as exhausted
MAX_SPACE = 256  # a search space of at most this many configurations is counted out (about 25 ms a configuration)


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


class StudySource:
    """The runs of a bayes sweep: new trials of its study, ``count`` of them (at most the study's run_cap), each
    asked when a worker is free. Several runners share the study: each asks its own trials."""

    shared = True

    def __init__(self, sweep: Sweep, folder: Path, count: int | None, seed: int = 0, url: str | None = None):
        self.sweep, self.folder, self.seed, self.count = sweep, folder, seed, count
        self.dists = {n: d for n, p in sorted(sweep.params.items()) if (d := to_optuna(p)) is not None}
        self.constants = {n: p.grid_values()[0] for n, p in sweep.params.items() if p.constant}
        self.metric = sweep.raw["metric"]["name"]
        self.study = open_study(sweep, folder, url, seed)
        # printed: an RDB URL's password stays out of the logs
        self.where = shown(url) if url else str(folder / "optuna.journal")
        self.index: RecordIndex  # the runner's, from begin
        self.trials: dict[str, Trial] = {}  # by config id, while its run runs
        self.failed_before: list[str] = []
        self.todo = 0
        self.claims = Claims(folder)
        self.space: list[dict[str, Any]] | None = None  # a finite space's suggestions (finite()); [] if not finite
        self.space_ids: dict[str, str] = {}  # value_key of a suggestion -> config id

    def begin(self, index: RecordIndex, dry_run: bool) -> list[str]:
        self.index = index
        if not dry_run:
            self.fail_stale()
        states = self.states()
        self.todo = self.budget()
        lines = [f"sweep {self.sweep.name} ({self.sweep.source}): bayes (Optuna TPE) on study {self.sweep.name} in "
                 f"{self.where}: {self.describe_states(states)} before; {self.todo} to run; results in {self.folder}"]
        if self.sweep.raw.get("early_terminate"):
            lines.append(f"  early_terminate: {self.study.pruner.__class__.__name__} on {self.metric} per epoch")
        return lines

    def dry_run(self, command: Callable[[Run], list[str]]) -> list[str]:
        return [f"  {name}: {dist}" for name, (dist, _) in self.dists.items()]

    def end_report(self, counts: dict[str, int], interrupted: int) -> str:
        return (f"sweep {self.sweep.name}: {counts['finished']} finished, {counts['stopped']} stopped early, "
                f"{counts['failed']} failed now, {interrupted} interrupted; study: "
                f"{self.describe_states(self.states())}{self.best()}; results in {self.folder}")

    def fail_stale(self) -> None:
        """Trials left running by a runner of this machine that is gone (killed before it could tell the study)
        are failed, so their configurations can run again. A runner on another machine cannot be checked: its
        trials stay running, and count against run_cap, until that runner ends."""
        host = RUNNER.split(":")[0]
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            where, _, pid = str(t.user_attrs.get("runner", "")).rpartition(":")
            if where == host and pid.isdigit() and not alive(int(pid)):
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
        params = " ".join(f"{k}={short_number(v)}" for k, v in t.params.items())
        return f"; best {self.metric} {t.value:.4f} (trial {t.number}: {params})"

    def spent(self) -> int:
        """Trials that count against run_cap: all but those a user's Ctrl-C cut short, those not started and those
        that repeated a configuration (no run)."""
        return sum(not t.user_attrs.get("interrupted") and "repeats" not in t.user_attrs
                   and t.state != TrialState.WAITING for t in self.study.get_trials(deepcopy=False))

    def budget(self) -> int:
        cap = self.sweep.run_cap
        left = cap - self.spent() if cap is not None else None
        return max(0, min(n for n in (self.count, left) if n is not None))

    def left(self) -> int:
        return self.todo

    def next_run(self) -> Run | None:
        """A new trial's run, its configuration claimed; None when run_cap is reached or every configuration of
        the search space is done or running (a finite space: counted; else: MAX_ASKS repeats in a row)."""
        self.todo -= 1
        for _ in range(MAX_ASKS):
            if self.sweep.run_cap is not None and self.spent() >= self.sweep.run_cap:
                self.todo = 0
                return None
            if self.finite() and not self.free():
                tqdm.write(f"  note: search space exhausted: all {len(self.space)} configurations are done or "
                           "running")
                self.todo = 0
                return None
            trial = self.study.ask()
            trial.set_user_attr("runner", RUNNER)
            # Seeded by trial number, unique in the study: reproducible, and two runners never draw alike.
            self.study.sampler = sampler(self.seed + trial.number)
            point = {**self.constants, **suggest(trial, self.dists)}
            try:
                cfg = run_config(point, self.sweep.recipe)
                cid = results.config_id(cfg)
            except ConfigError as e:
                trial.set_user_attr("error", str(e))
                self.study.tell(trial, state=TrialState.FAIL)
                continue
            if self.repeat(trial, cid):
                self.suggest_free(trial.number)
                continue
            self.trials[cid] = trial
            return Run(point, cid, cfg)
        tqdm.write(f"  note: {MAX_ASKS} suggestions in a row repeated configurations run before: search space "
                   "exhausted")
        self.todo = 0
        return None

    def finite(self) -> bool:
        """Whether the search space is a list of at most MAX_SPACE configurations (``space``: their suggestions)."""
        if self.space is None:
            choices = [_choices(dist) for dist, _ in self.dists.values()]
            size = math.prod(len(c) if c is not None else MAX_SPACE + 1 for c in choices)
            self.space = [dict(zip(self.dists, combo, strict=True)) for combo in itertools.product(*choices)] \
                if size <= MAX_SPACE else []
        return bool(self.space)

    def free(self) -> list[dict[str, Any]]:
        """The suggestions of a finite space whose configuration is neither done (a finished or stopped record) nor
        claimed by a runner; config ids are worked out once each, when first needed."""
        self.index.refresh()
        taken = self.claims.claimed()
        out = []
        for params in self.space:
            key = value_key(params)
            if key not in self.space_ids:
                point = {**self.constants, **{n: self.dists[n][1](v) for n, v in params.items()}}
                try:
                    self.space_ids[key] = results.config_id(run_config(point, self.sweep.recipe))
                except ConfigError:
                    self.space_ids[key] = ""  # never runs
            cid = self.space_ids[key]
            if cid and cid not in taken and self.index.status(cid) not in ("finished", "stopped"):
                out.append(params)
        return out

    def suggest_free(self, number: int) -> None:
        """After a repeated suggestion in a finite space: the next trial is one of the configurations still free
        (chosen at random, seeded by trial number), so that the study does not fill with repeats."""
        if self.finite() and (free := self.free()):
            pick = free[random.Random(self.seed + number).randrange(len(free))]
            self.study.enqueue_trial(pick, user_attrs={"enqueued": "a free configuration after a repeat"})

    def trial(self, run: Run) -> Trial:
        """The trial of a running run."""
        return self.trials[run.config_id]

    def tell(self, run: Run, rec: results.Record | None, interrupted: bool) -> None:
        tell_result(self.study, self.trials.pop(run.config_id), rec, self.metric, interrupted)
        self.claims.release(run.config_id)

    def repeat(self, trial: Trial, cid: str) -> bool:
        """Whether ``cid`` runs now (claimed by a runner, or a running trial of the study) or ran before: a run
        done before gives its result again, a running one fails the trial; either way no second run. Otherwise the
        configuration is claimed for ``trial``."""
        running = any(t.state == TrialState.RUNNING and t.number != trial.number and t.params == trial.params
                      for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
        if running or not self.claims.take(cid):
            trial.set_user_attr("repeats", "a running trial")
            self.study.tell(trial, state=TrialState.FAIL)
            return True
        self.index.refresh()  # what other runners finished since: read after the claim, so none is missed
        status = self.index.status(cid)
        if status not in ("finished", "stopped"):
            return False
        self.claims.release(cid)
        path = max(r["path"] for r in self.index.by_id[cid] if r["status"] == status)
        trial.set_user_attr("repeats", str(path))
        tell_result(self.study, trial, results.Record.load(path), self.metric)
        return True


def _choices(dist: BaseDistribution) -> list[Any] | None:
    """The values of a distribution with finitely many (categorical, integer, or float with a step), else None."""
    if isinstance(dist, CategoricalDistribution):
        return list(dist.choices)
    step = getattr(dist, "step", None)
    if step is None or getattr(dist, "log", False) or (dist.high - dist.low) / step > MAX_SPACE:
        return None
    n = int(round((dist.high - dist.low) / step))
    return [dist.low + i * step if isinstance(dist, FloatDistribution) else int(dist.low + i * step)
            for i in range(n + 1)]
