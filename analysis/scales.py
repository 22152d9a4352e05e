"""Which axis scale a numeric key gets in the figures: the distribution its sweep declared, where the sweep file is
known (the runner keeps a copy, ``sweep.yaml``, beside the sweep's records), else the data's range.

    declared log_uniform_values, q_log_uniform_values, inv_log_uniform_values, (q_)log_normal   -> log
    declared uniform, q_uniform, int_uniform, (q_)normal, (q_)beta                             -> linear
    values, or no sweep file (W&B sources, folders of older runners), or sweeps that disagree   -> the data's rule:
        log when every value is above 0 and the largest is more than LOG_SPAN times the smallest
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

from audiosweep.sweep.params import DISCRETE, parse_param
from audiosweep.sweep.spec import SWEEP_COPY

# A numeric key with no declared distribution whose largest value is more than this times its smallest (all > 0)
# gets a log axis.
LOG_SPAN = 10
LOG_DISTRIBUTIONS = frozenset({"log_uniform_values", "q_log_uniform_values", "inv_log_uniform_values", "log_normal",
                               "q_log_normal"})


def sweep_files(df: pd.DataFrame) -> list[Path]:
    """The sweep copies beside the runs' records (none for W&B runs and exports)."""
    folders = {Path(p).parent for p in df.record_path if isinstance(p, str)}
    return sorted(f / SWEEP_COPY for f in folders if (f / SWEEP_COPY).is_file())


def _distributions(path: Path) -> dict[str, str]:
    """Each parameter's distribution in one sweep file (W&B's inference for a bare min/max); {} when unreadable."""
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    spec = raw.get("parameters") if isinstance(raw, dict) else None
    found = {}
    for name, value in (spec if isinstance(spec, dict) else {}).items():
        param = parse_param(str(name), value)[0]
        if param is not None and param.distribution not in DISCRETE:
            found[str(name)] = param.distribution
    return found


def declared(df: pd.DataFrame) -> dict[str, str]:
    """Key -> distribution declared by every sweep file of ``df``'s runs that names the key, where they agree."""
    seen: dict[str, set[str]] = {}
    for path in sweep_files(df):
        for key, dist in _distributions(path).items():
            seen.setdefault(key, set()).add(dist)
    return {k: d.pop() for k, d in seen.items() if len(d) == 1}


def is_log(key: str, values, declared_dists: dict[str, str]) -> bool:
    """Whether numeric ``values`` of ``key`` go on a log axis (the module's rules)."""
    if key in declared_dists:
        return declared_dists[key] in LOG_DISTRIBUTIONS
    x = pd.Series(values, dtype=float)
    return bool(x.min() > 0 and x.max() / x.min() > LOG_SPAN)


def scale_note(key: str, declared_dists: dict[str, str]) -> str:
    """Why the axis has its scale, for the figure: the declared distribution, or "by range"."""
    return declared_dists.get(key, "by range")
