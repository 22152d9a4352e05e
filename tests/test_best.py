"""``python -m audiosweep.sweep best``: the best configuration by mean (not one lucky run), flagged when it has
fewer runs, written as a recipe that train.py's config loader turns back into the best runs' settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from analysis import best
from audiosweep.config import SETTING, effective, keys_with_role, parse_args
from audiosweep.sweep.cli import main
from tests.analysis_records import write_run, write_study

REPO = Path(__file__).resolve().parents[1]


def write_lucky(folder: Path) -> Path:
    """n_mels 64 / hop 10 ms: 0.70 / 0.72 / 0.74 (mean 0.72, max 0.74); n_mels 128: 0.60 / 0.62 / 0.90 (mean
    0.707, the highest single run); n_mels 32: one run at 0.80 (lucky: the best mean, of 1 run)."""
    for trial, acc in enumerate([0.70, 0.72, 0.74], 1):
        write_run(folder, f"a{trial}", acc, n_mels=64, hop_length_ms=10.0, hop_length=None, trial_num=trial)
    for trial, acc in enumerate([0.60, 0.62, 0.90], 1):
        write_run(folder, f"b{trial}", acc, n_mels=128, hop_length_ms=10.0, hop_length=None, trial_num=trial)
    write_run(folder, "c1", 0.80, n_mels=32, hop_length_ms=10.0, hop_length=None, trial_num=1)
    return folder


def run_best(*args: str, capsys) -> tuple[int, str, str]:
    code = main(["best", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_the_best_mean_wins_not_the_best_run_and_the_recipe_round_trips(tmp_path, capsys):
    folder = write_lucky(tmp_path / "lucky")
    code, out, err = run_best(str(folder), "--min_runs", "3", capsys=capsys)
    assert code == 0, err
    recipe = yaml.safe_load(out)
    assert recipe["n_mels"] == 64 and recipe["hop_length_ms"] == 10.0  # varied, and off the default
    assert not {"fold", "trial_num", "results_dir", "device"} & recipe.keys()
    assert "72.00 %" in out and "runner-up n_mels=128" in out and "1.33 points behind" in out
    path = tmp_path / "best.yaml"
    path.write_text(out)
    cfg, _ = parse_args(["--config", str(path)])  # train.py's own loader
    record = effective(yaml.safe_load((folder / "a1.json").read_text())["config"])  # as train.py records it
    settings = keys_with_role(SETTING)
    assert {k: cfg.effective_dict()[k] for k in settings} == {k: record[k] for k in settings}


def test_a_lucky_single_run_is_flagged(tmp_path, capsys):
    code, out, err = run_best(str(write_lucky(tmp_path / "lucky")), capsys=capsys)
    assert code == 0 and yaml.safe_load(out)["n_mels"] == 32
    assert "a lucky run may have won; --min_runs 3" in err and "# warning: the best group has 1 run(s)" in out


def test_by_ranks_marginal_means_and_takes_the_best_configuration_within(tmp_path, capsys):
    folder = tmp_path / "two"
    for arch, n_mels, accs in [("simple_cnn", 64, [0.70, 0.72]), ("simple_cnn", 128, [0.80, 0.82]),
                               ("resnet18", 64, [0.78, 0.80]), ("resnet18", 128, [0.74, 0.76])]:
        for trial, acc in enumerate(accs, 1):
            write_run(folder, f"{arch}-{n_mels}-{trial}", acc, arch=arch, n_mels=n_mels, trial_num=trial)
    code, out, _ = run_best(str(folder), "--by", "n_mels", capsys=capsys)  # 128: 0.78 vs 64: 0.75
    assert code == 0 and {"n_mels": 128, "arch": "simple_cnn"}.items() <= yaml.safe_load(out).items()
    assert "marginal means" in out
    code, out, _ = run_best(str(folder), capsys=capsys)  # every configuration: simple_cnn/128 (0.81)
    assert yaml.safe_load(out)["arch"] == "simple_cnn" and yaml.safe_load(out)["n_mels"] == 128


@pytest.mark.parametrize("args, message", [
    (["--by", "n_mel"], "--by: unknown config key 'n_mel'"),
    (["--by", "trial_num"], "--by: trial_num is not a setting"),
    (["--min_runs", "4"], "--min_runs 4: no group has that many finished runs (at most 3)"),
])
def test_bad_arguments_are_one_line(tmp_path, capsys, args, message):
    code, out, err = run_best(str(write_study(tmp_path)), *args, capsys=capsys)
    assert code == 2 and out == "" and message in err and len(err.strip().splitlines()) == 1


def test_empty_source_and_no_finished_run_are_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, _, err = run_best(str(tmp_path / "empty"), capsys=capsys)
    assert code == 2 and "no result records under" in err
    write_run(tmp_path / "failed", "f1", None, status="failed")
    code, out, err = run_best(str(tmp_path / "failed"), capsys=capsys)
    assert code == 2 and out == "" and "no finished run with accuracy" in err.splitlines()[-1]


def test_the_command_runs_as_a_module(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "audiosweep.sweep", "best", str(write_study(tmp_path))],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert proc.returncode == 0 and yaml.safe_load(proc.stdout) == {"n_mels": 128}


def test_plain_turns_group_keys_back_into_yaml_values():
    assert best.plain((1, (2, 3))) == [1, [2, 3]] and best.plain(float("nan")) is None


def test_a_wandb_export_gives_the_keys_it_holds_and_leaves_the_rest_to_the_defaults(capsys):
    export = REPO / "tests" / "data" / "fastaudio_esc50_runs.csv"  # the report's final ResNet-18 sweep
    code, out, err = run_best(str(export), "--sweep", "3wp1qhom", capsys=capsys)
    assert code == 0, err
    assert yaml.safe_load(out) == {"n_epochs": 80}  # the others: not in the export, so train.py's defaults
    assert "89.54 % mean accuracy, 95 % CI [88.74, 90.34] (t), n = 25 runs" in out
    assert "runner-up n_epochs=20: 85.89 %" in out and "settings the source does not hold" in out
