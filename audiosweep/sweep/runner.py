"""Local sweep runner: each run of a sweep is started as the command a W&B agent would run, on a pool of workers.

The runs come from a :class:`Source` (a grid or random plan, or an Optuna study), and an optional :class:`Pruner`
stops the ones not worth finishing. Resumable: a run with a finished record (same configuration) in the sweep's
results folder is never started again. A run that ends without writing a record gets a failed record written on its
behalf, so nothing goes unreported.
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from tqdm.std import tqdm  # not tqdm.auto: it warns in Jupyter without ipywidgets

from .. import results, tracking
from ..errors import EXIT_FAILED, EXIT_OK, SweepError, signal_exit
from ..locks import exclusive
from .procs import exit_description, signal_group, spawn, stop_all, tail, threads_per_run
from .progress import Projections, find_file
from .spec import Run, Sweep, build_command, run_config


@dataclass
class Options:
    results_root: Path = Path("results")
    slots: list[str | None] = field(default_factory=lambda: [None])  # GPU id per worker; None: leave it as is
    wandb_mode: str = "auto"  # as train.py: online with W&B credentials, else offline
    dry_run: bool = False
    grace_s: float = 10.0  # how long stopped runs get before SIGKILL
    prior_s: float | None = None  # a run's seconds by the cost model (records of earlier runs): the first ETA
    max_failures: int = 3  # consecutive runs failed with the same error that stop the sweep; 0: never stop

    def folder(self, sweep: Sweep) -> Path:
        """The sweep's results folder: its records, logs and Optuna journal; always inside ``results_root``."""
        name = sweep.name
        if Path(name).name != name or name.startswith(".") or "\\" in name or "\0" in name:  # load_sweep refuses these
            raise SweepError(f"{sweep.path}: sweep name {name!r} is not one plain folder name")
        return self.results_root / name


@dataclass
class Job:
    run: Run
    proc: subprocess.Popen
    params: dict[str, Any]
    log: Path
    known: set[Path]
    started: float
    launch: str = ""  # the run's results.LAUNCH_ENV: its progress rows carry it


class RecordIndex:
    """The result records in a folder by configuration id; each file is read once."""

    def __init__(self, folder: Path):
        self.folder, self.seen = folder, set()
        self.by_id: dict[str, list[dict[str, Any]]] = {}
        self.problems: list[str] = []

    def refresh(self) -> None:
        for path in results.record_files(self.folder, recursive=False):
            if path.name in self.seen:
                continue
            self.seen.add(path.name)
            try:
                rec = results.Record.load(path)
            except ValueError as e:
                self.problems.append(f"{e}; left out")
                continue
            info = {"path": path, "status": rec.status, "error": rec.error, "reason": rec.reason,
                    "accuracy": rec.summary.accuracy}
            self.by_id.setdefault(results.config_id(rec.config), []).append(info)

    def status(self, cid: str) -> str | None:
        """finished, stopped (by early_terminate: done too), failed, or None for a configuration never run (or only
        stopped by a signal)."""
        statuses = {r["status"] for r in self.by_id.get(cid, []) if r["reason"] not in results.STOP_REASONS}
        return next((s for s in ("finished", "stopped", "failed") if s in statuses), None)

    def paths(self, cid: str) -> set[Path]:
        return {r["path"] for r in self.by_id.get(cid, [])}

    def resumable(self, cid: str) -> str | None:
        """The run id of the latest failed run of configuration ``cid`` that left a checkpoint beside its record,
        which a rerun continues (train.py --resume); None if none did."""
        for info in reversed(self.by_id.get(cid, [])):
            files = results.RunFiles(info["path"])
            if info["status"] == "failed" and files.checkpoint.exists():
                return files.run_id
        return None

    def forget(self, path: Path) -> None:
        """Read ``path`` anew at the next refresh: a resumed run writes its record there again."""
        self.seen.discard(path.name)
        for infos in self.by_id.values():
            infos[:] = [r for r in infos if r["path"] != path]


def same_error(error: str) -> str:
    """What two runs failing the same way share in their records' ``error``: its first line, with the numbers,
    run ids and hashes that differ between runs (any word with a digit) left out."""
    first = error.strip().splitlines()[0] if error.strip() else ""
    return re.sub(r"\S*\d\S*", "#", first)


