"""One sweep parameter in W&B's forms (``value``, ``values``, distributions): its checks, grid values and samples.

The forms, their keys, defaults and sampling formulas follow W&B's sweep-config schema and its reference
implementation (``wandb/sweeps``: ``config/schema.json``, ``params.py``, ``grid_search.py``).
"""

from __future__ import annotations

import json
import math
import types
import typing
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..config import coerce, key_type
from ..errors import ConfigError, SweepError

# distribution -> (required keys, optional keys with W&B's defaults)
DISTRIBUTIONS: dict[str, tuple[set[str], dict[str, Any]]] = {
    "constant": ({"value"}, {}),
    "categorical": ({"values"}, {}),
    "categorical_w_probabilities": ({"values", "probabilities"}, {}),
    "int_uniform": ({"min", "max"}, {}),
    "uniform": ({"min", "max"}, {}),
    "q_uniform": ({"min", "max"}, {"q": 1.0}),
    "log_uniform_values": ({"min", "max"}, {}),
    "q_log_uniform_values": ({"min", "max"}, {"q": 1.0}),
    "inv_log_uniform_values": ({"min", "max"}, {}),
    "normal": (set(), {"mu": 0.0, "sigma": 1.0}),
    "q_normal": (set(), {"mu": 0.0, "sigma": 1.0, "q": 1.0}),
    "log_normal": (set(), {"mu": 0.0, "sigma": 1.0}),
    "q_log_normal": (set(), {"mu": 0.0, "sigma": 1.0, "q": 1.0}),
    "beta": (set(), {"a": 1.0, "b": 1.0}),
    "q_beta": (set(), {"a": 1.0, "b": 1.0, "q": 1.0}),
}
# W&B's deprecated forms, whose min/max are base-e exponents: its schema check refuses them, naming the replacement
DEPRECATED = {"log_uniform": "log_uniform_values", "q_log_uniform": "q_log_uniform_values",
              "inv_log_uniform": "inv_log_uniform_values"}
GRID_DISTRIBUTIONS = ("constant", "categorical", "int_uniform", "q_uniform")
INT64 = 2 ** 63  # numpy draws and Optuna's integer distributions hold int64 bounds
DISCRETE = ("constant", "categorical", "categorical_w_probabilities")


def is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _base_type(key: str) -> Any:
    tp = key_type(key)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    return tp


def value_key(value: Any) -> str:
    """W&B's identity of one parameter value (``grid_search.yaml_hash``): 3.0 and 3 are the same value."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return json.dumps(value, sort_keys=True, default=str)


@dataclass
class Param:
    """A validated parameter: its distribution and the keys of that distribution (defaults filled in)."""

    name: str
    distribution: str
    spec: dict[str, Any]

    @property
    def constant(self) -> bool:
        return self.distribution == "constant" or (self.distribution in DISCRETE and len(self.spec["values"]) == 1)

    def grid_size(self) -> int:
        """How many distinct values a grid sweep takes, without listing them (GRID_DISTRIBUTIONS and DISCRETE)."""
        d, s = self.distribution, self.spec
        if d == "constant":
            return 1
        if d == "int_uniform":
            return s["max"] - s["min"] + 1
        if d == "q_uniform":
            steps = (s["max"] - s["min"]) / s["q"]
            return max(0, math.ceil(steps)) if math.isfinite(steps) else INT64  # inf: past every limit
        return len({value_key(v) for v in s["values"]})

    def grid_values(self) -> list[Any]:
        """The values a grid sweep takes, distinct, in file order (int_uniform and q_uniform made discrete)."""
        d, s = self.distribution, self.spec
        if d == "constant":
            return [s["value"]]
        if d == "int_uniform":
            values = list(range(s["min"], s["max"] + 1))
        elif d == "q_uniform":
            values = np.arange(s["min"], s["max"], s["q"]).tolist()
        else:
            values = list(s["values"])
        distinct = {value_key(v): v for v in reversed(values)}
        return [distinct[k] for k in dict.fromkeys(value_key(v) for v in values)]

    def sample(self, rng: np.random.Generator) -> Any:
        """One random value, drawn as W&B's random search draws it; SweepError where the numbers overflow."""
        try:
            return self._sample(rng)
        except (OverflowError, ValueError) as e:  # e.g. exp of a large log_normal draw, a range past float's
            raise SweepError(f"parameters.{self.name}: cannot draw a value from {self.spec} ({e}): narrow its "
                             "range") from None

    def _sample(self, rng: np.random.Generator) -> Any:
        d, s = self.distribution, self.spec
        if d == "constant":
            return s["value"]
        if d == "categorical":
            return s["values"][int(rng.integers(len(s["values"])))]
        if d == "categorical_w_probabilities":
            p = np.asarray(s["probabilities"], dtype=float)
            return s["values"][int(rng.choice(len(p), p=p / p.sum()))]
        if d == "int_uniform":
            return int(rng.integers(s["min"], s["max"] + 1))
        lo, hi = s.get("min"), s.get("max")
        if d.endswith("_values"):  # the bounds of the log forms are values (the exponent forms are refused)
            lo, hi = math.log(lo), math.log(hi)
        base = d.removeprefix("q_").removesuffix("_values")
        if base == "uniform":
            x = rng.uniform(lo, hi)
        elif base == "log_uniform":
            x = math.exp(rng.uniform(lo, hi))
        elif base == "inv_log_uniform":
            x = math.exp(-rng.uniform(-hi, -lo))
        elif base == "normal":
            x = rng.normal(s["mu"], s["sigma"])
        elif base == "log_normal":
            x = math.exp(rng.normal(s["mu"], s["sigma"]))
        else:
            x = rng.beta(s["a"], s["b"])
        if d.startswith("q_"):
            x = round(x / s["q"]) * s["q"]
            return int(x) if _is_int(s["q"]) else float(x)
        return float(x)


