"""W&B sweep files: checked against W&B's sweep-config rules and train.py's config, expanded into runs.

A run's identity is ``results.config_id`` of the configuration train.py will build from the run's command line,
so the runner recognises a run by the record train.py writes, whatever the key order or the form of a value.
"""

from __future__ import annotations

import argparse
import difflib
import functools
import itertools
import json
import math
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from .. import results
from ..config import (
    ALIASES,
    CONFIG_FILE_KEY,
    FIELDS,
    ConfigError,
    build_parser,
    load_yaml,
    merge,
    parse_known,
    unknown_key_message,
)
from ..display import short_number
from ..errors import SweepError
from ..results import METRIC_GOALS, TEST_METRIC, config_id
from .params import DISCRETE, GRID_DISTRIBUTIONS, Param, is_number, parse_param, value_key

REPO_ROOT = Path(__file__).resolve().parents[2]
TOP_LEVEL_KEYS = ("program", "method", "parameters", "metric", "name", "description", "entity", "project",
                  "run_cap", "command", "early_terminate")
METHODS = ("grid", "random", "bayes")
LOCAL_METHODS = ("grid", "random")
METRIC_KEYS = ("name", "goal", "target", "impute", "impute_while_running")
IMPUTE = {"impute": ("latest", "best", "worst"), "impute_while_running": ("latest", "best", "worst", "false")}
HYPERBAND_KEYS = ("type", "min_iter", "max_iter", "s", "eta", "strict")
DEFAULT_COMMAND = ["${env}", "${interpreter}", "${program}", "${args}"]
ARG_MACROS = ("args", "args_no_equals", "args_no_hyphens", "args_no_boolean_flags", "args_json",
              "args_json_file", "args_append_hydra", "args_override_hydra")
ENVVAR = re.compile(r"\$\{envvar:([A-Za-z0-9_]*)\}")
CHECK_SAMPLES = 200  # random configurations validated for sweeps without a run bound
MAX_RANDOM_FAILURES = 20  # invalid random samples after which a sweep is reported invalid
# Bounds on what a sweep file can ask for. Our largest sweep file is 4 KB and none uses a YAML alias; our largest grid
# has 240 points, and each point takes 20-30 ms to validate, so the largest grid allowed is checked in under 30 s.
MAX_SWEEP_BYTES = 1 << 20
MAX_YAML_NODES = 100_000  # scalars, lists and mappings after expanding aliases (an alias bomb grows exponentially)
MAX_GRID_POINTS = 1000


@dataclass(frozen=True)
class Run:
    """One configuration of a sweep: the parameters as an agent passes them, its identity and (from ``expand``)
    the effective configuration train.py runs."""

    params: dict[str, Any]
    config_id: str
    config: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


# The sweep file as the runner read it, kept in the sweep's results folder: analysis reads the parameters' declared
# distributions there (a log_uniform key on a log axis).
SWEEP_COPY = "sweep.yaml"


@dataclass
class Sweep:
    path: Path
    raw: dict[str, Any]
    params: dict[str, Param]
    program: Path
    recipe: Path | None = None  # ``--config RECIPE.yaml``: laid under every run (absolute: runs read it anywhere)

    @property
    def name(self) -> str:
        return str(self.raw.get("name") or self.path.stem)

    @property
    def method(self) -> str:
        return self.raw["method"]

    @property
    def run_cap(self) -> int | None:
        return self.raw.get("run_cap")

    @property
    def varying(self) -> list[str]:
        """Names of the parameters that take more than one value, sorted as W&B sorts them."""
        return sorted(n for n, p in self.params.items() if not p.constant)

    @property
    def source(self) -> str:
        """The sweep file, and the recipe laid under its runs: what the runner's first line names."""
        return str(self.path) + (f" over recipe {self.recipe}" if self.recipe else "")

    def save_copy(self, folder: Path) -> Path:
        """Write the sweep's keys to ``folder/SWEEP_COPY`` (replaced atomically: runners may share the folder)."""
        text = yaml.safe_dump(self.raw, sort_keys=False).encode()
        return results.write_atomic(folder / SWEEP_COPY, lambda f: f.write(text))

    def describe(self, run: Run) -> str:
        """A run as its varying values (``n_mels=40 trial_num=2``, floats short), or its configuration id when none
        varies."""
        return " ".join(f"{k}={short_number(run.params[k])}" for k in self.varying) or run.config_id


@dataclass
class Plan:
    """The runs a sweep expands to (in order), and notes worth telling the user."""

    runs: list[Run]
    bounded: bool = True
    notes: list[str] = field(default_factory=list)


def load_recipe(path: str | os.PathLike) -> Path:
    """A ``--config`` recipe for every run of a sweep, as train.py reads it (config keys and the report's), as an
    absolute path; SweepError if it is not such a file."""
    try:
        keys = load_yaml(path)
    except ConfigError as e:
        raise SweepError(str(e)) from e
    unknown = [unknown_key_message(str(k)) for k in keys if k not in FIELDS and k not in ALIASES]
    if unknown:
        raise SweepError(f"--config {path}: " + "; ".join(unknown))
    return Path(path).resolve()


def load_sweep(path: str | os.PathLike, recipe: Path | None = None) -> Sweep:
    """Read and check a sweep file's structure and every parameter; raise SweepError listing all problems.
    ``recipe`` (from :func:`load_recipe`) is laid under every run."""
    path = Path(path)
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise SweepError(f"{path}: expected a mapping of W&B sweep keys, got {type(raw).__name__}")
    errors = _check_top_level(raw) + _check_metric(raw) + _check_command(raw.get("command"), recipe)
    program = _find_program(path, raw.get("program"), errors)
    params: dict[str, Param] = {}
    spec = raw.get("parameters")
    if spec is None:
        errors.append("parameters: required, e.g. {n_mels: {values: [128, 224]}, trial_num: {values: [1, 2, 3]}}")
        spec = {}
    elif not isinstance(spec, dict) or not spec:
        errors.append(f"parameters: expected a non-empty mapping of config keys, got {spec!r}")
        spec = {}
    for name, value in spec.items():
        if name not in FIELDS and name not in ALIASES and name != CONFIG_FILE_KEY:
            errors.append(f"parameters.{name}: {unknown_key_message(str(name))}")
            continue
        param, errs = parse_param(name, value)
        errors += errs
        if param is not None:
            params[name] = param
    if raw.get("method") == "bayes" and params and len(params) == len(spec) and all(
            p.distribution == "constant" for p in params.values()):
        # W&B's bayes search stops with "Need at least one searchable parameter": only value: is constant to it
        errors.append("parameters: bayes search needs at least one parameter to search (values or a distribution), "
                      "all are value: constants")
    if raw.get("method") == "bayes":
        # not a schema rule: W&B's bayes controller fails on its first run with an IndexError (sweeps 0.3.0)
        errors += [f"parameters.{p.name}: W&B's bayes search fails on values with probabilities: drop "
                   "probabilities, or use method: random" for p in params.values()
                   if p.distribution == "categorical_w_probabilities"]
    if raw.get("method") == "grid":
        errors += [f"parameters.{p.name}: grid search needs value, values, int_uniform or q_uniform, not "
                   f"{p.distribution}" for p in params.values() if p.distribution not in GRID_DISTRIBUTIONS]
    if errors:
        raise SweepError(f"{path}: " + "\n  ".join([f"{len(errors)} problem(s):", *errors]))
    return Sweep(path, raw, params, program, recipe)


