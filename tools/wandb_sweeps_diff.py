"""Compare ``sweep check``'s verdicts with W&B's own sweep engine (the ``sweeps`` package) on the same configs.

Run from the repository root with the project's Python; W&B's engine lives in a separate virtual environment,
kept out of the project's:

    python -m venv /tmp/wbsweeps && /tmp/wbsweeps/bin/pip install sweeps
    python tools/wandb_sweeps_diff.py --wandb-python /tmp/wbsweeps/bin/python

Every ``sweeps/*.yaml`` and the edge cases below are judged by both; W&B refuses what its schema check
(``schema_violations_from_proposed_config``) refuses, or what its controller refuses when it starts: the first
``next_run`` (bayes needs a metric and a parameter to search) and ``stop_runs`` (hyperband needs a metric).
Prints a table and exits 1 when a verdict differs.
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from audiosweep.errors import SweepError  # noqa: E402
from audiosweep.sweep.spec import expand, load_sweep  # noqa: E402

# Runs in W&B's environment: a JSON list of configs on stdin, a JSON list of refusals ("" = accepted) out.
WANDB_JUDGE = """
import json, sys
from sweeps import next_run, schema_violations_from_proposed_config, stop_runs
out = []
for cfg in json.load(sys.stdin):
    try:
        problems = schema_violations_from_proposed_config(cfg)
        if not problems:
            next_run(cfg, [], validate=True)
            if "early_terminate" in cfg:
                stop_runs(cfg, [], validate=True)
    except Exception as e:
        problems = [f"{type(e).__name__}: {e}"]
    out.append("; ".join(problems))
print(json.dumps(out))
"""

BASE = {"program": "train.py", "method": "grid", "metric": {"name": "accuracy", "goal": "maximize"},
        "parameters": {"n_mels": {"values": [64, 128]}, "trial_num": {"value": 1}}}
SEARCH = {  # one parameter per distribution, each valid for its config key
    "constant": {"n_mels": {"value": 64}},
    "categorical": {"n_mels": {"values": [64, 128]}},
    "categorical_w_probabilities": {"mix_up": {"values": [0.0, 0.2], "probabilities": [0.5, 0.5]}},
    "int_uniform": {"hop_length": {"min": 200, "max": 400}},
    "uniform": {"mix_up": {"distribution": "uniform", "min": 0.0, "max": 0.4}},
    "q_uniform": {"n_mels": {"distribution": "q_uniform", "min": 64, "max": 256, "q": 32}},
    "log_uniform_values": {"learning_rate": {"distribution": "log_uniform_values", "min": 1e-5, "max": 1e-2}},
    "q_log_uniform_values": {"n_mels": {"distribution": "q_log_uniform_values", "min": 64, "max": 256, "q": 32}},
    "inv_log_uniform_values": {"f_max": {"distribution": "inv_log_uniform_values", "min": 8000.0,
                                         "max": 22050.0}},
    "normal": {"mix_up": {"distribution": "normal", "mu": 0.2, "sigma": 0.01}},
    "beta": {"mix_up": {"distribution": "beta", "a": 2.0, "b": 5.0}},
}
HYPERBAND = {"type": "hyperband", "min_iter": 3}


def _case(top: dict[str, Any] | None = None, drop: tuple[str, ...] = (), **parameters: Any) -> dict[str, Any]:
    cfg = copy.deepcopy(BASE)
    cfg.update(copy.deepcopy(top or {}))
    for key in drop:
        cfg.pop(key)
    if parameters:
        cfg["parameters"] = parameters
    return cfg


def edge_cases() -> dict[str, dict[str, Any]]:
    """Valid configs of every method and distribution, and the ones W&B's engine refuses."""
    cases = {f"{method}/{dist}": _case({"method": method}, **spec, trial_num={"value": 1})
             for method in ("random", "bayes") for dist, spec in SEARCH.items() if dist != "constant"}
    cases |= {f"grid/{dist}": _case(**SEARCH[dist], trial_num={"values": [1, 2]})
              for dist in ("constant", "categorical", "int_uniform", "q_uniform")}
    cases |= {
        "ok: hyperband min_iter": _case({"early_terminate": HYPERBAND}),
        "ok: hyperband max_iter+s, eta, strict": _case({"early_terminate": {
            "type": "hyperband", "max_iter": 27, "s": 2, "eta": 3, "strict": True}}),
        "ok: metric target+impute": _case({"metric": {"name": "accuracy", "goal": "maximize", "target": 0.9,
                                                      "impute": "best", "impute_while_running": "false"}}),
        "ok: bayes single-value values": _case({"method": "bayes"}, n_mels={"values": [64]}),
        "bad 1: metric.impute": _case({"metric": {"name": "accuracy", "goal": "maximize", "impute": "mean"}}),
        "bad 1b: impute_while_running false": _case({"metric": {"name": "accuracy", "goal": "maximize",
                                                                "impute_while_running": False}}),
        "bad 2: metric.target": _case({"metric": {"name": "accuracy", "goal": "maximize", "target": "high"}}),
        "bad 3: hyperband min_iter 0": _case({"early_terminate": {**HYPERBAND, "min_iter": 0}}),
        "bad 4: hyperband eta 1": _case({"early_terminate": {**HYPERBAND, "eta": 1}}),
        "bad 5: hyperband min_iter string": _case({"early_terminate": {**HYPERBAND, "min_iter": "3"}}),
        "bad 6: hyperband strict string": _case({"early_terminate": {**HYPERBAND, "strict": "yes"}}),
        "bad 7: hyperband without metric": _case({"early_terminate": HYPERBAND}, drop=("metric",)),
        "bad 8: bayes with constants only": _case({"method": "bayes"}, n_mels={"value": 64},
                                                  trial_num={"value": 1}),
    }
    for dist, lo, hi in (("log_uniform", -5, 0), ("q_log_uniform", 4, 5), ("inv_log_uniform", -10, -9)):
        key = "learning_rate" if dist == "log_uniform" else "n_mels" if dist == "q_log_uniform" else "f_max"
        cases[f"bad 9: {dist} (exponents)"] = _case({"method": "random"}, **{key: {
            "distribution": dist, "min": lo, "max": hi}}, trial_num={"value": 1})
    return cases


