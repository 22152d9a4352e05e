"""W&B path: one ``wandb agent`` per GPU, each pinned with CUDA_VISIBLE_DEVICES and logged to its own file."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import SweepError, signal_exit
from .procs import exit_description, spawn, stop_all, tail

SWEEP_ID = re.compile(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+){0,2}")


def visible_gpus() -> list[str]:
    """GPU ids this process may use: CUDA_VISIBLE_DEVICES if set, else every GPU torch (or nvidia-smi) sees."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip() and g.strip() != "-1"]
    try:
        import torch

        n = torch.cuda.device_count()
    except Exception:
        n = 0
    if n == 0 and shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout
            n = sum(line.startswith("GPU ") for line in out.splitlines())
        except (OSError, subprocess.SubprocessError):
            n = 0
    return [str(i) for i in range(n)]


def parse_gpus(spec: str | None, visible: list[str], strict: bool = True) -> list[str]:
    """``--gpus``: N (the first N GPUs), a list ``0,2,5`` (those ids, as CUDA_VISIBLE_DEVICES takes them) or all.

    With N larger than the number of visible GPUs, or an id of the list not visible, ``strict`` raises; otherwise
    ids 0..N-1 (the ids of the list) are assumed (for ``--dry_run`` on another machine).
    """
    if spec is None or spec == "all":
        if not visible:
            raise SweepError("no GPU visible (torch.cuda.device_count() = 0, no nvidia-smi): give --gpus N or a "
                             "list such as --gpus 0,1")
        return visible
    if "," not in spec:
        if not spec.isdigit() or int(spec) == 0:
            raise SweepError(f"--gpus {spec}: give a number of GPUs (>= 1), a list such as 0,2,5 (one GPU: '3,'), "
                             "or all")
        n = int(spec)
        if n <= len(visible):
            return visible[:n]
        if strict:
            raise SweepError(f"--gpus {n}: only {len(visible)} GPU(s) visible here ({','.join(visible) or 'none'})")
        print(f"note: only {len(visible)} GPU(s) visible here; assuming ids 0..{n - 1}", file=sys.stderr)
        return [str(i) for i in range(n)]
    ids = [g.strip() for g in spec.split(",") if g.strip()]
    if not ids or len(set(ids)) != len(ids):
        raise SweepError(f"--gpus {spec}: give distinct GPU ids such as 0,2,5")
    unseen = [g for g in ids if g not in visible]
    if unseen and strict:
        raise SweepError(f"--gpus {spec}: GPU {','.join(unseen)} not visible here (visible: "
                         f"{','.join(visible) or 'none'}); give visible ids (--dry_run: plan for another machine)")
    return ids


def wandb_executable() -> list[str]:
    """The ``wandb`` command of this Python environment."""
    beside = Path(sys.executable).with_name("wandb")
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("wandb")
    return [found] if found else [sys.executable, "-m", "wandb"]


@dataclass
class Agent:
    gpu: str
    cmd: list[str]
    log: Path
    proc: subprocess.Popen | None = None

    def shell(self) -> str:
        return f"CUDA_VISIBLE_DEVICES={self.gpu} {shlex.join(self.cmd)} > {shlex.quote(str(self.log))} 2>&1"


def plan_agents(sweep_id: str, gpus: list[str], count: int | None, log_dir: Path | None) -> list[Agent]:
    if not SWEEP_ID.fullmatch(sweep_id):
        raise SweepError(f"{sweep_id!r} is not a W&B sweep id (SWEEP_ID or ENTITY/PROJECT/SWEEP_ID, as printed by "
                         "`wandb sweep FILE`)")
    log_dir = log_dir or Path("results") / "agent-logs" / sweep_id.replace("/", "_")
    extra = ["--count", str(count)] if count is not None else []
    return [Agent(g, [*wandb_executable(), "agent", *extra, sweep_id], log_dir / f"gpu{g}.log") for g in gpus]


def run_agents(agents: list[Agent]) -> int:
    """Start every agent and wait for them. Each Ctrl-C (or SIGTERM) is passed on to all agents, which W&B
    handles in steps: finish the current runs, then terminate them, then kill them; a fourth kills the agents."""
    signals_seen: list[int] = []

    def handler(signum: int, frame) -> None:
        signals_seen.append(signum)
        alive = [a for a in agents if a.proc is not None and a.proc.poll() is None]
        if len(signals_seen) <= 3:
            step = ["agents finish their current runs, then stop", "agents terminate their runs",
                    "agents kill their runs"][len(signals_seen) - 1]
            print(f"{signal.Signals(signum).name}: {step} ({len(alive)} agent(s) running); again to go further",
                  file=sys.stderr, flush=True)
            for a in alive:
                os.kill(a.proc.pid, signum)
        else:
            for a in alive:
                a.proc.kill()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for a in agents:
            env = dict(os.environ, CUDA_VISIBLE_DEVICES=a.gpu, PYTHONUNBUFFERED="1")
            try:
                a.proc = spawn(a.cmd, a.log, env, f"# {time.strftime('%Y-%m-%d %H:%M:%S')} {a.shell()}",
                               parent_death_signal=signal.SIGTERM)
            except OSError as e:
                stop_all([b.proc for b in agents if b.proc is not None])
                raise SweepError(f"cannot start {a.cmd[0]!r}: {e}") from e
            print(f"agent on GPU {a.gpu}: pid {a.proc.pid}, log {a.log}", flush=True)
        codes: dict[str, int] = {}
        while len(codes) < len(agents):
            for a in agents:
                if a.gpu not in codes and a.proc.poll() is not None:
                    codes[a.gpu] = a.proc.returncode
                    print(f"agent on GPU {a.gpu} ended ({exit_description(a.proc.returncode)}): {tail(a.log, 1)}",
                          flush=True)
            time.sleep(0.5)
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    if signals_seen:
        return signal_exit(signals_seen[0])
    return 0 if all(c == 0 for c in codes.values()) else 1
