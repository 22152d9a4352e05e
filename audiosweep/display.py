"""How parameter values are shown to people (the runner's lines, tables, figure labels): floats to
:data:`SIGNIFICANT` digits, so that a value a bayes sweep drew (0.004130399570052626) reads 0.00413. Records,
configs and W&B keep full precision; only what is printed goes through here."""

from __future__ import annotations

import math

SIGNIFICANT = 4


def short_number(value) -> str:
    """``value`` as text: a float to :data:`SIGNIFICANT` significant digits, but its whole part in full (44100,
    not 4.41e+04); anything else (ints, bools, strings, None) as ``str`` gives it."""
    if not isinstance(value, float) or not math.isfinite(value) or value == 0:
        return str(value) if not isinstance(value, float) else f"{value:g}"
    whole_digits = math.floor(math.log10(abs(value))) + 1
    return f"{value:.{max(SIGNIFICANT, min(whole_digits, 17))}g}"