def eta_seconds(durations: list[float], elapsed: list[float], pending: int, workers: int,
                prior: float | None = None, projected: list[float | None] | None = None) -> float | None:
    """Seconds until the sweep ends (None when nothing tells a run's length yet, and when none is left): every run
    still to do takes the mean of ``durations`` (the ended runs'; before any, the mean of the running runs'
    ``projected`` totals, from their epochs done: :class:`~audiosweep.sweep.progress.Projections`; before any
    epoch, ``prior``: the seconds a run takes by :mod:`~audiosweep.sweep.cost`'s model), a running one its own
    projection (else the mean) less its ``elapsed`` time (at least 0), and the workers share that work evenly (as
    many of them as there are runs left)."""
    projected = projected or [None] * len(elapsed)
    known = [p for p in projected if p is not None]
    busy = min(workers, pending + len(elapsed))
    mean = sum(durations) / len(durations) if durations else sum(known) / len(known) if known else prior
    if not (durations or known or prior) or not busy:
        return None
    running = sum(max((mean if p is None else p) - e, 0.0) for e, p in zip(elapsed, projected, strict=True))
    return (pending * mean + running) / busy


def eta_text(seconds: float | None) -> str:
    """``about 3 min left``, ``about 40 s left`` under a minute; empty before the first estimate."""
    if seconds is None:
        return ""
    return f"about {round(seconds)} s left" if round(seconds) < 60 else f"about {round(seconds / 60)} min left"


@contextmanager
def sweep_lock(folder: Path) -> Iterator[None]:
    """Hold ``folder/.sweep.lock`` so a second runner cannot start the same runs at the same time."""
    folder.mkdir(parents=True, exist_ok=True)

    def refuse(f: IO) -> None:
        f.seek(0)
        raise SweepError(f"another runner (pid {f.read().strip() or '?'}) is running the sweep in {folder}; "
                         "wait for it to end or stop it first")

    with exclusive(folder / ".sweep.lock", busy=refuse) as f:  # never through a planted link
        f.truncate(0)
        f.write(str(os.getpid()))
        f.flush()
        yield


class Source(Protocol):
    """Where a runner's runs come from. ``begin`` comes first (after the sweep lock, if any); then the runner asks
    ``next_run`` while ``left()`` is above 0 and a worker is free, and tells every run it got how it went."""

    shared: bool  # runners may draw from it at once (each gets its own runs): no sweep lock
    failed_before: list[str]  # after begin: runs that failed before and are not run again, reported as failures

    def begin(self, index: RecordIndex, dry_run: bool) -> list[str]:
        """Read what ran before (``index``: the sweep's records); the lines that open the runner's report."""

    def dry_run(self, command: Callable[[Run], list[str]]) -> list[str]:
        """What ``--dry_run`` lists: the runs (and their ``command``) or the search space."""

    def left(self) -> int:
        """How many runs at most are still to start; each ``next_run`` takes one off, 0 once it returned None."""

    def next_run(self) -> Run | None:
        """The next run to start; None: no more, ever (the plan is done, or the study's budget or search space)."""

    def tell(self, run: Run, rec: results.Record | None, interrupted: bool) -> None:
        """How ``run`` went: the record that says it (None: none, or it could not start), ``interrupted`` by the
        user."""

    def end_report(self, counts: dict[str, int], interrupted: int) -> str:
        """The runner's closing line: ``counts`` of the runs ended now by status, ``interrupted`` of them."""


class Pruner(Protocol):
    """Stops running runs that are not worth finishing (``early_terminate``)."""

    def watch(self, jobs: Iterable[Job]) -> list[tuple[Job, int]]:
        """The running ``jobs`` to stop now, each with the epoch it is stopped at."""

    def finished(self, job: Job, new: list[dict[str, Any]]) -> None:
        """``job`` ended; ``new``: the record index's entries of the records it wrote (those of a run the pruner
        stopped are marked so here, before the runner counts them)."""


