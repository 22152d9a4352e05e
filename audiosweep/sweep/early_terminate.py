"""``early_terminate: hyperband`` run locally: each run's per-epoch metric is read from the progress file beside
its record and given to an Optuna pruner, which says when to stop it (SIGTERM); the run's record is then marked
``stopped`` (its history kept), never failed.

W&B's hyperband is asynchronous successive halving with one set of brackets, which is Optuna's
``SuccessiveHalvingPruner`` (see :func:`pruner`). Bayes sweeps prune their own study's trials (bayes.py); grid and
random sweeps get a study of their own that holds only the pruner's rungs (:class:`HyperbandRunner`).
"""

from __future__ import annotations

import json
import math
import signal
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import Trial, TrialState
from tqdm.auto import tqdm

from .. import results
from ..errors import SweepError
from .procs import signal_group
from .runner import Job, Options, Runner
from .spec import Plan, Sweep

PRUNED_AT = "pruned at epoch {}"


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


def storage(url: str | None, folder: Path) -> str | optuna.storages.BaseStorage:
    """``url`` (an RDB URL such as sqlite:///study.db), else the journal file beside the sweep's records, locked
    for runners that share it."""
    if url:
        return url
    folder.mkdir(parents=True, exist_ok=True)
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(str(folder / "optuna.journal")))


def metric_at(rows: list[dict[str, Any]], name: str) -> float | None:
    """The sweep metric after the last of ``rows`` (best_accuracy: the best accuracy so far)."""
    if name == "best_accuracy":
        accs = [r["accuracy"] for r in rows if r.get("accuracy") is not None]
        return max(accs) if accs else None
    value = rows[-1].get(name) if rows else None
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None


class EarlyTermination:
    """What a :class:`Runner` needs to prune its runs: ``self.study`` (whose pruner decides), ``self.trials`` (the
    running runs' trials by config id) and ``self.metric``. Reads each running run's progress file between polls,
    reports its new epochs, stops the pruned; when a run ends, tells the study how it went."""

    study: optuna.Study
    trials: dict[str, Trial]
    metric: str

    def init_pruning(self, sweep: Sweep) -> None:
        self.prunes = bool(sweep.raw.get("early_terminate"))
        self.trials = {}  # by config id, while its run runs
        self.progress: dict[str, tuple[Path, int]] = {}  # config id -> progress file, rows read
        self.pruned: dict[str, int] = {}  # config id -> epoch it was stopped at

    def watch(self) -> None:
        """Report each running run's new epochs to its trial; stop it when the pruner says so."""
        if not self.prunes:
            return
        for job in self.running.values():
            cid = job.run.config_id
            rows, seen = self.read_progress(job)
            if len(rows) == seen or cid in self.pruned:
                continue
            trial = self.trials[cid]
            for i in range(seen, len(rows)):
                value = metric_at(rows[: i + 1], self.metric)
                if value is not None:
                    trial.report(value, rows[i]["epoch"])
            if trial.should_prune():
                self.pruned[cid] = rows[-1]["epoch"]
                signal_group(job.proc, signal.SIGTERM)
                tqdm.write(f"  pruning {self.describe(job.run)} at epoch {rows[-1]['epoch']} ({cid})")

    def read_progress(self, job: Job) -> tuple[list[dict[str, Any]], int]:
        """The rows of ``job``'s progress file and how many of them were read before; the file is the new one
        whose rows carry the job's launch id (runners on other machines share the folder and its process ids)."""
        cid = job.run.config_id
        if cid not in self.progress:
            claimed = {p for p, _ in self.progress.values()}
            for path in self.folder.glob(f"*{results.PROGRESS_SUFFIX}"):
                rows = _rows(path) if path not in claimed and path.stat().st_mtime >= job.started - 1 else []
                if rows and rows[0].get("launch") == job.launch:
                    self.progress[cid] = (path, 0)
                    break
            else:
                return [], 0
        path, seen = self.progress[cid]
        rows = _rows(path)
        self.progress[cid] = (path, len(rows))
        return rows, seen

    def finish(self, job: Job, total: int) -> int:
        cid = job.run.config_id
        self.index.refresh()
        new = [r for r in self.index.by_id.get(cid, []) if r["path"] not in job.known]
        if cid in self.pruned:
            for info in new:
                if info["status"] == "failed" and info["reason"] in results.STOP_REASONS:
                    self.mark_stopped(info, self.pruned[cid])
        counted = super().finish(job, total)
        recs = [results.Record.load(r["path"]) for r in self.index.by_id.get(cid, []) if r["path"] not in job.known]
        done = [r for r in recs if r.status in ("finished", "stopped")]
        self.tell(self.trials.pop(cid), (done or recs or [None])[-1], interrupted=not counted)
        self.pruned.pop(cid, None)
        self.progress.pop(cid, None)
        return counted

    def tell(self, trial: Trial, rec: results.Record | None, interrupted: bool = False) -> None:
        """The study learns how the run went: its metric, pruned, or failed (interrupted by the user: marked so)."""
        if rec is not None:
            trial.set_user_attr("record", rec.run_id)
        value = getattr(rec.summary, self.metric) if rec else None  # the sweep's metric: a summary field
        if rec and rec.status == "stopped":
            self.study.tell(trial, state=TrialState.PRUNED)
        elif rec and rec.status == "finished" and isinstance(value, (int, float)) and math.isfinite(value):
            self.study.tell(trial, value)
        else:
            if interrupted:
                trial.set_user_attr("interrupted", True)
            self.study.tell(trial, state=TrialState.FAIL)

    def mark_stopped(self, info: dict[str, Any], epoch: int) -> None:
        """The record of a run this runner stopped, ``stopped`` (its history kept) instead of ``failed``."""
        rec = results.Record.load(info["path"]).stopped(PRUNED_AT.format(epoch), by="audiosweep.sweep")
        results.write_json_atomic(info["path"], rec.to_dict())
        info.update(status="stopped", reason=rec.reason)


class HyperbandRunner(EarlyTermination, Runner):
    """A grid or random sweep with ``early_terminate``: its plan's runs, each a trial of the study
    ``<sweep>:hyperband`` (in the sweep's journal file) that holds only what the pruner compares: every run's
    metric per epoch, kept across resumes."""

    def __init__(self, sweep: Sweep, plan: Plan, opts: Options):
        super().__init__(sweep, plan, opts)
        self.init_pruning(sweep)
        self.metric = sweep.raw["metric"]["name"]
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # the runner reports each run itself
        if not opts.dry_run:
            self.study = optuna.create_study(
                storage=storage(None, self.folder), study_name=f"{sweep.name}:hyperband",
                direction=sweep.raw["metric"].get("goal", "minimize"), pruner=pruner(sweep), load_if_exists=True)

    def report_start(self, *runs) -> None:
        super().report_start(*runs)
        print(f"  early_terminate: {pruner(self.sweep).__class__.__name__} on {self.metric} per epoch, rungs in "
              f"{self.folder / 'optuna.journal'}")

    def start(self, slot: int, run) -> None:
        trial = self.study.ask()
        trial.set_user_attr("config_id", run.config_id)
        self.trials[run.config_id] = trial
        try:
            super().start(slot, run)
        except BaseException:
            self.study.tell(self.trials.pop(run.config_id), state=TrialState.FAIL)
            raise


def _rows(path: Path) -> list[dict[str, Any]]:
    """The complete lines of a progress file (a line being written is left for the next read)."""
    try:
        text = path.read_text()
    except OSError:
        return []
    rows = []
    for line in text.splitlines(keepends=True):
        if line.endswith("\n"):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows
