"""Bayes sweeps on an Optuna study: the distribution mapping, trials and resume, hyperband pruning, shared storage."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from audiosweep import results
from audiosweep.errors import SweepError
from audiosweep.sweep.bayes import to_optuna
from audiosweep.sweep.cli import main
from audiosweep.sweep.params import parse_param
from audiosweep.sweep.spec import load_recipe, load_sweep, run_config
from audiosweep.sweep.study import open_study
from tests.conftest import REPO, read_records, run_sweep_cli, write_sweep
from tests.conftest import TINY_SWEEP_RUN as TINY

LR = {"distribution": "log_uniform_values", "min": 1e-8, "max": 3e-2}


def mapped(name: str, spec: dict):
    param, errors = parse_param(name, spec)
    assert not errors, errors
    return to_optuna(param)


@pytest.mark.parametrize(("name", "spec", "dist"), [
    ("n_mels", {"values": [32, 40, 32]}, CategoricalDistribution([32, 40])),
    ("arch", {"values": ["simple_cnn", "resnet18"]}, CategoricalDistribution(["simple_cnn", "resnet18"])),
    ("n_mels", {"min": 32, "max": 64}, IntDistribution(32, 64)),
    ("learning_rate", {"min": 0.001, "max": 0.1}, FloatDistribution(0.001, 0.1)),
    ("learning_rate", {"distribution": "log_uniform_values", "min": 1e-5, "max": 1e-1},
     FloatDistribution(1e-5, 1e-1, log=True)),
    ("learning_rate", {"distribution": "inv_log_uniform_values", "min": 1e-5, "max": 1e-1},
     FloatDistribution(1e-5, 1e-1, log=True)),
    ("n_mels", {"distribution": "q_uniform", "min": 30, "max": 65, "q": 8}, IntDistribution(32, 64, step=8)),
    ("mix_up", {"distribution": "q_uniform", "min": 0.0, "max": 0.4, "q": 0.1}, FloatDistribution(0.0, 0.4, step=0.1)),
    ("mix_up", {"distribution": "beta", "a": 2, "b": 5}, FloatDistribution(0.0, 1.0)),
])
def test_wandb_distributions_map_to_optuna(name, spec, dist):
    assert mapped(name, spec)[0] == dist


def test_constants_rounding_and_unbounded_distributions():
    assert mapped("n_mels", {"value": 40}) is None and mapped("n_mels", {"values": [40]}) is None
    dist, convert = mapped("batch_size", {"distribution": "q_log_uniform_values", "min": 8, "max": 128, "q": 8})
    assert dist == FloatDistribution(8, 128, log=True) and convert(29.0) == 32 and isinstance(convert(29.0), int)
    dist, convert = mapped("stacked_win_lengths", {"values": [[400, 800], None]})
    assert dist.choices == ("[400, 800]", "null") and convert("[400, 800]") == [400, 800]
    with pytest.raises(SweepError, match="normal has no bounds"):
        mapped("learning_rate", {"distribution": "normal", "mu": 0.01, "sigma": 0.001})


def trials(path: Path, folder: Path) -> list[optuna.trial.FrozenTrial]:
    return open_study(load_sweep(path), folder).get_trials()


@pytest.mark.slow
def test_bayes_sweep_runs_count_trials_and_resumes_the_study(tmp_path, synth):
    path = write_sweep(tmp_path / "bo.yaml", {**TINY, **synth, "learning_rate": LR}, method="bayes")
    res, folder = tmp_path / "res", tmp_path / "res" / "bo"
    run = ["run", str(path), "--results-dir", str(res), "--wandb-mode", "disabled"]
    out = run_sweep_cli(*run, "--count", "4")
    assert out.returncode == 0, out.stdout + out.stderr
    recs = read_records(folder)
    assert len(recs) == 4 and {r["status"] for r in recs} == {"finished"}
    done = trials(path, folder)
    assert [t.state for t in done] == [optuna.trial.TrialState.COMPLETE] * 4
    assert sorted(t.value for t in done) == sorted(r["summary"]["accuracy"] for r in recs)
    assert {t.user_attrs["record"] for t in done} == {r["run_id"] for r in recs}
    before = {p: p.read_bytes() for p in folder.glob("*.json")}
    out = run_sweep_cli(*run, "--count", "2")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "4 complete before; 2 to run" in out.stdout
    assert all(p.read_bytes() == data for p, data in before.items())  # nothing run again
    recs = read_records(folder)
    assert len(recs) == 6 and len({r["config_id"] for r in recs}) == 6
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in trials(path, folder)) == 6


@pytest.mark.slow
def test_hyperband_stops_a_run_that_learns_nothing(tmp_path, synth):
    path = write_sweep(tmp_path / "hb.yaml", {**TINY, **synth, "n_epochs": 4, "learning_rate": LR},
                       method="bayes", early_terminate={"type": "hyperband", "min_iter": 1, "eta": 2})
    folder = tmp_path / "res" / "hb"
    study = open_study(load_sweep(path), folder)
    study.enqueue_trial({"learning_rate": 2e-2})  # learns: most clips right after an epoch
    study.enqueue_trial({"learning_rate": 1e-8})  # learns nothing: chance level
    out = run_sweep_cli("run", str(path), "--count", "2", "--results-dir", str(tmp_path / "res"),
                        "--wandb-mode", "disabled")
    assert out.returncode == 0, out.stdout + out.stderr
    good, bad = sorted(read_records(folder), key=lambda r: -r["config"]["learning_rate"])
    assert good["status"] == "finished" and len(good["history"]) == 4
    assert bad["status"] == "stopped" and bad["error"] is None, bad
    epoch = int(bad["reason"].removeprefix("pruned at epoch "))
    # the pruner's SIGTERM may land after one more epoch ended (they take 0.1 s here, the runner polls every
    # 0.2 s): the record keeps every epoch the run completed
    ran = [h["epoch"] for h in bad["history"]]
    assert epoch < 4 and len(ran) < 4 and ran == list(range(1, len(ran) + 1)) and len(ran) >= epoch
    progress = results.RunFiles.of(folder, bad["run_id"]).progress.read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in progress][:epoch] == list(range(1, epoch + 1))
    states = [t.state for t in trials(path, folder)]
    assert states == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED]
    assert f"stopped  pruned at epoch {epoch}" in out.stdout

    from analysis.runs import finished, load_local

    df = load_local(folder)
    assert sorted(df.status) == ["finished", "stopped"] and list(finished(df).run_id) == [good["run_id"]]


def test_a_stopped_run_counts_as_done_on_resume(tmp_path, capsys):
    path = write_sweep(tmp_path / "grid.yaml", {"trial_num": {"values": [1, 2]}})
    params = {"trial_num": 1}
    rec = results.Record.failed(run_config(params), "20260101-000000-aaaaaa", "Terminated: received SIGTERM", {}, 1.0,
                                [], reason="terminated").stopped("pruned at epoch 1", by="audiosweep.sweep")
    results.write_json_atomic(tmp_path / "res" / "grid" / "20260101-000000-aaaaaa.json", rec.to_dict())
    assert main(["run", str(path), "--results-dir", str(tmp_path / "res"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "1 finished before" in out and "1 to run" in out and out.count("stopped  ") == 1


def two_runners(tmp_path: Path, synth: dict, name: str, count: int, *extra: str) -> list[dict]:
    """Start two runners of one bayes sweep at once, ``count`` trials each; check that all 2 x count runs finished
    with distinct configurations, and return their records."""
    path = write_sweep(tmp_path / f"{name}.yaml", {**TINY, **synth, "learning_rate": LR}, method="bayes")
    cmd = [sys.executable, "-m", "audiosweep.sweep", "run", str(path), "--count", str(count), "--results-dir",
           str(tmp_path / "res"), "--wandb-mode", "disabled", *extra]
    runners = [subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for _ in range(2)]
    outs = [r.communicate(timeout=400)[0] for r in runners]
    assert [r.returncode for r in runners] == [0, 0], outs
    recs = read_records(tmp_path / "res" / name)
    assert len(recs) == 2 * count and {r["status"] for r in recs} == {"finished"}
    assert max(Counter(r["config_id"] for r in recs).values()) == 1
    return recs


# A train.py stand-in: records its configuration as finished with a random accuracy, in a second.
FAKE_TRAIN = """
import random, sys
from pathlib import Path
from audiosweep import results
from audiosweep.config import parse_args
cfg = parse_args(sys.argv[1:])[0].effective_dict()
rid = results.new_run_id()
row = {"epoch": 1, "train_loss": 1.0, "valid_loss": 1.0, "accuracy": random.random(), "time_s": 0.1}
rec = results.Record.finished(cfg, rid, [row], evaluated_epoch=1, accuracy=row["accuracy"], tta_accuracy=None,
                              norm_stats=None, pretrained_weights=False, n_train=1, n_valid=1, feature_s=0.0,
                              wall_time_s=0.1, env={}, classes=[], files={})