def read_yaml(path: Path) -> Any:
    """The YAML document in ``path``, read within bounds: at most MAX_SWEEP_BYTES of UTF-8, at most MAX_YAML_NODES
    nodes once its aliases are expanded (checked on the composed node graph, before anything is built from it)."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_SWEEP_BYTES + 1)
    except OSError as e:
        raise SweepError(f"{path}: cannot read ({e.strerror})") from e
    if len(data) > MAX_SWEEP_BYTES:
        raise SweepError(f"{path}: larger than the limit of {MAX_SWEEP_BYTES >> 20} MiB for a sweep file; a sweep "
                         "file holds a few parameters (ours are under 4 KB)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise SweepError(f"{path}: not UTF-8 text (byte {data[e.start]:#04x} on line {line}): save the file as "
                         "UTF-8") from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        nodes = _expanded_nodes(path, node, {}, set())
        if nodes > MAX_YAML_NODES:
            raise SweepError(f"{path}: its YAML aliases expand to {nodes} nodes, over the limit of {MAX_YAML_NODES}: "
                             "write the values out, or use fewer aliases of large anchors")
        return loader.construct_document(node)
    except (yaml.YAMLError, RecursionError) as e:
        problem = " ".join(str(e).split())[:500] if isinstance(e, yaml.YAMLError) else "nested too deeply"
        raise SweepError(f"{path}: not valid YAML ({problem})") from None
    finally:
        loader.dispose()


def _expanded_nodes(path: Path, node: yaml.Node, sizes: dict[int, int], stack: set[int]) -> int:
    """How many nodes ``node`` stands for with every alias expanded; an alias is a second reference to a node, so
    ``sizes`` (by node id) keeps this linear in the file's size. SweepError on an alias inside itself."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in stack:
        raise SweepError(f"{path}: a YAML alias refers to a mapping or list that contains it: a recursive value is no "
                         "sweep parameter")
    stack.add(key)
    children = node.value if isinstance(node, yaml.SequenceNode) else [
        n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else []
    sizes[key] = 1 + sum(_expanded_nodes(path, n, sizes, stack) for n in children)
    stack.discard(key)
    return sizes[key]


def _check_top_level(raw: dict[str, Any]) -> list[str]:
    e = []
    for key in raw:
        if key not in TOP_LEVEL_KEYS:
            close = difflib.get_close_matches(str(key), TOP_LEVEL_KEYS, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            e.append(f"unknown top-level key {key!r}: {hint}W&B sweep keys are {', '.join(TOP_LEVEL_KEYS)}")
    e += [f"{k}: required" for k in ("program", "method") if k not in raw]
    if "method" in raw and raw["method"] not in METHODS:
        e.append(f"method: {raw['method']!r} is not one of {', '.join(METHODS)}")
    for k in ("name", "description", "entity", "project"):
        if k in raw and not isinstance(raw[k], str):
            e.append(f"{k}: expected a string, got {raw[k]!r}")
    if isinstance(raw.get("name"), str):
        e += _check_name(raw["name"])
    cap = raw.get("run_cap")
    if "run_cap" in raw and not (isinstance(cap, int) and not isinstance(cap, bool) and cap > 0):
        e.append(f"run_cap: expected an integer > 0, got {cap!r}")
    et = raw.get("early_terminate")
    if et is not None:
        if not isinstance(et, dict) or et.get("type") != "hyperband":
            e.append(f"early_terminate: expected {{type: hyperband, min_iter: N}} or {{type: hyperband, "
                     f"max_iter: N, s: N}}, got {et!r}")
        else:
            e += [f"early_terminate: unknown key {k!r} (allowed: {', '.join(HYPERBAND_KEYS)})"
                  for k in et if k not in HYPERBAND_KEYS]
            if "min_iter" not in et and not {"max_iter", "s"} <= set(et):
                e.append("early_terminate: hyperband needs min_iter, or max_iter and s")
            e += _check_hyperband(et)
    return e


def _check_name(name: str) -> list[str]:
    """The sweep's name names its results folder under --results_dir: one plain path component, so that its
    records, logs and lock stay inside that folder."""
    bad = ("is empty" if not name.strip() else "holds a path separator" if "/" in name or "\\" in name
           else "holds a NUL or control character" if any(ord(c) < 32 or ord(c) == 127 for c in name)
           else "starts with a dot" if name.startswith(".") else None)
    if bad is None:
        return []
    safe = re.sub(r"[^A-Za-z0-9_.+=-]+", "_", name).strip("._") or "my_sweep"
    return [f"name: {name!r} {bad}; it names the sweep's results folder inside --results_dir, so it must be one "
            f"plain folder name, e.g. {safe!r}"]


def _check_hyperband(et: dict[str, Any]) -> list[str]:
    """The types and bounds W&B's schema gives hyperband's keys (an integral float is an integer to it)."""
    rules = {"min_iter": ("an integer >= 1", lambda x: is_number(x) and float(x).is_integer() and x >= 1),
             "max_iter": ("an integer", lambda x: is_number(x) and float(x).is_integer()),
             "s": ("a number", is_number),
             "eta": ("a number > 1", lambda x: is_number(x) and x > 1),
             "strict": ("true or false", lambda x: isinstance(x, bool))}
    return [f"early_terminate.{k}: expected {what}, got {et[k]!r}" for k, (what, ok) in rules.items()
            if k in et and not ok(et[k])]


def _check_metric(raw: dict[str, Any]) -> list[str]:
    metric = raw.get("metric")
    if metric is None:
        users = [who for who, uses in (("bayes search", raw.get("method") == "bayes"),
                                       ("hyperband early_terminate", "early_terminate" in raw)) if uses]
        return [f"metric: {' and '.join(users)} needs a metric, e.g. {{name: accuracy, goal: maximize}}"] \
            if users else []
    if not isinstance(metric, dict) or "name" not in metric:
        return [f"metric: expected {{name: accuracy, goal: maximize}}, got {metric!r}"]
    e = [f"metric: unknown key {k!r} (allowed: {', '.join(METRIC_KEYS)})" for k in metric if k not in METRIC_KEYS]
    if "target" in metric and not is_number(metric["target"]):
        e.append(f"metric.target: expected a number, got {metric['target']!r}")
    # YAML reads an unquoted false as a boolean, which W&B's schema refuses for impute_while_running
    e += [f"metric.{k}: {metric[k]!r} is not one of {', '.join(allowed)}" + (" (quote it: 'false')" if metric[k] is
          False else "") for k, allowed in IMPUTE.items() if k in metric and metric[k] not in allowed]
    name, goal = metric["name"], metric.get("goal", "minimize")
    if not isinstance(name, str) or not isinstance(goal, str):
        return [*e, f"metric: name and goal are strings, e.g. {{name: accuracy, goal: maximize}}, got {metric!r}"]
    if goal not in ("minimize", "maximize"):
        e.append(f"metric.goal: {goal!r} is not minimize or maximize")
    elif name == TEST_METRIC:  # selecting on the held-out clips would make them validation clips
        e.append(f"metric.name: {name} is the held-out test set's, which nothing may select on; use accuracy (of "
                 "the validation fold) and read test_accuracy in the analysis")
    elif name not in METRIC_GOALS:
        e.append(f"metric.name: train.py does not log {name!r}; it logs {', '.join(METRIC_GOALS)}")
    elif METRIC_GOALS[name] != goal:
        default = "" if "goal" in metric else " (W&B's default when goal is not given)"
        e.append(f"metric: goal {goal}{default} would look for the worst {name}: set goal: {METRIC_GOALS[name]}")
    return e


def _check_command(command: Any, recipe: Path | None) -> list[str]:
    if command is None:
        return []
    if not isinstance(command, list) or not command:
        return [f"command: expected a list such as {DEFAULT_COMMAND}, got {command!r}"]
    known = ("env", "interpreter", "program", *ARG_MACROS)
    e = [f"command: unknown macro {c!r} (known: {', '.join('${' + k + '}' for k in known)}, ${{envvar:NAME}})"
         for c in map(str, command) if c.startswith("${") and c.endswith("}") and not ENVVAR.fullmatch(c)
         and c[2:-1] not in known]
    if recipe is not None:
        e += [f"command: {c} passes the parameters as JSON, which holds no --config recipe: use ${{args}}, or "
              "leave --config out" for c in map(str, command) if c in ("${args_json}", "${args_json_file}")]
    return e


def _find_program(path: Path, program: Any, errors: list[str]) -> Path:
    """The program as an agent started in the repository root (or beside the sweep file) finds it."""
    if program is None:
        return Path()  # reported as required
    if not isinstance(program, str) or not program:
        errors.append(f"program: expected a script path such as train.py, got {program!r}")
        return Path()
    for base in (Path.cwd(), REPO_ROOT, path.parent):
        if (base / program).is_file():
            return base / program
    errors.append(f"program: {program!r} not found in {Path.cwd()}, the repository root {REPO_ROOT}, "
                  f"or beside the sweep file")
    return Path(program)


def render_args(params: dict[str, Any], recipe: Path | None = None) -> dict[str, list[str]]:
    """The argument lists an agent substitutes for ``${args}`` and its variants (W&B's formatting, str()); a
    ``recipe`` comes first, as ``config``, so that train.py lays it under the sweep's own ``config`` and values."""
    out: dict[str, list[str]] = {k: [] for k in ARG_MACROS if k != "args_json_file"}
    for key, value in [*([(CONFIG_FILE_KEY, recipe)] if recipe else []), *params.items()]:
        flag = f"{key}={value}"
        out["args"].append(f"--{flag}")
        out["args_no_equals"] += [f"--{key}", str(value)]
        out["args_no_hyphens"].append(flag)
        out["args_append_hydra"].append(f"+{flag}")
        out["args_override_hydra"].append(f"++{flag}")
        if not isinstance(value, bool):
            out["args_no_boolean_flags"].append(f"--{flag}")
        elif value:
            out["args_no_boolean_flags"].append(f"--{key}")
    out["args_json"] = [json.dumps(params)]
    return out


def build_command(sweep: Sweep, params: dict[str, Any], args_json_file: Path | None = None) -> list[str]:
    """The command line an agent runs for ``params`` (``${interpreter}`` = this Python, for its packages)."""
    program = sweep.program
    try:
        program = program.relative_to(Path.cwd())
    except ValueError:
        pass
    macros = {**render_args(params, sweep.recipe), "env": ["/usr/bin/env"] if os.name != "nt" else [],
              "interpreter": [sys.executable], "program": [str(program)]}
    if args_json_file is not None:
        macros["args_json_file"] = [str(args_json_file)]
    cmd: list[str] = []
    for chunk in map(str, sweep.raw.get("command") or DEFAULT_COMMAND):
        chunk = ENVVAR.sub(lambda m: os.environ.get(m.group(1), m.group(1)), chunk)
        if chunk.startswith("${") and chunk.endswith("}"):
            cmd += macros.get(chunk[2:-1], [])
        else:
            cmd.append(chunk)
    return cmd


def run_config(params: dict[str, Any], recipe: Path | None = None) -> dict[str, Any]:
    """The effective configuration train.py builds from ``--key=value`` arguments over ``recipe`` (``--config``)
    and the sweep's own ``config`` file: validated by config.merge, then read back through train.py's own parser;
    a value that does not survive the command line is an error."""
    files = [*([recipe] if recipe else []), *([params[CONFIG_FILE_KEY]] if CONFIG_FILE_KEY in params else [])]
    layers = [load_yaml(f) for f in files]  # as train.py reads them, the later winning
    cfg = merge([*layers, {k: v for k, v in params.items() if k != CONFIG_FILE_KEY}]).effective_dict()
    args = render_args(params, recipe)["args"]
    via_cli = parse_known(args, _train_parser())[0].effective_dict()
    changed = [k for k in cfg if via_cli[k] != cfg[k]]
    if changed:
        raise ConfigError("; ".join(f"{k}: {cfg[k]!r} does not survive the command line: train.py reads "
                                    f"{via_cli[k]!r} from {' '.join(args)}" for k in changed))
    return via_cli


@functools.cache
def _train_parser() -> argparse.ArgumentParser:
    """train.py's parser, built once: building it costs as much as checking a grid point with it."""
    return build_parser()


def expand(sweep: Sweep, count: int | None = None, seed: int = 0) -> Plan:
    """The sweep's runs with W&B's semantics, each validated by train.py's config rules.

    grid: the cartesian product of every parameter's values (constants fixed), parameters in sorted order as
    W&B iterates them, bounded by run_cap and ``count``. random: distinct configurations drawn from the
    parameters' distributions with ``seed``, as many as run_cap / ``count`` allow (unbounded: a validation
    sample of CHECK_SAMPLES). bayes: expanded like random, for validation only (its controller is W&B's).
    """
    bound = min((b for b in (count, sweep.run_cap) if b is not None), default=None)
    names = sorted(sweep.params)
    finite = all(p.distribution in (*DISCRETE, *GRID_DISTRIBUTIONS) for p in sweep.params.values())
    sizes = {n: sweep.params[n].grid_size() for n in names} if finite else {}
    notes = []
    if sweep.method == "grid":  # load_sweep refused the other distributions
        total = math.prod(sizes.values())
        if max(sizes.values(), default=1) > MAX_GRID_POINTS or (total > MAX_GRID_POINTS and (
                bound is None or bound > MAX_GRID_POINTS)):
            shape = " x ".join(f"{n} ({sizes[n]})" for n in names if sizes[n] > 1)
            raise SweepError(f"{sweep.path}: the grid has {total} points ({shape}), over the limit of "
                             f"{MAX_GRID_POINTS} runs a grid sweep may have: split it into smaller sweeps, or run its "
                             f"first N points with run_cap: N (N <= {MAX_GRID_POINTS})")
    elif bound is not None and finite and all(p.distribution != "q_uniform" for p in sweep.params.values()):
        space = math.prod(sizes.values())  # a finite space: no more distinct configurations than this
        if bound > space:
            notes.append(f"{'--count' if bound == count else 'run_cap'} {bound} capped to the {space} distinct "
                         "configuration(s) the parameters can take")
            bound = space
    if sweep.method == "grid":
        points = (dict(zip(names, combo, strict=True)) for combo in
                  itertools.product(*(sweep.params[n].grid_values() for n in names)))
        label = "grid point"
    else:
        rng = np.random.default_rng(seed)
        points = (_sample(sweep, names, rng) for _ in itertools.count())
        label = "random sample"
    wanted = bound if bound is not None else (None if sweep.method == "grid" else CHECK_SAMPLES)
    plan = Plan([], bounded=sweep.method == "grid" or bound is not None, notes=notes)
    seen: set[str] = set()
    ids: set[str] = set()
    failures: dict[str, list[dict]] = {}
    draws, max_draws = 0, None if sweep.method == "grid" else 50 * (wanted or 1) + 100
    for point in points:
        if (wanted is not None and len(plan.runs) >= wanted) or (max_draws is not None and draws >= max_draws):
            break
        draws += 1
        if value_key(point) in seen:
            continue
        seen.add(value_key(point))
        try:
            cfg = run_config(point, sweep.recipe)
        except ConfigError as e:
            failures.setdefault(str(e).removeprefix("invalid configuration:\n  "), []).append(point)
            if sweep.method != "grid" and sum(map(len, failures.values())) >= MAX_RANDOM_FAILURES:
                break
            continue
        if (cid := config_id(cfg)) not in ids:
            ids.add(cid)
            plan.runs.append(Run(point, cid, cfg))
    if failures:
        raise SweepError(f"{sweep.path}: " + "\n  ".join(
            [f"{sum(map(len, failures.values()))} {label}(s) rejected by train.py's config rules:"]
            + [f"{_describe(pts[0], sweep)}: {msg}" + (f" (and {len(pts) - 1} more like it)" if len(pts) > 1 else "")
               for msg, pts in failures.items()]))
    if sweep.method == "grid":
        if len(plan.runs) < total and bound is None:
            plan.notes.append(f"{total - len(plan.runs)} of {total} grid points repeat a configuration")
    elif wanted is not None and len(plan.runs) < wanted:
        plan.notes.append(f"only {len(plan.runs)} distinct configurations found in {draws} random draws")
    if not plan.bounded:
        plan.notes.append(f"unbounded {sweep.method} sweep: {len(plan.runs)} sampled configurations validated")
    return plan


def _sample(sweep: Sweep, names: list[str], rng: np.random.Generator) -> dict[str, Any]:
    try:
        return {n: sweep.params[n].sample(rng) for n in names}
    except SweepError as e:
        raise SweepError(f"{sweep.path}: {e}") from None


def _describe(point: dict[str, Any], sweep: Sweep) -> str:
    shown = [n for n in sweep.varying if n in point] or sorted(point)
    return "{" + ", ".join(f"{n}: {value_key(point[n]) if isinstance(point[n], (list, dict)) else point[n]}"
                           for n in shown) + "}"


def count_label(sweep: Sweep, plan: Plan) -> str:
    if sweep.method == "bayes":
        return f"at most {sweep.run_cap} runs (bayes)" if sweep.run_cap else "unbounded (bayes)"
    if not plan.bounded:
        return f"unbounded ({sweep.method}; bound it with run_cap or --count)"
    return f"{len(plan.runs)} runs ({sweep.method})"
