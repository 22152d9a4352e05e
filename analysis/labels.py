"""How parameters are shown in tables and figures: values with the unit of their Config field (``unit``
metadata), axis labels from the field's ``label``."""

from __future__ import annotations

import math
import re
import typing

import pandas as pd

from audiosweep.config import FIELDS, TYPES
from audiosweep.display import short_number

from .runs import select

# Durations given in one unit are also shown in the other, converted with the run's sample rate.
OTHER_UNIT = {"samples": "ms", "ms": "samples"}


# What a foreign value (a config or env string, a class name, a run id) could use to write Markdown or HTML of its
# own into a page: HTML tags and entities, table cell separators, links and images, headings, code spans; and a
# backslash, so that a value cannot escape what follows it.
_MARKDOWN_SPECIAL = {"\\": "\\\\", "|": "\\|", "[": "\\[", "]": "\\]", "`": "\\`", "#": "\\#",
                     "&": "&amp;", "<": "&lt;", ">": "&gt;"}
_LINE_BREAKS = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")


def md_escape(value) -> str:
    """``value`` as text that Markdown shows as it is, on one line and inside one table cell: every value a page
    shows that it did not write itself goes through here."""
    text = _LINE_BREAKS.sub(" ", str(value))
    return "".join(_MARKDOWN_SPECIAL.get(c, c) for c in text)


def _unit(key: str) -> str | None:
    return FIELDS[key].metadata["unit"] if key in FIELDS else None


def _is_list(key: str) -> bool:
    return key in TYPES and list in (typing.get_origin(t) for t in (TYPES[key], *typing.get_args(TYPES[key])))


def format_value(key: str, value, sample_rate: float | None = None) -> str:
    """A parameter value with its unit: samples with ms (or ms with samples) given the sample rate, Hz or kHz for
    frequencies; floats to 4 significant digits; the items of a list bare, joined by "/"; a list of pairs as
    ``epoch:blocks`` items."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "none"
    if isinstance(value, tuple) and value and isinstance(value[0], tuple):  # pairs: unfreeze_schedule
        return " ".join(":".join(format_value(key, v) for v in pair) for pair in value)
    if isinstance(value, tuple):
        return "/".join(format_value(key, v) for v in value)  # short: the axis label gives the unit
    unit = _unit(key)
    if unit == "samples" and sample_rate:
        return f"{short_number(value)} ({1000 * value / sample_rate:.1f} ms)"
    if unit == "ms":
        return f"{short_number(value)} ms" + (f" ({round(value * sample_rate / 1000)})" if sample_rate else "")
    if unit == "Hz":
        return f"{short_number(value / 1000)} kHz" if value >= 1000 else f"{short_number(value)} Hz"
    return short_number(value)


def axis_label(key: str) -> str:
    """``key: label (units)`` from the key's Config field; the units are those :func:`format_value` shows."""
    meta = FIELDS[key].metadata if key in FIELDS else {}
    unit = _unit(key)
    if unit in OTHER_UNIT and not _is_list(key):
        unit = f"{unit}, {OTHER_UNIT[unit]}"
    elif unit == "Hz":
        unit = None  # each value says Hz or kHz
    text = ": ".join(t for t in (key, meta.get("label")) if t)
    return f"{text} ({unit})" if unit else text


def group_sample_rate(df: pd.DataFrame, key: str, value) -> float | None:
    """The sample rate of the runs whose ``key`` is ``value`` (their most common one; None where no run records
    one, as in a W&B export without the column)."""
    if key == "sample_rate":
        return value
    rates = select(df, key, value).sample_rate.dropna()
    return float(rates.mode().iloc[0]) if len(rates) else None
