"""Claims on a sweep's configurations, so that runners sharing a study never run one configuration twice.

A runner claims a configuration before it launches its run: it creates ``<results>/<sweep>/.claims/<config id>``
with ``os.link``, which fails when the file exists, on local disks and NFS alike (the file's content is written
before it appears, so a reader never sees half a claim). The claim holds the runner's host, pid, process start
time and when it claimed; the runner removes it when the run has ended and its record is read. A claim of a runner
of this machine that is gone (no such pid, or the pid now belongs to a later process) is stale and is taken over.
A claim of another machine cannot be checked from here: it holds until that runner removes it, and the runner
says which file to delete if that runner is known to be gone.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
from pathlib import Path
from typing import Any

from ..errors import SweepError
from ..locks import exclusive

CLAIMS_DIR = ".claims"  # hidden: record readers skip it
HOST = socket.gethostname()


def process_start(pid: int) -> str | None:
    """When process ``pid`` started (Linux: its start time in clock ticks since boot), None where unknown; with
    the pid it tells a process from a later one given the same pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[19]  # field 22; the command name in parentheses may hold spaces


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


class Claims:
    """This runner's claims in a sweep's results folder."""

    def __init__(self, folder: Path):
        self.dir = folder / CLAIMS_DIR
        self.me = {"host": HOST, "pid": os.getpid(), "start": process_start(os.getpid())}
        self.mine: dict[str, str] = {}  # config id -> token of its claim file
        self.foreign_noted: set[str] = set()

    def path(self, cid: str) -> Path:
        return self.dir / cid

    def take(self, cid: str) -> bool:
        """Claim configuration ``cid``: True if this runner holds it now, False if another live runner does."""
        if cid in self.mine:
            return False  # this runner runs it already
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.dir.is_symlink():
            raise SweepError(f"{self.dir} is a symbolic link: remove it, the runner keeps its claims there")
        token = secrets.token_hex(8)
        tmp = self.dir / f".{cid}.{token}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
        with os.fdopen(fd, "w") as f:
            json.dump({**self.me, "claimed": time.time(), "token": token}, f)
        try:
            with self.lock():
                for _ in range(2):
                    try:
                        os.link(tmp, self.path(cid))
                    except FileExistsError:
                        if not self.take_over(cid):
                            return False
                        continue
                    self.mine[cid] = token
                    return True
                return False
        finally:
            tmp.unlink()

    def take_over(self, cid: str) -> bool:
        """Remove ``cid``'s claim if a runner of this machine that is gone left it; False if it holds."""
        holder = self.holder(cid)
        if holder is None:
            return True  # released meanwhile
        if holder.get("host") != HOST:
            if cid not in self.foreign_noted:
                self.foreign_noted.add(cid)
                print(f"  note: configuration {cid} is claimed by runner pid {holder.get('pid')} on "
                      f"{holder.get('host')} since {time.ctime(holder.get('claimed', 0))}; if that runner is gone, "
                      f"delete {self.path(cid)} so that it can run again", flush=True)
            return False
        pid = holder.get("pid")
        if isinstance(pid, int) and alive(pid) and process_start(pid) in (None, holder.get("start")):
            return False
        self.path(cid).unlink(missing_ok=True)
        print(f"  note: configuration {cid} was claimed by runner pid {pid}, which ended; taken over", flush=True)
        return True

    def holder(self, cid: str) -> dict[str, Any] | None:
        """Who claims ``cid`` (a claim that cannot be read counts as this machine's dead runner's), None if none."""
        try:
            data = json.loads(self.path(cid).read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {"host": HOST, "pid": None}
        return data if isinstance(data, dict) else {"host": HOST, "pid": None}

    def claimed(self) -> set[str]:
        """The configurations claimed now, by any runner."""
        try:
            return {p.name for p in self.dir.iterdir() if not p.name.startswith(".")}
        except FileNotFoundError:
            return set()

    def release(self, cid: str) -> None:
        """Drop this runner's claim on ``cid`` (its run ended and its record was read)."""
        token = self.mine.pop(cid, None)
        holder = self.holder(cid) if token else None
        if holder is not None and holder.get("token") == token:
            self.path(cid).unlink(missing_ok=True)

    def lock(self):
        """Take-overs one at a time on this machine (two runners must not both remove one stale claim and then
        one of them a fresh one); other machines never take this machine's claims over."""
        return exclusive(self.dir / ".lock")