def infer_distribution(spec: dict[str, Any]) -> str | None:
    """The distribution W&B assumes when ``distribution`` is not given."""
    if "distribution" in spec:
        return spec["distribution"]
    if "value" in spec:
        return "constant"
    if "values" in spec:
        return "categorical_w_probabilities" if "probabilities" in spec else "categorical"
    if "min" in spec and "max" in spec:
        return "int_uniform" if _is_int(spec["min"]) and _is_int(spec["max"]) else "uniform"
    return None


def parse_param(name: str, spec: Any) -> tuple[Param | None, list[str]]:
    """Check one entry of ``parameters`` against W&B's forms and the type of config key ``name``."""
    where = f"parameters.{name}"
    if isinstance(spec, list):
        return None, [f"{where}: a bare list is not a W&B parameter (W&B refuses it too): write {{values: {spec!r}}}"]
    if not isinstance(spec, dict):
        return None, [f"{where}: expected a mapping such as {{value: {spec!r}}} or {{values: [...]}}, got {spec!r}"]
    if "parameters" in spec:
        return None, [f"{where}: nested parameters are not supported: train.py's config keys are flat"]
    dist = infer_distribution(spec)
    if dist is None:
        return None, [f"{where}: give value, values, min/max or a distribution (got keys {sorted(spec)})"]
    if dist in DEPRECATED:
        return None, [f"{where}: {_deprecation(dist, spec)}"]
    if dist not in DISTRIBUTIONS:
        return None, [f"{where}: unknown distribution {dist!r}; W&B's distributions: {', '.join(DISTRIBUTIONS)}"]
    required, optional = DISTRIBUTIONS[dist]
    errors = [f"{where}: {dist} needs {k!r}" for k in sorted(required - set(spec))]
    extra = sorted(set(spec) - required - set(optional) - {"distribution"})
    errors += [f"{where}: key {k!r} does not belong to a {dist} parameter (allowed: "
               f"{', '.join(sorted(required | set(optional)))})" for k in extra]
    if errors:
        return None, errors
    full = {**optional, **{k: v for k, v in spec.items() if k != "distribution"}}
    errors = _check_numbers(where, dist, full) or _check_values(name, where, dist, full)
    return (None, errors) if errors else (Param(name, dist, full), [])


