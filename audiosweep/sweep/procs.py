"""Child processes of the sweep tools: each in its own process group, logged to a file, gone with its parent."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from .. import results

PR_SET_PDEATHSIG = 1


def _die_with(parent: int, sig: int) -> Callable[[], None] | None:
    """A preexec hook (Linux) asking the kernel to send ``sig`` to the child when ``parent`` dies, so a runner
    killed with SIGKILL leaves no orphan training runs behind."""
    if not sys.platform.startswith("linux"):
        return None

    def hook() -> None:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl
            os.kill(os.getpid(), sig)

    return hook


def spawn(cmd: list[str], log: Path, env: dict[str, str], header: str,
          parent_death_signal: int = signal.SIGKILL) -> subprocess.Popen:
    """Start ``cmd`` in a new session with stdout and stderr appended to ``log`` (after a ``header`` line)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with results.open_append(log) as f:  # a link planted at the name is not written through
        f.write(header.rstrip("\n") + "\n")
        f.flush()
        return subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True, preexec_fn=_die_with(os.getpid(), parent_death_signal))


def threads_per_run(concurrent: int) -> int:
    """Intra-op threads for each of ``concurrent`` runs: the cores this process may run on (its CPU affinity, as
    set by taskset or a batch scheduler; ``os.cpu_count`` counts the machine's) shared between them, at least 1."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity on macOS and Windows
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, concurrent))


def signal_group(proc: subprocess.Popen, sig: int) -> None:
    """Send ``sig`` to the process group of ``proc`` (the child and whatever it started)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def stop_all(procs: list[subprocess.Popen], grace: float = 10.0, hurry: Callable[[], bool] = lambda: False) -> None:
    """SIGTERM each process group, then SIGKILL what is still alive after ``grace`` seconds (or as soon as
    ``hurry()`` says so, e.g. on a second Ctrl-C)."""
    for p in procs:
        if p.poll() is None:
            signal_group(p, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(p.poll() is None for p in procs) and time.monotonic() < deadline and not hurry():
        time.sleep(0.1)
    for p in procs:
        if p.poll() is None:
            signal_group(p, signal.SIGKILL)
        p.wait()


def exit_description(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def tail(path: Path, n: int = 3) -> str:
    """The last ``n`` lines of a log, without blank lines and the runner's own ``# `` lines (progress-bar
    carriage returns folded)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    lines = [ln.split("\r")[-1].strip() for ln in text.splitlines()]
    return " | ".join([ln for ln in lines if ln and not ln.startswith("# ")][-n:])
