"""The best configuration of a sweep as a recipe file: ``python -m audiosweep.sweep best SOURCE > best.yaml``.

Runs are grouped by their settings (every Config key of role setting that varies across the finished runs: each
distinct configuration, its trials and folds pooled) and ranked by the mean of ``--metric``, never by one run's
maximum. ``--by KEYS`` ranks groups of those keys only, pooling the other settings (marginal means, as
``analysis.summarize --by``); the recipe then takes the winning group's values of KEYS and, for the other
settings, those of the best configuration within that group. A group with fewer runs than the most replicated
one is flagged (a warning, and a line in the header) and ``--min_runs N`` leaves such groups out of the ranking.

The recipe holds settings only (no replicate key: fold, trial_num; no environment key: folders, device, W&B):
every setting the runs varied, plus every other setting where the runs differ from train.py's defaults. It is
checked to give back the best runs' settings when train.py reads it (``--config``).
"""

from __future__ import annotations

import argparse
import math
from typing import Any

import pandas as pd
import yaml

from audiosweep.config import FIELDS, SETTING, Config, effective, keys_with_role, merge
from audiosweep.errors import ConfigError, SourceError

from . import cli
from .checks import MIN_CI_RUNS, run_warnings, varying_keys
from .paths import is_export
from .runs import finished, hashable, is_missing, same_value, select, warn
from .summarize import CI_METHODS, group_stats

SETTINGS = keys_with_role(SETTING)


class RecipeDumper(yaml.SafeDumper):
    """One key a line, lists inline ([[0, 2], [30, 4]]) as train.py's --help and the recipes show them."""


RecipeDumper.add_representer(list, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=True))


def plain(value: Any) -> Any:
    """A config value as YAML writes it: tuples (group keys) back to lists, numpy scalars to Python's."""
    if isinstance(value, tuple):
        return [plain(v) for v in value]
    if hasattr(value, "item"):
        value = value.item()
    return None if isinstance(value, float) and math.isnan(value) else value


def members(ok: pd.DataFrame, row: pd.Series, keys: list[str]) -> pd.DataFrame:
    """The runs of ``ok`` in the group of ``row`` (its values of ``keys``)."""
    for key in keys:
        ok = select(ok, key, row[key])
    return ok


def recipe(run: pd.Series, varied: list[str], unknown: list[str]) -> dict[str, Any]:
    """The settings of ``run`` worth writing: those in ``varied`` and those that differ from the defaults, less
    the ``unknown`` ones (that the source does not hold)."""
    defaults = {k: hashable(v) for k, v in effective(Config().to_dict()).items()}
    return {k: plain(run[k]) for k in SETTINGS
            if k not in unknown and (k in varied or not same_value(run[k], defaults[k]))}


def check_round_trip(settings: dict[str, Any], run: pd.Series, unknown: list[str]) -> None:
    """SourceError unless train.py, reading ``settings`` as its --config file, runs the settings of ``run`` (those
    the source holds)."""
    try:
        got = merge([settings]).effective_dict()
    except ConfigError as e:
        raise SourceError(f"the best runs' settings are no valid train.py config today: {e}") from e
    differ = [k for k in SETTINGS if k not in unknown and not same_value(hashable(got[k]), run[k])]
    if differ:
        raise SourceError("the recipe would not reproduce the best runs' settings: " + ", ".join(differ))


def interval_text(row: pd.Series, metric: str) -> str:
    low, high = row[f"{metric}_ci95_low"], row[f"{metric}_ci95_high"]
    if pd.isna(low):
        return f"no interval (fewer than {MIN_CI_RUNS} runs)"
    return f"95 % CI [{low * 100:.2f}, {high * 100:.2f}]"


def label(row: pd.Series, keys: list[str]) -> str:
    return ", ".join(f"{k}={plain(row[k])}" for k in keys) or "(one configuration)"


