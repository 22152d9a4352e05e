"""sweeps/report/: with base.yaml under every run, each file expands to exactly the report's published runs of its
sweep (tests/data/fastaudio_esc50_runs.csv, the W&B export), held-fixed settings, folds and trials included."""

from __future__ import annotations

import csv
import itertools
import json
from collections import Counter

import pytest

from audiosweep.sweep.cli import main
from audiosweep.sweep.spec import REPO_ROOT

REPORT = REPO_ROOT / "sweeps" / "report"
BASE = REPORT / "base.yaml"
EXPORT = REPO_ROOT / "tests" / "data" / "fastaudio_esc50_runs.csv"
# Our file -> the report's W&B sweep id in the export.
SWEEP_IDS = {"hop_length": "zy4tbf3s", "win_length": "c1rey6hw", "n_fft": "hwmszy3d", "n_mels": "q2bp6t59",
             "f_max": "q6jigga8", "mixup": "pvv62165", "normalize": "yjqwvyru", "batch_size": "dczr6k1d",
             "n_epochs": "cv68gtlf", "arch": "l0smv5qe", "all_folds_resnet18": "3wp1qhom",
             "all_folds_densenet161": "4w53cyvu"}
# The export's config columns; normalize is the report's boolean.
SETTINGS = ("n_epochs", "batch_size", "n_mels", "n_fft", "win_length", "hop_length", "f_max", "mix_up", "normalize",
            "learning_rate", "arch")
NORMALIZE = {True: "global", False: "none"}
# What the report's train.py did in every run, whatever its sweep varied (base.yaml's reasons).
REPORT_FIXED = {"sample_rate": 44100, "f_min": 0.0, "frontend": "logmel", "top_db": None, "stft_normalized": True,
                "pretrained": True, "finetune": "full", "freeze_epochs": 1, "schedule": "one_cycle",
                "optimizer": "adam", "weight_decay": 0.01, "loss": "cross_entropy", "label_smoothing": 0.0,
                "precision": "fp16", "checkpoint": "last", "tta": 0, "dataset": "esc50", "split": "official",
                "learning_rate": 0.01}
PER_FOLD = ("all_folds_resnet18", "all_folds_densenet161")


def setting(values: dict) -> tuple:
    """A run's settings, comparable between the export's text and our configs."""
    out = []
    for key in SETTINGS:
        value = values[key]
        if key == "normalize":
            value = NORMALIZE.get(value, value)
        elif key in ("f_max", "mix_up", "learning_rate"):
            value = round(float(value), 6)
        elif key != "arch":
            value = int(value)
        out.append(value)
    return tuple(out)


def published(sweep_id: str) -> list[dict]:
    with open(EXPORT, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["Sweep"] == sweep_id]
    for r in rows:
        r["normalize"] = {"true": True, "false": False}[r["normalize"].lower()]
    return rows


def runs(name: str, capsys) -> list[dict]:
    """The effective configs `check --runs` prints for sweeps/report/NAME.yaml with base.yaml under it."""
    assert main(["check", "--no-weights", str(REPORT / f"{name}.yaml"), "--config", str(BASE), "--runs"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    return [json.loads(line) for line in lines]


def test_the_files_are_the_reports_twelve_sweeps():
    assert {p.stem for p in REPORT.glob("*.yaml")} == {*SWEEP_IDS, "base"}
    with open(EXPORT, newline="") as f:
        assert Counter(r["Sweep"] for r in csv.DictReader(f)).keys() == set(SWEEP_IDS.values())


@pytest.mark.slow
@pytest.mark.parametrize("name", SWEEP_IDS)
def test_file_expands_to_the_published_runs(name, capsys):
    printed = runs(name, capsys)
    configs = [r["config"] for r in printed]
    rows = published(SWEEP_IDS[name])
    assert len(configs) == len(rows) == len({r["config_id"] for r in printed})
    assert Counter(map(setting, configs)) == Counter(map(setting, rows))
    for config in configs:
        assert {k: config[k] for k in REPORT_FIXED} == REPORT_FIXED
    # the export has no fold or trial column: each setting ran trials 1..5 on fold 1, or on each of the 5 folds
    folds = [1, 2, 3, 4, 5] if name in PER_FOLD else [1]
    by_setting: dict[tuple, list] = {}
    for config in configs:
        by_setting.setdefault(setting(config), []).append((config["fold"], config["trial_num"]))
    for pairs in by_setting.values():
        assert sorted(pairs) == list(itertools.product(folds, range(1, 6)))
