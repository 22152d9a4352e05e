"""The toolkit's errors and exit statuses: everything a user can fix is an :class:`AudiosweepError`, reported as one
clear message without a traceback; a traceback means a bug in our code.

Every command exits with the same convention:

    0     everything asked for was done
    1     a run, a sweep's run or an analysis failed (its record or message says why)
    2     the input was refused before any work (config, sweep file, results source, model file, clips)
    128+N stopped by signal N (130 for Ctrl-C)
"""

from __future__ import annotations

import sys

EXIT_OK, EXIT_FAILED, EXIT_REFUSED = 0, 1, 2
SIGNAL_EXIT_BASE = 128


def signal_exit(signum: int) -> int:
    """The exit status of a command stopped by signal ``signum``, as shells report it."""
    return SIGNAL_EXIT_BASE + int(signum)


class AudiosweepError(Exception):
    """Something the user can fix; the message says what is wrong and how to fix it."""

    reason = "error"  # recorded with a failed run


# The builtin second bases keep ``except ValueError`` / ``except RuntimeError`` of callers working.
class ConfigError(AudiosweepError, ValueError):
    """Invalid configuration; the message names every offending key."""


class SweepError(AudiosweepError, ValueError):
    """An invalid sweep file or request; the message names the file and every problem."""


class SourceError(AudiosweepError):
    """Results that analysis cannot read (no such folder, a W&B project it cannot reach, bad filters)."""


class RecordError(AudiosweepError, ValueError):
    """A file that is not a readable result record; the message names it."""


class UserError(AudiosweepError, RuntimeError):
    """A run cannot go on for a reason outside our code (data, download, weights, the device)."""


class DatasetError(UserError):
    """The dataset is missing, incomplete or invalid; the message names the culprits."""


class Diverged(UserError):
    """The losses of a run stopped being finite numbers."""

    reason = "diverged"


class OutOfMemory(UserError):
    """A run ran out of memory (GPU or CPU); the message names the batch size and arch and what to change."""

    reason = "out of memory"


class Terminated(BaseException):
    """The run was asked to stop (SIGTERM, as schedulers and W&B agents send); a BaseException, like
    KeyboardInterrupt, so that no ``except Exception`` on the way swallows it."""

    reason = "terminated"


class HungUp(Terminated):
    """The run's terminal or ssh session closed (SIGHUP): stopped like SIGTERM, recorded as ``hangup``."""

    reason = "hangup"


def error_text(error: BaseException) -> str:
    """An error as a user reads it (and a failed run's record stores it): the message alone for ours, which says
    what is wrong and how to fix it; ``Type: message`` for any other (a bug, or a library's error), where the type
    helps."""
    return str(error) if isinstance(error, AudiosweepError) else f"{type(error).__name__}: {error}"


def refuse(prog: str, error: AudiosweepError) -> int:
    """Print ``error`` as ``prog: message`` on stderr; the exit status of refused input."""
    print(f"{prog}: {error}", file=sys.stderr, flush=True)
    return EXIT_REFUSED
