"""Exclusive file locks between processes of this machine (``fcntl.flock``): one sweep runner per sweep, one take-over
of claims at a time, one download of a dataset into a folder."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from .results import open_append

try:
    import fcntl
except ImportError:  # Windows: no locks, as before they existed
    fcntl = None


@contextmanager
def exclusive(path: Path, busy: Callable[[IO], None] | None = None) -> Iterator[IO]:
    """Hold an exclusive lock on ``path`` (created, never through a link) and yield it open for reading and
    appending. When another process holds it, ``busy(file)`` is called first: it may raise to give up, or say that
    this one waits; then it waits. The lock goes with the file's closing, also when the process dies."""
    with open_append(path, "a+") as f:
        if fcntl is not None:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if busy is not None:
                    busy(f)
                fcntl.flock(f, fcntl.LOCK_EX)
        yield f