def ours(path: Path) -> str:
    """What ``sweep check`` says: "" when it accepts ``path``, else its first problem."""
    try:
        expand(load_sweep(path))
    except SweepError as e:
        lines = str(e).splitlines()
        return (lines[1] if len(lines) > 1 else lines[0]).strip()
    return ""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wandb-python", default="/tmp/wbsweeps/bin/python", help="Python with W&B's sweeps")
    ap.add_argument("--tmp", type=Path, default=Path("/tmp/wandb_sweeps_diff"), help="where cases are written")
    args = ap.parse_args(argv)
    args.tmp.mkdir(parents=True, exist_ok=True)
    paths = {p.name: p for p in sorted((REPO / "sweeps").glob("*.yaml"))}
    for i, (name, cfg) in enumerate(edge_cases().items()):
        paths[name] = args.tmp / f"case{i:02d}.yaml"
        paths[name].write_text(yaml.safe_dump(cfg, sort_keys=False))
    configs = [yaml.safe_load(p.read_text()) for p in paths.values()]
    judged = subprocess.run([args.wandb_python, "-c", WANDB_JUDGE], input=json.dumps(configs), text=True,
                            capture_output=True, check=True)
    theirs = json.loads(judged.stdout)
    width = max(map(len, paths))
    print(f"{'file/case':{width}}  {'W&B':7}  {'ours':7}  agree")
    differ = 0
    for (name, path), wandb in zip(paths.items(), theirs, strict=True):
        mine = ours(path)
        agree = bool(wandb) == bool(mine)
        differ += not agree
        print(f"{name:{width}}  {'refuse' if wandb else 'accept':7}  {'refuse' if mine else 'accept':7}  "
              f"{'yes' if agree else 'NO'}")
        for who, why in (("W&B", wandb), ("ours", mine)):
            if why:
                print(f"{'':{width}}    {who}: {why[:150]}")
    print(f"{len(paths)} configs, {differ} differ")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
