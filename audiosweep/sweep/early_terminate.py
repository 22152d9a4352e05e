"""``early_terminate: hyperband`` run locally: each run's per-epoch metric is read from the progress file beside
its record and given to an Optuna pruner (``study.pruner``), which says when to stop it (SIGTERM); the run's record
is then marked ``stopped`` (its history kept), never failed.

:class:`Hyperband` is the runner's pruner; the trial each run reports to comes from the runner's source: a bayes
sweep's own trials (bayes.py), or for grid and random sweeps :class:`RungSource`, a trial per run in a study of its
own that holds only the pruner's rungs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import Trial

from .. import results
from .progress import find_file, finite, read_rows
from .runner import Job, RecordIndex, Source
from .spec import Run, Sweep
from .study import open_study, pruner, tell_result

PRUNED_AT = "pruned at epoch {}"


def metric_at(rows: list[dict[str, Any]], name: str) -> float | None:
    """The sweep metric after the last of ``rows`` (best_accuracy: the best accuracy so far)."""
    if name == "best_accuracy":
        accs = [r["accuracy"] for r in rows if finite(r.get("accuracy"))]
        return max(accs) if accs else None
    value = rows[-1].get(name) if rows else None
    return value if finite(value) else None


class Hyperband:
    """Reads each running run's progress file between polls, reports its new epochs to the run's trial (``trial``:
    run -> its trial, from the runner's source) and says which runs the study's pruner stops; when a stopped run
    ends, marks its record ``stopped``."""

    def __init__(self, folder: Path, metric: str, trial: Callable[[Run], Trial]):
        self.folder, self.metric, self.trial = folder, metric, trial
        self.progress: dict[str, tuple[Path, int]] = {}  # config id -> progress file, rows read
        self.pruned: dict[str, int] = {}  # config id -> epoch it was stopped at

    def watch(self, jobs: Iterable[Job]) -> list[tuple[Job, int]]:
        """Report each running run's new epochs to its trial; the runs to stop, when the pruner says so."""
        stop = []
        for job in jobs:
            cid = job.run.config_id
            rows, seen = self.read_progress(job)
            if len(rows) == seen or cid in self.pruned:
                continue
            trial = self.trial(job.run)
            for i in range(seen, len(rows)):
                value = metric_at(rows[: i + 1], self.metric)
                if value is not None:
                    trial.report(value, rows[i]["epoch"])
            if trial.should_prune():
                self.pruned[cid] = rows[-1]["epoch"]
                stop.append((job, rows[-1]["epoch"]))
        return stop

    def read_progress(self, job: Job) -> tuple[list[dict[str, Any]], int]:
        """The rows of ``job``'s progress file and how many of them were read before; the file is the new one
        whose rows carry the job's launch id (runners on other machines share the folder and its process ids)."""
        cid = job.run.config_id
        if cid not in self.progress:
            path = find_file(self.folder, job.launch, job.started, {p for p, _ in self.progress.values()})
            if path is None:
                return [], 0
            self.progress[cid] = (path, 0)
        path, seen = self.progress[cid]
        rows = read_rows(path)
        self.progress[cid] = (path, len(rows))
        return rows, seen

    def finished(self, job: Job, new: list[dict[str, Any]]) -> None:
        """A run stopped here that ended with a failed record of a stop (SIGTERM): that record becomes stopped."""
        cid = job.run.config_id
        if cid in self.pruned:
            for info in new:
                if info["status"] == "failed" and info["reason"] in results.STOP_REASONS:
                    mark_stopped(info, self.pruned[cid])
        self.pruned.pop(cid, None)
        self.progress.pop(cid, None)


def mark_stopped(info: dict[str, Any], epoch: int) -> None:
    """The record of a run this runner stopped, ``stopped`` (its history kept) instead of ``failed``."""
    rec = results.Record.load(info["path"]).stopped(PRUNED_AT.format(epoch), by="audiosweep.sweep")
    results.write_json_atomic(info["path"], rec.to_dict())
    info.update(status="stopped", reason=rec.reason)


class RungSource:
    """A grid or random sweep with ``early_terminate``: the runs of ``plan``, each a trial of the study
    ``<sweep>:hyperband`` (in the sweep's journal file) that holds only what the pruner compares: every run's
    metric per epoch, kept across resumes."""

    def __init__(self, plan: Source, sweep: Sweep, folder: Path):
        self.plan, self.sweep, self.folder = plan, sweep, folder
        self.shared = plan.shared
        self.metric = sweep.raw["metric"]["name"]
        self.pruner_name = pruner(sweep).__class__.__name__
        self.study: optuna.Study | None = None  # opened by begin; a dry run writes nothing
        self.trials: dict[str, Trial] = {}  # by config id, while its run runs

    @property
    def failed_before(self) -> list[str]:
        return self.plan.failed_before

    def begin(self, index: RecordIndex, dry_run: bool) -> list[str]:
        if not dry_run:
            self.study = open_study(self.sweep, self.folder, name=f"{self.sweep.name}:hyperband")
        return [*self.plan.begin(index, dry_run), f"  early_terminate: {self.pruner_name} on {self.metric} per "
                f"epoch, rungs in {self.folder / 'optuna.journal'}"]

    def dry_run(self, command: Callable[[Run], list[str]]) -> list[str]:
        return self.plan.dry_run(command)

    def left(self) -> int:
        return self.plan.left()

    def next_run(self) -> Run | None:
        run = self.plan.next_run()
        if run is not None:
            trial = self.study.ask()
            trial.set_user_attr("config_id", run.config_id)
            self.trials[run.config_id] = trial
        return run

    def trial(self, run: Run) -> Trial:
        """The trial of a running run."""
        return self.trials[run.config_id]

    def tell(self, run: Run, rec: results.Record | None, interrupted: bool) -> None:
        tell_result(self.study, self.trials.pop(run.config_id), rec, self.metric, interrupted)
        self.plan.tell(run, rec, interrupted)

    def end_report(self, counts: dict[str, int], interrupted: int) -> str:
        return self.plan.end_report(counts, interrupted)

