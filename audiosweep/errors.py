"""Errors caused by the user's input or environment: reported as one clear message, without a traceback."""


class UserError(RuntimeError):
    """Something the user can fix (data, download, weights); the message says what and how."""

    reason = "error"  # recorded with a failed run


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


class SweepError(ValueError):
    """An invalid sweep file or request; the message names the file and every problem."""


class DatasetError(UserError):
    """The dataset is missing, incomplete or invalid; the message names the culprits."""
