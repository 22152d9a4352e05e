"""Errors caused by the user's input or environment: reported as one clear message, without a traceback."""


class UserError(RuntimeError):
    """Something the user can fix (data, download, weights); the message says what and how."""


class SweepError(ValueError):
    """An invalid sweep file or request; the message names the file and every problem."""
