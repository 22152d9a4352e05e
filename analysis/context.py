"""What a report says about its runs before any table: how many finished or failed, when they ran, which settings
were held fixed and which varied, and where they ran (devices, package versions, git commits)."""

from __future__ import annotations

import datetime as dt
import re

import pandas as pd

from audiosweep.config import FIELDS, SETTING, keys_with_role

from .checks import varying_keys
from .labels import format_value, md_escape
from .runs import finished, hashable

RUN_ID_TIME = re.compile(r"^(\d{8}-\d{6})-")  # train.py's run ids start with their local start time


def run_counts(df: pd.DataFrame, metric: str = "accuracy") -> str:
    """"12 runs: 10 finished, 2 failed (diverged: 1, out of memory: 1)" from the runs' statuses."""
    ok = finished(df, metric)
    states = df.status.value_counts()
    others = ", ".join(f"{n} {md_escape(s)}" for s, n in states.items() if s != "finished")
    unusable = int(states.get("finished", 0)) - len(ok)
    return (f"{len(df)} runs: {len(ok)} finished with {metric}" + (f", {others}" if others else "")
            + (f", {unusable} finished without {metric}" if unusable else ""))


def run_dates(df: pd.DataFrame) -> str | None:
    """The first and last start time of the runs, from train.py's run ids (local time of the machine)."""
    times = sorted(dt.datetime.strptime(m.group(1), "%Y%m%d-%H%M%S") for r in df.run_id
                   if isinstance(r, str) and (m := RUN_ID_TIME.match(r)))
    if not times:
        return None
    first, last = (t.strftime("%Y-%m-%d %H:%M") for t in (times[0], times[-1]))
    return first if first == last else f"{first} to {last}"


def fixed_settings(df: pd.DataFrame, metric: str = "accuracy") -> pd.DataFrame:
    """The settings (Config keys whose role is setting) that every finished run shares: key, label, value."""
    ok = finished(df, metric)
    varying = set(varying_keys(ok))
    rows = [{"key": k, "label": FIELDS[k].metadata["label"] or "", "value": format_value(k, ok[k].iloc[0])}
            for k in keys_with_role(SETTING) if k not in varying and not ok.empty]
    return pd.DataFrame(rows, columns=["key", "label", "value"])


def varying_settings(df: pd.DataFrame, metric: str = "accuracy") -> dict[str, list[str]]:
    """The keys that vary across finished runs, with their values as shown in tables."""
    ok = finished(df, metric)
    return {k: [format_value(k, v) for v in dict.fromkeys(map(hashable, ok[k]))] for k in varying_keys(ok)}


def environment(df: pd.DataFrame) -> dict[str, list[str]]:
    """Devices, GPUs, package versions and git commits seen across the runs (with how many runs each)."""
    seen: dict[str, dict[str, int]] = {}

    def count(what: str, value) -> None:
        if value not in (None, ""):
            seen.setdefault(what, {}).setdefault(str(value), 0)
            seen[what][str(value)] += 1

    for env in df.env:
        env = env if isinstance(env, dict) else {}
        for what in ("device", "gpu", "python", "git_commit", "hostname"):
            count(what, env.get(what))
        for package, version in (env.get("packages") or {}).items():
            count(package, version)
    return {what: [f"{v} ({n} runs)" if len(values) > 1 else v for v, n in values.items()]
            for what, values in seen.items()}


def context_markdown(df: pd.DataFrame, metric: str = "accuracy", now: dt.datetime | None = None) -> str:
    """The report's opening facts as Markdown: counts, dates, varying keys, environment, fixed settings."""
    now = now or dt.datetime.now(dt.UTC)
    when = run_dates(df)
    lines = [f"- **Runs**: {run_counts(df, metric)}.",
             f"- **Started**: {when}." if when else "- **Started**: unknown (run ids without a start time).",
             f"- **Report written**: {now.strftime('%Y-%m-%d %H:%M %Z')}."]
    varying = varying_settings(df, metric)
    lines.append("- **Varying**: " + ("; ".join(f"`{k}` ({md_escape(', '.join(v))})" for k, v in varying.items())
                                      if varying else "nothing (all finished runs share their settings)") + ".")
    env = environment(df)
    if env:
        lines.append("- **Environment**: " + "; ".join(md_escape(f"{what} {', '.join(values)}")
                                                       for what, values in env.items()) + ".")
    else:
        lines.append("- **Environment**: not recorded (W&B runs logged before the env summary key, or no records).")
    fixed = fixed_settings(df, metric)
    rows = "\n".join(f"| `{r.key}` | {md_escape(r.label)} | {md_escape(r.value)} |" for r in fixed.itertuples())
    lines += ["", f"<details><summary>Settings held fixed ({len(fixed)})</summary>", "",
              "| key | meaning | value |", "| --- | --- | --- |", rows, "", "</details>", ""]
    return "\n".join(lines)