def best(df: pd.DataFrame, by: list[str], metric: str = "accuracy", ci: str = "t", seed: int = 0,
         min_runs: int = 1, source: str = "") -> tuple[dict[str, Any], list[str], list[str]]:
    """The recipe of the best group of ``df`` (``by``, or every varying setting), its header comment lines and
    the warnings to print."""
    ok = finished(df, metric)
    if ok.empty:
        raise SourceError(f"no finished run with {metric} in {source}: nothing to choose from")
    bad = [k for k in by if FIELDS[k].metadata["role"] != SETTING]
    if bad:
        raise SourceError(f"--by: {', '.join(bad)} {'is not a setting' if len(bad) == 1 else 'are not settings'} "
                          "(replicate and environment keys are pooled, never chosen); give setting keys")
    varied = varying_keys(ok)
    keys = by or varied
    stats = group_stats(ok, keys, metric, ci, seed)
    most = int(stats.n.max())
    ranked = stats[stats.n >= min_runs].reset_index(drop=True)
    if ranked.empty:
        raise SourceError(f"--min_runs {min_runs}: no group has that many finished runs (at most {most})")
    top = ranked.iloc[0]
    group = winners = members(ok, top, keys)
    inner_keys = varying_keys(winners) if by else []
    if inner_keys:  # the other settings: those of the best configuration within the winning group
        group = members(winners, group_stats(winners, inner_keys, metric).iloc[0], inner_keys)
    # a W&B export holds only some config keys: the others are unknown, not None, and left to train.py's defaults
    unknown = [k for k in SETTINGS if df[k].map(is_missing).all()] if is_export(source) else []
    settings = recipe(group.iloc[0], varied, unknown)
    check_round_trip(settings, group.iloc[0], unknown)
    n_runs, n_folds = int(top.n), winners.fold.nunique()
    lines = [f"best configuration of {source} ({len(ok)} finished runs, {len(stats)} groups of "
             f"{', '.join(keys) or 'no varying setting'}), by mean {metric}",
             f"{label(top, keys)}: {top[f'{metric}_mean'] * 100:.2f} % mean {metric}, "
             f"{interval_text(top, metric)} ({ci}), n = {n_runs} run{'s' * (n_runs != 1)}"
             + (f" over {n_folds} fold{'s' * (n_folds != 1)}" if n_folds else "")]
    messages = []
    if len(ranked) > 1:
        second = ranked.iloc[1]
        lines.append(f"runner-up {label(second, keys)}: {second[f'{metric}_mean'] * 100:.2f} % (n = "
                     f"{int(second.n)}), {(top[f'{metric}_mean'] - second[f'{metric}_mean']) * 100:.2f} points "
                     "behind")
    if n_runs < most:
        flag = (f"the best group has {n_runs} run(s), others up to {most}: a lucky run may have won; "
                f"--min_runs {most} ranks only groups of {most} runs")
        lines.append(f"warning: {flag}")
        messages.append(flag)
    if len(ranked) < len(stats):
        lines.append(f"{len(stats) - len(ranked)} group(s) of fewer than {min_runs} runs left out (--min_runs)")
    if by and varied != by:
        lines.append(f"ranked by {', '.join(by)} over every other setting (marginal means); the other settings: "
                     "the best configuration within that group")
    if unknown:
        lines.append(f"{len(unknown)} settings the source does not hold are left to train.py's defaults")
    lines += ["settings only (no fold, trial_num, folders or devices): every setting the runs varied, plus those "
              "that differ from train.py's defaults",
              "use: python train.py --config best.yaml --fold N --trial_num N",
              "  or a final study: python -m audiosweep.sweep run sweeps/final_folds.yaml --config best.yaml"]
    return settings, lines, messages + run_warnings(df, metric)


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("audiosweep.sweep best", __doc__)
    p.add_argument("--by", metavar="KEY[,KEY...]", help="rank groups of these setting keys only, pooling the other "
                   "settings (default: every setting that varies: each distinct configuration)")
    p.add_argument("--ci", choices=CI_METHODS, default="t", help="the 95 %% interval of the best mean: t (default) "
                   "or bootstrap")
    p.add_argument("--seed", type=int, default=0, help="seed of --ci bootstrap (default 0)")
    p.add_argument("--min_runs", type=int, default=1, metavar="N",
                   help="rank only groups of at least N finished runs (default 1: every group, the best flagged "
                        "when it has fewer runs than others)")
    return p


def command(args: argparse.Namespace, df: pd.DataFrame, by: list[str]) -> int:
    """Print the recipe on stdout, warnings on stderr."""
    settings, lines, messages = best(df, by, args.metric, args.ci, args.seed, args.min_runs, args.source)
    for m in messages:
        warn(m)
    print("\n".join(f"# {line}" for line in lines))
    print(yaml.dump(settings, Dumper=RecipeDumper, sort_keys=False, width=1000).rstrip("\n"))
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.run(build_parser(), command, argv, history=False)