class Runner:
    """Runs a sweep's runs from ``source``, stopped early by ``pruner`` if given; ``run()`` returns the exit status
    (0 all finished, 1 any failed, 128+N on signal N)."""

    def __init__(self, sweep: Sweep, source: Source, opts: Options, pruner: Pruner | None = None):
        self.sweep, self.source, self.opts, self.pruner = sweep, source, opts, pruner
        self.folder = opts.folder(sweep)
        self.index = RecordIndex(self.folder)
        self.running: dict[int, Job] = {}
        self.counts = {"finished": 0, "stopped": 0, "failed": 0}
        self.durations: list[float] = []  # of the runs ended now (finished or failed, not interrupted): the ETA
        self.failures: list[str] = []
        self.interrupted = 0
        self.stop_signal: int | None = None
        self.kill_now = False
        self.same_failures: tuple[str, int] = ("", 0)  # the last failures' error (normalised) and how many in a row
        self.gave_up: tuple[str, int] | None = None  # the error that stopped the sweep (max_failures), its count

    def launch_params(self, run: Run) -> dict[str, Any]:
        """The run's train.py keys; ``resume`` too when an earlier run of its configuration stopped with a
        checkpoint (preempted, killed, failed): the rerun continues it."""
        resume = self.index.resumable(run.config_id) if self.sweep.program.name == "train.py" else None
        return {**run.params, "results_dir": str(self.folder), "wandb_mode": self.opts.wandb_mode,
                **({"resume": resume} if resume else {})}

    def args_json_file(self, run: Run) -> Path:
        return self.folder / "logs" / f"{run.config_id}.args.json"

    def command(self, run: Run) -> list[str]:
        return build_command(self.sweep, self.launch_params(run), self.args_json_file(run))

    def run(self) -> int:
        if self.opts.dry_run:  # reads records only: no lock needed
            return self.run_locked()
        # The lock comes before reading any record: a second runner must not plan runs the first is doing.
        with nullcontext() if self.source.shared else sweep_lock(self.folder), self.signals():
            return self.run_locked()

    def run_locked(self) -> int:
        self.index.refresh()
        for line in self.source.begin(self.index, self.opts.dry_run):
            print(line, flush=True)
        if self.opts.dry_run:
            for line in self.source.dry_run(self.command):
                print(line)
            return 0
        self.failures += self.source.failed_before
        self.sweep.save_copy(self.folder)
        self.pool()
        print(self.source.end_report(self.counts, self.interrupted))
        return self.exit_status()

    def env(self, gpu: str | None, run: Run | None = None) -> dict[str, str]:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        if run is not None:
            env.update(self.wandb_env(run))
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = gpu
        if "OMP_NUM_THREADS" not in os.environ:  # intra-op threads per run: the cores shared by the workers
            env["OMP_NUM_THREADS"] = str(threads_per_run(len(self.opts.slots)))
        return env

    def wandb_env(self, run: Run) -> dict[str, str]:
        """W&B's own variables, read by ``wandb.init``: the sweep's runs grouped under its name, each named by its
        varying keys; and ours, which puts the sweep's name into the W&B config. Under a W&B agent (WANDB_SWEEP_ID
        set) W&B groups the runs itself."""
        if os.environ.get("WANDB_SWEEP_ID"):
            return {}
        return {"WANDB_RUN_GROUP": self.sweep.name, "WANDB_NAME": self.sweep.describe(run),
                "WANDB_TAGS": f"{self.sweep.name},audiosweep-local", tracking.SWEEP_ENV: self.sweep.name}

    def start(self, slot: int, run: Run) -> None:
        try:
            self.launch(slot, run)
        except BaseException:
            self.source.tell(run, None, interrupted=False)  # a run that never ran: failed
            raise

    def launch(self, slot: int, run: Run) -> None:
        params, cmd = self.launch_params(run), self.command(run)
        if params.get("resume"):  # train.py writes the same record again: read anew, counted as this run's
            self.index.forget(results.RunFiles.of(self.folder, params["resume"]).record)
            tqdm.write(f"  resuming {self.sweep.describe(run)} from the checkpoint of run {params['resume']} "
                       f"(--resume {params['resume']})")
        if "${args_json_file}" in map(str, self.sweep.raw.get("command") or []):
            results.write_json_atomic(self.args_json_file(run), params)
        gpu = self.opts.slots[slot]
        log = self.folder / "logs" / f"{run.config_id}.log"
        header = (f"# {time.strftime('%Y-%m-%d %H:%M:%S')} {self.sweep.name} {run.config_id}: "
                  + ("" if gpu is None else f"CUDA_VISIBLE_DEVICES={gpu} ") + shlex.join(cmd))
        launch = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(6)}"  # unique across machines
        try:
            proc = spawn(cmd, log, {**self.env(gpu, run), results.LAUNCH_ENV: launch}, header)
        except OSError as e:
            raise SweepError(f"cannot start {cmd[0]!r} for run {run.config_id}: {e}") from e
        self.running[slot] = Job(run, proc, params, log, self.index.paths(run.config_id), time.time(), launch)

    def pool(self) -> None:
        tqdm.monitor_interval = 0  # no monitor thread: children are forked with a preexec hook
        # No tqdm rate and remaining time: runs are few and long; eta_seconds estimates from their durations.
        bar = tqdm(total=self.source.left(), unit="run", desc=self.sweep.name, dynamic_ncols=True,
                   bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]")
        interactive, eta, projections, eta_t = sys.stderr.isatty(), "", Projections(self.folder), 0.0
        try:
            while True:
                if self.stop_signal is None and self.gave_up is None:
                    for slot in range(len(self.opts.slots)):
                        if self.source.left() and slot not in self.running:
                            run = self.source.next_run()
                            if run is None:
                                break
                            self.start(slot, run)
                elif self.running:
                    self.stop_running()
                self.prune()
                ended = [slot for slot, job in self.running.items() if job.proc.poll() is not None]
                counted = sum(self.finish(self.running.pop(slot), bar.total) for slot in ended)
                # A log file gets a new line only when a run ends; a terminal a new estimate each second (it
                # reads the progress files).
                if counted or (interactive and time.time() - eta_t >= 1):
                    eta_t, jobs = time.time(), list(self.running.values())
                    eta = eta_text(eta_seconds(self.durations, [time.time() - j.started for j in jobs],
                                               self.source.left(), len(self.opts.slots), self.opts.prior_s,
                                               projections.seconds(jobs)))
                postfix = (f"done {self.counts['finished']}, failed {self.counts['failed']}, "
                           f"running {len(self.running)}, left {self.source.left()}" + (f", {eta}" if eta else ""))
                if counted or postfix != bar.postfix or (interactive and time.time() - bar.last_print_t > 1):
                    bar.set_postfix_str(postfix, refresh=False)
                    bar.update(counted)  # redraws the bar: its clock and ETA move on a terminal
                    bar.refresh()
                if not self.running and (not self.source.left() or self.stop_signal is not None or self.gave_up):
                    break
                time.sleep(0.2)
        finally:
            if self.running:  # an error in the runner itself: take the runs down with it
                self.stop_running()
            bar.close()

    def prune(self) -> None:
        """Between polls: SIGTERM the runs the pruner stops (their records are marked when they end)."""
        if self.pruner is None:
            return
        for job, epoch in self.pruner.watch(self.running.values()):
            signal_group(job.proc, signal.SIGTERM)
            tqdm.write(f"  pruning {self.sweep.describe(job.run)} at epoch {epoch} ({job.run.config_id})")

    def stop_running(self) -> None:
        """SIGTERM every running run's process group; SIGKILL after the grace period or a second signal."""
        stop_all([job.proc for job in self.running.values()], self.opts.grace_s, hurry=lambda: self.kill_now)

    def finish(self, job: Job, total: int) -> int:
        """Account for an ended run by the records it wrote, tell the source how it went; return 1 if it counts as
        done or failed, 0 if it was interrupted by the user."""
        self.index.refresh()
        new = [r for r in self.index.by_id.get(job.run.config_id, []) if r["path"] not in job.known]
        if self.pruner is not None:
            self.pruner.finished(job, new)
        counted = self.account(job, new, total)
        # The records it wrote itself: a run that wrote none is told as such, not by the failed record written for it.
        recs = [results.Record.load(r["path"]) for r in new]
        for r in new:  # pruned: never run again, so its checkpoint would only take room
            if r["status"] == "stopped":
                results.RunFiles(r["path"]).checkpoint.unlink(missing_ok=True)
        done = [r for r in recs if r.status in ("finished", "stopped")]
        self.source.tell(job.run, (done or recs or [None])[-1], interrupted=not counted)
        return counted

    def account(self, job: Job, new: list[dict[str, Any]], total: int) -> int:
        """Count and report an ended run by its ``new`` records (a failed record is written for it if it wrote
        none); 1 if it counts as done or failed, 0 if it was interrupted by the user."""
        code, took = job.proc.returncode, time.time() - job.started
        with results.open_append(job.log) as f:
            f.write(f"\n# {time.strftime('%Y-%m-%d %H:%M:%S')} ended: {exit_description(code)} after {took:.0f}s"
                    + (" (stopped by the runner)" if self.stop_signal is not None else "") + "\n")
        finished = [r for r in new if r["status"] == "finished"]
        stopped = self.stop_signal is not None and all(r["reason"] in results.STOP_REASONS for r in new)
        if finished:
            acc = finished[0]["accuracy"]
            kind, text = "finished", "finished" + (f"  accuracy {acc:.4f}" if acc is not None else "")
        elif stopped:
            self.interrupted += 1
            tqdm.write(f"  interrupted  {self.sweep.describe(job.run)}  ({exit_description(code)}; runs again on "
                       "resume)")
            return 0
        elif any(r["status"] == "stopped" for r in new):
            kind, text = "stopped", f"stopped  {new[-1]['reason']}"
        elif new:
            error = new[-1]["error"] or ""
            kind, text = "failed", f"FAILED  {error}"
        else:
            path, error = self.write_failed_record(job, code, took)
            kind, text = "failed", f"FAILED  {exit_description(code)} without a record; wrote {path}"
        self.counts[kind] += 1
        self.durations.append(took)
        if kind == "failed":
            self.failures.append(f"{self.sweep.describe(job.run)}: {text.removeprefix('FAILED  ')} (log: {job.log})")
        self.count_failure(error if kind == "failed" else None)
        tqdm.write(f"  [{sum(self.counts.values())}/{total}] {text}  {self.sweep.describe(job.run)}"
                   f"  {took:.0f}s  ({job.run.config_id})")
        return 1

    def count_failure(self, error: str | None) -> None:
        """Count a run that failed with ``error`` (None: one that did not fail); the same error in
        ``max_failures`` runs in a row stops the sweep: no new runs, the running ones finish."""
        if error is None:
            self.same_failures = ("", 0)
            return
        key = same_error(error)
        n = self.same_failures[1] + 1 if key == self.same_failures[0] else 1
        self.same_failures = (key, n)
        if self.opts.max_failures and n >= self.opts.max_failures and self.gave_up is None:
            self.gave_up = (error, n)
            if self.running:
                tqdm.write(f"  {n} runs in a row failed with the same error: no new runs; waiting for the "
                           f"{len(self.running)} running")

    def write_failed_record(self, job: Job, code: int, took: float) -> tuple[Path, str]:
        """Write a failed record for ``job``, which wrote none; its path and error."""
        error = (f"{self.sweep.program.name} ended ({exit_description(code)}) without writing a result record; "
                 f"last log lines: {tail(job.log)}")
        own = self.own_run_id(job)  # beside its checkpoint, so that a rerun resumes it
        path = results.RunFiles.of(self.folder, own or results.new_run_id()).record
        while path.exists():  # never overwrite a record
            path = results.RunFiles.of(self.folder, results.new_run_id()).record
        rec = results.Record.failed(run_config(job.params, self.sweep.recipe), results.RunFiles(path).run_id, error,
                                    results.environment(), round(took, 3), log=str(job.log), exit_code=code,
                                    written_by="audiosweep.sweep")
        return results.write_json_atomic(path, rec.to_dict()), error

    def own_run_id(self, job: Job) -> str | None:
        """The run id train.py gave ``job``'s run, when the run left a checkpoint and no record (killed, out of
        memory): found by its progress file, whose rows carry the job's launch id. None otherwise."""
        path = find_file(self.folder, job.launch, job.started, set())
        if path is None:
            return None
        files = results.RunFiles.of(self.folder, path.name.removesuffix(results.PROGRESS_SUFFIX))
        return files.run_id if files.checkpoint.exists() and not files.record.exists() else None

    def exit_status(self) -> int:
        """Print the failures; 128+N when stopped by signal N, 1 with failures, else 0."""
        for line in self.failures:
            print(f"  failed: {line}")
        if self.gave_up is not None:
            error, n = self.gave_up
            print(f"stopped after {n} runs in a row failed with the same error: "
                  f"{error.strip().splitlines()[0].rstrip('.') if error.strip() else '(none given)'}. Fix that and "
                  "run the same command again to resume (--max_failures 0: never stop)", flush=True)
        if self.stop_signal is not None:
            print("  stopped by a signal: run the same command again to resume")
            return signal_exit(self.stop_signal)
        return EXIT_FAILED if self.failures else EXIT_OK

    @contextmanager
    def signals(self) -> Iterator[None]:
        """SIGINT / SIGTERM / SIGHUP: stop starting runs and stop the running ones; a second signal: kill them."""
        def handler(signum: int, frame: Any) -> None:
            if self.stop_signal is None:
                self.stop_signal = signum
                tqdm.write(f"{signal.Signals(signum).name}: stopping {len(self.running)} running run(s); "
                           "finished records are kept; send it again to kill them at once")
            else:
                self.kill_now = True

        sigs = [s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None]
        previous = {s: signal.signal(s, handler) for s in sigs}
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