results.write_json_atomic(Path(cfg["results_dir"]) / f"{rid}.json", rec.to_dict())
"""


def three_runners(tmp_path: Path, name: str, *extra: str) -> tuple[list[dict], list[str]]:
    """Three runners of one bayes sweep over 6 configurations (3 n_mels x 2 trial_num) started at once, each
    asking for 5 runs on 2 workers; their records and outputs."""
    (tmp_path / "fake.py").write_text(FAKE_TRAIN)
    path = write_sweep(tmp_path / f"{name}.yaml", {"n_mels": {"values": [32, 48, 64]},
                                                    "trial_num": {"min": 1, "max": 2}},
                       method="bayes", program="fake.py")
    cmd = [sys.executable, "-m", "audiosweep.sweep", "run", str(path), "--count", "5", "--workers", "2",
           "--results-dir", str(tmp_path / "res"), "--wandb-mode", "disabled", *extra]
    runners = [subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for _ in range(3)]
    outs = [r.communicate(timeout=300)[0] for r in runners]
    assert [r.returncode for r in runners] == [0, 0, 0], outs
    return read_records(tmp_path / "res" / name), outs


@pytest.mark.slow
def test_three_runners_on_a_six_configuration_journal_study_run_each_configuration_once(tmp_path):
    recs, outs = three_runners(tmp_path, "six")
    assert len(recs) == 6 and len({r["config_id"] for r in recs}) == 6
    assert {r["status"] for r in recs} == {"finished"}
    assert sum("search space exhausted: all 6 configurations are done or running" in o for o in outs) >= 1
    done = trials(tmp_path / "six.yaml", tmp_path / "res" / "six")
    # a free configuration enqueued after a repeat may still wait when the space runs out: the next ask takes it
    waiting = [t for t in done if t.state == optuna.trial.TrialState.WAITING]
    assert all("enqueued" in t.user_attrs for t in waiting)
    ran = [t for t in done if "repeats" not in t.user_attrs and t not in waiting]
    assert sorted(t.user_attrs["record"] for t in ran) == sorted(r["run_id"] for r in recs)
    assert len(done) <= 12, len(done)  # a repeat is followed by a free configuration: few trials are wasted
    assert [p.name for p in (tmp_path / "res" / "six" / ".claims").iterdir()] == [".lock"]  # every claim released


@pytest.mark.slow
def test_two_runners_share_one_journal_without_repeating_a_configuration(tmp_path, synth):
    two_runners(tmp_path, synth, "two", 3)
    done = trials(tmp_path / "two.yaml", tmp_path / "res" / "two")
    assert len(done) == 6 and {t.state for t in done} == {optuna.trial.TrialState.COMPLETE}
    assert len({t.params["learning_rate"] for t in done}) == 6


def test_a_trial_left_running_by_a_runner_that_died_is_failed_on_the_next_start(tmp_path, capsys):
    from audiosweep.sweep.bayes import RUNNER, StudySource
    from audiosweep.sweep.runner import Options, Runner

    path = write_sweep(tmp_path / "stale.yaml", {"learning_rate": LR}, method="bayes")
    folder = tmp_path / "res" / "stale"
    study = open_study(load_sweep(path), folder)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = RUNNER.split(":")[0]
    for runner in (f"{host}:{dead.stdout.strip()}", RUNNER, f"elsewhere:{dead.stdout.strip()}"):
        study.ask().set_user_attr("runner", runner)
    sweep = load_sweep(path)
    Runner(sweep, StudySource(sweep, folder, count=0), Options(results_root=tmp_path / "res")).run()
    states = [t.state for t in open_study(load_sweep(path), folder).get_trials()]
    # this machine's dead runner: failed; a live one (this process) and one on another machine: left running
    assert states == [optuna.trial.TrialState.FAIL] + [optuna.trial.TrialState.RUNNING] * 2
    assert f"left running by runner pid {dead.stdout.strip()}" in capsys.readouterr().out


def test_a_bayes_studys_trials_run_over_the_recipe(tmp_path):
    from audiosweep.sweep.bayes import StudySource
    from audiosweep.sweep.runner import Options, RecordIndex, Runner

    (tmp_path / "base.yaml").write_text("n_mels: 64\nlearning_rate: 0.5\n")  # the sweep's learning_rate wins
    recipe = load_recipe(tmp_path / "base.yaml")
    sweep = load_sweep(write_sweep(tmp_path / "b.yaml", {"learning_rate": LR}, method="bayes"), recipe)
    folder = tmp_path / "res" / "b"
    source = StudySource(sweep, folder, count=1)
    [line] = source.begin(RecordIndex(folder), dry_run=True)
    assert f"({sweep.path} over recipe {recipe}): bayes" in line
    run = source.next_run()
    config = run_config(run.params, recipe)
    assert run.config_id == results.config_id(config) and config["n_mels"] == 64 and config["learning_rate"] < 0.05
    assert f"--config={recipe}" in Runner(sweep, source, Options(results_root=tmp_path / "res")).command(run)
