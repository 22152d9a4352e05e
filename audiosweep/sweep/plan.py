"""``method: grid`` and ``random`` run locally: the runs of the sweep's plan (see ``spec.expand``), each once."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path

from .. import results
from .runner import RecordIndex
from .spec import Plan, Run, Sweep


class PlanSource:
    """The runs of ``plan`` without a finished (or stopped) record in ``folder``; those that failed before too,
    unless ``retry_failed`` is off (then they are reported as failures). Holds the sweep lock: two runners of one
    plan would start the same runs."""

    shared = False

    def __init__(self, sweep: Sweep, plan: Plan, folder: Path, retry_failed: bool = True):
        self.sweep, self.plan, self.folder, self.retry_failed = sweep, plan, folder, retry_failed
        self.status: dict[str, str | None] = {}
        self.done: list[Run] = []
        self.pending: list[Run] = []  # the runs still to start, the next one last
        self.failed_before: list[str] = []

    def begin(self, index: RecordIndex, dry_run: bool) -> list[str]:
        runs = self.plan.runs
        self.status = status = {r.config_id: index.status(r.config_id) for r in runs}
        self.done = [r for r in runs if status[r.config_id] in ("finished", "stopped")]
        failed = [r for r in runs if status[r.config_id] == "failed"]
        todo = [r for r in runs if status[r.config_id] is None or
                (status[r.config_id] == "failed" and self.retry_failed)]
        self.pending = list(reversed(todo))
        if not self.retry_failed:
            self.failed_before = [f"{self.sweep.describe(r)}: failed before, not rerun (--no_retry_failed): "
                                  f"{last_error(index, r)}" for r in failed]
        what = "rerun" if self.retry_failed else "reported, not rerun"
        lines = [f"sweep {self.sweep.name} ({self.sweep.source}): {len(runs)} runs ({self.sweep.method}); "
                 f"{len(self.done)} finished before, {len(failed)} failed before ({what}), {len(todo)} to run; "
                 f"results in {self.folder}"]
        lines += [f"  note: {note}" for note in self.plan.notes + index.problems]
        overridden = sorted({"results_dir", "wandb_mode"} & set(self.sweep.params))
        if overridden:
            lines.append(f"  note: the runner sets {', '.join(overridden)} (see --results_dir, --wandb_mode)")
        return lines

    def dry_run(self, command: Callable[[Run], list[str]]) -> list[str]:
        labels = {"finished": "finished", "stopped": "stopped ", "failed": "failed  "}
        return [f"  {labels.get(self.status[r.config_id], 'to run  ')} {r.config_id}  {self.sweep.describe(r)}\n"
                f"      {shlex.join(command(r))}" for r in self.plan.runs]

    def left(self) -> int:
        return len(self.pending)

    def next_run(self) -> Run | None:
        return self.pending.pop() if self.pending else None

    def tell(self, run: Run, rec: results.Record | None, interrupted: bool) -> None:
        """A plan is fixed: how its runs went changes nothing."""

    def end_report(self, counts: dict[str, int], interrupted: int) -> str:
        stopped = f", {counts['stopped']} stopped early now" if counts["stopped"] else ""
        return (f"sweep {self.sweep.name}: {len(self.done) + counts['finished']} of {len(self.plan.runs)} runs "
                f"finished ({counts['finished']} now, {len(self.done)} before){stopped}, {counts['failed']} failed "
                f"now, {len(self.failed_before)} failed before and not rerun, {interrupted} interrupted, "
                f"{self.left()} not started; results in {self.folder}")


def last_error(index: RecordIndex, run: Run) -> str:
    """The error of ``run``'s last record, and where that record is."""
    recs = index.by_id.get(run.config_id, [])
    return f"{recs[-1]['error']} ({recs[-1]['path']})" if recs else "no record"
