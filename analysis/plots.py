"""The report's figures as PNG and SVG files: per parameter, accuracy and validation loss per value and the
accuracy-per-epoch curves; per-fold bars when folds vary; the best run's confusion matrix (:mod:`analysis.plan`
says which, :mod:`analysis.figures` draws them).

    python -m analysis.plots results/smoke --by n_mels --out figures/
    python -m analysis.plots results/final --by arch --out figures/ --run 20260101-120000-abc123
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from . import cli, plan
from .checks import check
from .figures import save
from .runs import warn


def write_figures(df: pd.DataFrame, by: list[str], out: Path, run_id: str | None = None, metric: str = "accuracy",
                  folds: bool | None = None) -> list[Path]:
    """Save every figure of the plan for ``by`` (:func:`analysis.plan.sections`) into ``out``, warning when the
    confusion matrix cannot be drawn. Returns the files written."""
    paths = []
    for section in plan.sections(df, by, metric, run_id, folds):
        if section.skipped:
            warn(section.skipped)
        for figure in section.figures:
            paths += save(figure.draw(), out, figure.name)
    return paths


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("analysis.plots", __doc__)
    p.add_argument("--by", metavar="KEY[,KEY...]", help="one accuracy figure and one curves figure per key")
    p.add_argument("--out", metavar="DIR", default="figures", help="output folder (default: figures)")
    p.add_argument("--run", metavar="RUN_ID", help="confusion matrix of this run (default: the best run)")
    p.add_argument("--folds", action="store_true", help="per-fold bars even when every run used one fold")
    return p


def command(args: argparse.Namespace, df: pd.DataFrame, by: list[str]) -> int:
    """Warn about the groups, write the figures and print their paths."""
    for m in check(df, by, args.metric):
        warn(m)
    for path in write_figures(df, by, Path(args.out), args.run, args.metric, args.folds or None):
        print(path)
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.run(build_parser(), command, argv)


if __name__ == "__main__":
    sys.exit(main())