def _deprecation(dist: str, spec: dict[str, Any]) -> str:
    """W&B's refusal of an exponent form, with the bounds rewritten as the values they stand for."""
    new = DEPRECATED[dist]
    lo, hi = spec.get("min"), spec.get("max")
    example = ""
    if is_number(lo) and is_number(hi):
        # inv_log_uniform draws exp(-x), x in [min, max]: its values run from exp(-max) to exp(-min)
        lo, hi = (math.exp(-hi), math.exp(-lo)) if dist == "inv_log_uniform" else (math.exp(lo), math.exp(hi))
        example = f" (here min: {lo:.6g}, max: {hi:.6g})"
    return (f"{dist} is deprecated by W&B and refused (its min/max are base-e exponents): "
            f"use {new} with the bounds as values{example}")


def _check_numbers(where: str, dist: str, s: dict[str, Any]) -> list[str]:
    e = [f"{where}.{k}: expected a number, got {s[k]!r}" for k in ("min", "max", "q", "mu", "sigma", "a", "b")
         if k in s and not is_number(s[k])]
    if e:
        return e
    if dist == "int_uniform" and not (_is_int(s["min"]) and _is_int(s["max"])):
        e.append(f"{where}: int_uniform needs integer min and max, got {s['min']!r}, {s['max']!r}")
    e += [f"{where}.{k}: {s[k]} is out of range: integer bounds must lie within +-2^63 (9.2e18)"
          for k in ("min", "max") if _is_int(s.get(k)) and abs(s[k]) >= INT64]
    if e:
        return e
    if "min" in s and s["min"] >= s["max"]:
        e.append(f"{where}: min {s['min']} is not less than max {s['max']}")
    elif "min" in s and not math.isfinite((s["max"] - s["min"]) / s.get("q", 1)):
        e.append(f"{where}: the range from min {s['min']} to max {s['max']}" + (f" in steps of q {s['q']}" if "q" in s
                 else "") + " is too wide to draw from: narrow it")
    if dist.endswith("_values") and s["min"] <= 0:
        e.append(f"{where}: {dist} needs min > 0 (the bounds are values, sampled in log space), got {s['min']}")
    if s.get("q", 1) <= 0:
        e.append(f"{where}.q: must be > 0, got {s['q']}")
    e += [f"{where}.sigma: must be >= 0, got {s['sigma']}"] if s.get("sigma", 0) < 0 else []
    e += [f"{where}.{k}: must be > 0 (a beta distribution's shape), got {s[k]}" for k in ("a", "b") if k in s and
          not s[k] > 0]
    if "values" in s and (not isinstance(s["values"], list) or not s["values"]):
        e.append(f"{where}.values: expected a non-empty list, got {s['values']!r}")
    if dist == "categorical_w_probabilities":
        p = s["probabilities"]
        if not isinstance(p, list) or not all(is_number(x) and x >= 0 for x in p):
            e.append(f"{where}.probabilities: expected a list of numbers >= 0, got {p!r}")
        elif isinstance(s["values"], list) and len(p) != len(s["values"]):
            e.append(f"{where}.probabilities: {len(p)} probabilities for {len(s['values'])} values")
        elif abs(sum(p) - 1) > 1e-6:
            e.append(f"{where}.probabilities: must sum to 1, sum to {sum(p):g}")
    return e


def _check_values(name: str, where: str, dist: str, s: dict[str, Any]) -> list[str]:
    """Every value the parameter can take must be valid for config key ``name`` (train.py's own coerce)."""
    tp = _base_type(name)
    if dist not in DISCRETE and tp not in (int, float):
        return [f"{where}: {name} is a {getattr(tp, '__name__', 'choice')} key; {dist} gives numbers: "
                "use value or values"]
    if tp is int and dist not in (*DISCRETE, "int_uniform") and not (
            dist.startswith("q_") and float(s["q"]).is_integer()):
        return [f"{where}: {name} is an integer key but {dist} gives fractional numbers: "
                "use int_uniform, values, or a q_ distribution with an integer q"]
    e = []
    if dist == "constant":
        candidates = {"value": s["value"]}
    elif dist in DISCRETE:
        candidates = {f"values[{i}]": v for i, v in enumerate(s["values"])}
    else:
        candidates = {k: s[k] for k in ("min", "max") if k in s}
    for label, value in candidates.items():
        try:
            coerce(name, value)
        except ConfigError as err:
            e.append(f"{where}.{label}: {err}")
    return e
