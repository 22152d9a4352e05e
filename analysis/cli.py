"""What the analysis commands share: their parser with the source arguments, ``--by``, loading the runs, and
turning a :class:`~audiosweep.errors.SourceError` into one line on stderr and exit status 2 (refused input)."""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable
from typing import Any

import pandas as pd

from audiosweep.cli_flags import ArgumentParser
from audiosweep.config import ALIASES, FIELDS, coerce, resolve_aliases, unknown_key_message
from audiosweep.errors import AudiosweepError, SourceError, refuse
from audiosweep.results import METRIC_GOALS, TEST_METRIC

from .runs import load_runs

# The metrics --metric offers: those where higher is better (accuracies), the run's final value first, then the
# held-out test accuracy (analysed, never a sweep's metric: nothing selects on the test clips).
ACCURACY_METRICS = [*(m for m, goal in METRIC_GOALS.items() if goal == "maximize"), TEST_METRIC]


def parser(module: str, description: str | None) -> argparse.ArgumentParser:
    """A parser for ``python -m module`` with the source arguments; the command adds its own, ``--by`` among
    them."""
    p = ArgumentParser(prog=f"python -m {module}", description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_source_args(p)
    return p


def add_source_args(p: argparse.ArgumentParser) -> None:
    """The source and how to select its runs."""
    p.add_argument("source", metavar="SOURCE", help="folder of result records (searched recursively), a W&B "
                   "runs-table export (FILE.csv), or wandb:ENTITY/PROJECT")
    p.add_argument("--sweep", metavar="NAME", help="only this sweep: a folder name under SOURCE (see the "
                   "warning listing them), or a W&B sweep id (an export's Sweep column)")
    p.add_argument("--where", metavar="KEY=VALUE[,KEY=VALUE]", help="only runs whose config has these values, "
                   "e.g. n_epochs=80,arch=resnet18")
    p.add_argument("--tags", metavar="T1,T2", help="W&B only: runs with any of these tags")
    p.add_argument("--filters", metavar="JSON", help='W&B only: MongoDB-style run filters, e.g. '
                   '\'{"config.arch": "resnet18", "state": "finished"}\'')
    p.add_argument("--skip_bad", action="store_true", help="warn about malformed record files and go on without "
                   "them (default: stop, naming the file)")
    p.add_argument("--metric", choices=ACCURACY_METRICS, default=ACCURACY_METRICS[0],
                   help="final (default) or best-epoch validation accuracy, or the held-out test accuracy (runs "
                   "with test_fold or test_pct)")


def parse_keys(text: str | None) -> list[str]:
    """``--by a,b``: known Config keys only, with a suggestion for a typo."""
    keys = [k.strip() for k in (text or "").split(",") if k.strip()]
    bad = [unknown_key_message(k) for k in keys if k not in FIELDS]
    if bad:
        raise SourceError("--by: " + "; ".join(bad))
    return keys


def parse_where(text: str | None) -> dict[str, Any]:
    """``--where a=1,b=x``: Config keys (or the report's aliases, turned into ours) with values of their types.
    A comma starts a new condition only before ``KEY=``, so list values keep theirs."""
    if not (text or "").strip():
        return {}
    layer, errors = {}, []
    for part in re.split(r",(?=\s*\w+\s*=)", text):
        key, eq, value = (s.strip() for s in part.partition("="))
        if not eq or not key:
            errors.append(f"expected KEY=VALUE, got {part.strip()!r}")
        elif key not in FIELDS and key not in ALIASES:
            errors.append(unknown_key_message(key))
        else:
            layer[key] = value
    where = {} if errors else {k: coerce(k, v, errors) for k, v in resolve_aliases(layer, errors).items()}
    if errors:
        raise SourceError("--where: " + "; ".join(errors))
    return where


def load_from_args(args: argparse.Namespace, history: bool) -> pd.DataFrame:
    """The runs the source arguments select (``history``: with per-epoch values, slower from W&B)."""
    try:
        filters = json.loads(args.filters) if args.filters else None
    except json.JSONDecodeError as e:
        raise SourceError(f"--filters: not valid JSON ({e})") from e
    tags = [t for t in (args.tags or "").split(",") if t]
    return load_runs(args.source, args.sweep, tags, filters, args.skip_bad, history, parse_where(args.where))


Body = Callable[[argparse.Namespace, pd.DataFrame, list[str]], int]


def run(p: argparse.ArgumentParser, body: Body, argv: list[str] | None, history: bool = True) -> int:
    """A command's ``main``: parse ``argv``, load the runs, return ``body(args, runs, by)``; bad input (a
    SourceError, or any other AudiosweepError: an unreadable predictions file) is printed as ``<module>: <message>``
    on stderr, and the exit status is 2."""
    args = p.parse_args(argv)
    try:
        by = parse_keys(args.by)
        return body(args, load_from_args(args, history), by)
    except AudiosweepError as e:
        return refuse(p.prog.removeprefix("python -m "), e)
