"""Sweep files, their expansion with W&B's semantics, the local runner (failures, resume) and the agent launcher."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml
from audiosweep.sweep.spec import REPO_ROOT, expand, load_sweep

from audiosweep import results
from audiosweep.config import parse_args
from audiosweep.sweep.cli import main

SWEEPS = sorted((REPO_ROOT / "sweeps").glob("*.yaml"))
TINY = {"allow_missing": True, "esc10": True, "arch": "simple_cnn", "pretrained": False, "sample_rate": 16000,
        "n_fft": 512, "win_length": 400, "hop_length": 320, "f_max": 8000, "n_epochs": 1, "batch_size": 16}


def write_sweep(path: Path, parameters: dict, **top) -> Path:
    spec = {"program": "train.py", "method": "grid", "metric": {"name": "accuracy", "goal": "maximize"}, **top,
            "parameters": {k: (v if isinstance(v, dict) else {"value": v}) for k, v in parameters.items()}}
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def records(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def run_cli(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "audiosweep.sweep", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> dict:
    from audiosweep.synthetic import make_synthetic_esc50

    root = tmp_path_factory.mktemp("synth")
    data = make_synthetic_esc50(root / "esc50", per_class_per_fold=2)
    return {"data_dir": str(data), "cache_dir": str(root / "cache")}


# --- the sweep files -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.name)
def test_every_sweep_file_is_valid(path):
    sweep = load_sweep(path)
    plan = expand(sweep)
    assert sweep.method == "grid" and sweep.raw["metric"] == {"name": "accuracy", "goal": "maximize"}
    assert plan.bounded and len(plan.runs) == len({r.config_id for r in plan.runs}) > 0
    if path.stem != "smoke":
        assert sweep.params["trial_num"].grid_values() == [1, 2, 3, 4, 5]


def test_check_cli_counts_match_the_readme(capsys):
    assert main(["check", *map(str, SWEEPS)]) == 0
    printed = dict(re.findall(r"sweeps/(\S+\.yaml): (\d+) runs", capsys.readouterr().out))
    table = {m[0]: m[1] for m in re.findall(r"^\| `(\S+\.yaml)` \|.*?\| +(\d+) \|",
                                            (REPO_ROOT / "sweeps" / "README.md").read_text(), re.M)}
    assert printed == table and set(printed) == {p.name for p in SWEEPS}


# --- expansion: W&B semantics, identity --------------------------------------------------------------------------


def test_grid_is_the_cartesian_product_with_constants(tmp_path):
    sweep = load_sweep(write_sweep(tmp_path / "g.yaml", {
        "n_mels": {"values": [64, 128, 64.0]},  # 64.0 is 64 for W&B: two values
        "trial_num": {"distribution": "int_uniform", "min": 1, "max": 3},  # inclusive
        "mix_up": {"distribution": "q_uniform", "min": 0, "max": 0.4, "q": 0.2},  # arange: 0, 0.2
        "arch": "resnet34"}))
    runs = expand(sweep).runs
    assert len(runs) == 2 * 3 * 2
    assert all(r.params["arch"] == "resnet34" for r in runs)
    # W&B iterates the parameters in sorted order, the last one fastest
    assert [(r.params["n_mels"], r.params["trial_num"]) for r in runs[:4]] == [(64, 1), (64, 2), (64, 3), (128, 1)]
    assert [r.params["mix_up"] for r in runs[5:7]] == [0.0, 0.2]
    assert len(expand(sweep, count=5).runs) == 5
    capped = load_sweep(write_sweep(tmp_path / "c.yaml", {"n_mels": {"values": [64, 128]},
                                                          "trial_num": {"values": [1, 2, 3]}}, run_cap=4))
    assert [r.params for r in expand(capped).runs] == [r.params for r in expand(capped, count=100).runs][:4]


def test_identity_ignores_key_order_and_matches_train_py(tmp_path):
    a = expand(load_sweep(write_sweep(tmp_path / "a.yaml", {"n_mels": {"values": [64, 128]}, "fold": 2,
                                                           "hop_length": 308})))
    b = expand(load_sweep(write_sweep(tmp_path / "b.yaml", {"fold": 2, "n_mels": {"values": [128, 64]}})))
    assert {r.config_id for r in a.runs} == {r.config_id for r in b.runs}  # 308 is the default hop
    cfg, _ = parse_args(["--fold", "2", "--results_dir", "elsewhere", "--n_mels=64"])
    assert results.config_id(cfg.to_dict()) == a.runs[0].config_id
    ms = expand(load_sweep(write_sweep(tmp_path / "m.yaml", {"hop_length_ms": 7, "fold": 2, "n_mels": 64})))
    assert ms.runs[0].config_id != a.runs[0].config_id  # 7 ms is 309 samples, another configuration


def test_random_is_seeded_bounded_and_within_the_distributions(tmp_path):
    sweep = load_sweep(write_sweep(tmp_path / "r.yaml", {
        "learning_rate": {"distribution": "log_uniform_values", "min": 1e-5, "max": 1e-2},
        "n_mels": {"distribution": "q_uniform", "min": 64, "max": 256, "q": 32},
        "hop_length": {"min": 200, "max": 400},  # int_uniform: both bounds integers
        "mix_up": {"values": [0.0, 0.1, 0.2], "probabilities": [0.5, 0.5, 0.0]},
        "f_max": {"distribution": "inv_log_uniform_values", "min": 8000.0, "max": 22050.0}},
        method="random", run_cap=30))
    plan = expand(sweep, seed=1)
    assert plan.bounded and len(plan.runs) == 30 and len({r.config_id for r in plan.runs}) == 30
    for p in (r.params for r in plan.runs):
        assert 1e-5 <= p["learning_rate"] <= 1e-2 and 8000 <= p["f_max"] <= 22050
        assert p["n_mels"] % 32 == 0 and isinstance(p["n_mels"], int) and 64 <= p["n_mels"] <= 256
        assert isinstance(p["hop_length"], int) and 200 <= p["hop_length"] <= 400 and p["mix_up"] in (0.0, 0.1)
    assert [r.params for r in expand(sweep, seed=1, count=5).runs] == [r.params for r in plan.runs[:5]]
    assert [r.params for r in expand(sweep, seed=2).runs] != [r.params for r in plan.runs]
    sweep.raw.pop("run_cap")
    assert not expand(sweep).bounded


def test_exponent_floats_survive_the_command_line(tmp_path):
    # an agent passes str(0.00001) = '1e-05', which YAML 1.1 alone reads as a string
    plan = expand(load_sweep(write_sweep(tmp_path / "e.yaml", {"learning_rate": {"values": [0.00001, 0.01]}})))
    assert [r.params["learning_rate"] for r in plan.runs] == [1e-05, 0.01]


@pytest.mark.parametrize("top, parameters, message", [
    ({}, {"n_mel": {"values": [64]}}, "unknown config key 'n_mel'; did you mean n_mels?"),
    ({}, {"n_fft": {"values": [1024, 4096]}, "win_length": 2205, "trial_num": {"values": [1, 2]}},
     "{n_fft: 1024, trial_num: 1}: win_length and n_fft: window length 2205 must be in 1..n_fft=1024"),
    ({"method": "grdi"}, {"n_mels": 64}, "method: 'grdi' is not one of grid, random, bayes"),
    ({"metric": {"name": "accuracy"}}, {"n_mels": 64}, "would look for the worst accuracy: set goal: maximize"),
    ({"metric": {"name": "acc", "goal": "maximize"}}, {"n_mels": 64}, "train.py does not log 'acc'"),
    ({"paramters": 1}, {"n_mels": 64}, "unknown top-level key 'paramters': did you mean parameters?"),
    ({"program": "nope.py"}, {"n_mels": 64}, "program: 'nope.py' not found"),
    ({}, {"normalize": {"values": ["global", "median"]}}, "normalize.values[1]: normalize: 'median' is not one"),
    ({}, {"learning_rate": {"min": 0.001, "max": 0.1}}, "grid search needs value, values, int_uniform or q_uniform"),
    ({"method": "random"}, {"batch_size": {"distribution": "uniform", "min": 8, "max": 64}},
     "batch_size is an integer key but uniform gives fractional numbers"),
    ({}, {"mix_up": 0.1, "arch": {"value": "resnet18", "q": 2}}, "key 'q' does not belong to a constant parameter"),
    ({"command": ["${env}", "${python}", "${program}", "${args}"]}, {"n_mels": 64}, "unknown macro '${python}'"),
])
def test_bad_sweeps_fail_with_clear_messages(tmp_path, capsys, top, parameters, message):
    path = write_sweep(tmp_path / "bad.yaml", parameters, **top)
    assert main(["check", str(path)]) == 1
    err = capsys.readouterr().err
    assert str(path) in err and message in err


def test_run_refuses_bayes_and_unbounded_random(tmp_path, capsys):
    bayes = write_sweep(tmp_path / "b.yaml", {"n_mels": {"values": [64, 128]}}, method="bayes")
    random = write_sweep(tmp_path / "r.yaml", {"n_mels": {"values": [64, 128]}}, method="random")
    assert main(["check", str(bayes), str(random)]) == 0
    out = capsys.readouterr().out
    assert "b.yaml: unbounded (bayes)" in out and "r.yaml: unbounded (random" in out
    assert main(["run", str(bayes), "--dry-run"]) == 2
    assert "method bayes needs W&B's sweep controller" in capsys.readouterr().err
    assert main(["run", str(random), "--dry-run"]) == 2
    assert "give --count N" in capsys.readouterr().err
    assert main(["run", str(random), "--dry-run", "--count", "2", "--results-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.count("--wandb_mode=disabled") == 2


# --- the local runner ----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_local_sweep_records_runs_and_reports_a_failing_one(tmp_path, synth):
    # valid_pct 0.01 passes the config's rules but leaves no validation clip: train.py fails on the data
    path = write_sweep(tmp_path / "mixed.yaml", {**TINY, **synth, "split": "stratified",
                                                 "valid_pct": {"values": [0.25, 0.01]},
                                                 "n_mels": {"values": [32, 40]}})
    out = run_cli("run", str(path), "--workers", "2", "--results-dir", str(tmp_path / "res"))
    assert out.returncode == 1, out.stdout + out.stderr
    recs = records(tmp_path / "res" / "mixed")
    assert Counter(r["status"] for r in recs) == {"finished": 2, "failed": 2}
    assert all(r["config"]["valid_pct"] == 0.25 for r in recs if r["status"] == "finished")
    assert all("0 validation clips" in r["error"] for r in recs if r["status"] == "failed")
    assert "2 of 4 runs finished" in out.stdout and out.stdout.count("failed: n_mels=") == 2
    logs = list((tmp_path / "res" / "mixed" / "logs").glob("*.log"))
    assert len(logs) == 4 and all("train.py --allow_missing=True" in p.read_text() for p in logs)


def test_runs_ending_without_a_record_are_recorded_and_retried_by_choice(tmp_path, capsys):
    (tmp_path / "vanish.py").write_text(
        "import os, signal, sys\n"
        "if '--trial_num=2' in sys.argv:\n    os.kill(os.getpid(), signal.SIGKILL)\n")  # trial 1: exit 0, no record
    path = write_sweep(tmp_path / "vanish.yaml", {"trial_num": {"values": [1, 2]}}, program="vanish.py")
    run = ["run", str(path), "--results-dir", str(tmp_path / "res")]
    assert main([*run, "--workers", "2"]) == 1
    recs = records(tmp_path / "res" / "vanish")
    assert sorted(r["exit_code"] for r in recs) == [-9, 0] and {r["status"] for r in recs} == {"failed"}
    assert all(r["written_by"] == "audiosweep.sweep" and Path(r["log"]).is_file() for r in recs)
    assert "killed by SIGKILL without a record" in capsys.readouterr().out
    assert main([*run, "--no-retry-failed"]) == 1
    assert capsys.readouterr().out.count("failed before, not rerun") == 2
    assert len(records(tmp_path / "res" / "vanish")) == 2
    assert main(run) == 1
    assert len(records(tmp_path / "res" / "vanish")) == 4  # retried, and the earlier records kept


def test_gpu_workers_get_their_gpu(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    (tmp_path / "gpu.py").write_text("import os, time\ntime.sleep(1)\n"
                                     "print('on gpu', os.environ['CUDA_VISIBLE_DEVICES'])\n")
    path = write_sweep(tmp_path / "gpu.yaml", {"trial_num": {"values": [1, 2, 3, 4]}}, program="gpu.py")
    assert main(["run", str(path), "--gpus", "3,7", "--runs-per-gpu", "2", "--results-dir", str(tmp_path)]) == 1
    logs = [p.read_text() for p in (tmp_path / "gpu" / "logs").glob("*.log")]
    assert sorted(re.search(r"on gpu (\d)", t)[1] for t in logs) == ["3", "3", "7", "7"]
    assert capsys.readouterr().out.count("exit status 0 without a record") == 8  # progress line + summary


def test_ctrl_c_stops_the_running_runs(tmp_path):
    (tmp_path / "slow.py").write_text("import time\ntime.sleep(60)\n")
    path = write_sweep(tmp_path / "slow.yaml", {"trial_num": {"values": [1, 2, 3]}}, program="slow.py")
    runner = subprocess.Popen([sys.executable, "-m", "audiosweep.sweep", "run", str(path), "--workers", "2",
                               "--results-dir", str(tmp_path / "res")], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    logs = tmp_path / "res" / "slow" / "logs"
    deadline = time.time() + 60
    while len(list(logs.glob("*.log"))) < 2 and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    runner.send_signal(signal.SIGINT)
    out, _ = runner.communicate(timeout=30)
    assert runner.returncode == 128 + signal.SIGINT
    assert "2 interrupted, 1 not started" in out and records(tmp_path / "res" / "slow") == []
    assert all("killed by SIGTERM" in p.read_text() for p in logs.glob("*.log"))


@pytest.mark.slow
def test_resume_after_killing_the_runner(tmp_path, synth):
    path = write_sweep(tmp_path / "resume.yaml", {**TINY, **synth, "n_mels": {"values": [32, 40]},
                                                  "trial_num": {"values": [1, 2]}})
    res = tmp_path / "res"
    cmd = [sys.executable, "-m", "audiosweep.sweep", "run", str(path), "--workers", "2", "--results-dir", str(res)]
    runner = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not list((res / "resume").glob("*.json")) and time.time() < deadline:
        time.sleep(0.2)
    runner.kill()  # SIGKILL: no chance to clean up
    runner.wait()
    time.sleep(1)
    before = {p: p.read_bytes() for p in (res / "resume").glob("*.json")}
    assert before
    if sys.platform.startswith("linux"):  # its runs die with it
        left = subprocess.run(["pgrep", "-f", f"results_dir={res}"], capture_output=True, text=True).stdout
        assert left.strip() == ""
    out = run_cli("run", str(path), "--workers", "2", "--results-dir", str(res))
    assert out.returncode == 0, out.stdout + out.stderr
    assert all(p.read_bytes() == data for p, data in before.items())  # never rewritten
    finished = Counter(r["config_id"] for r in records(res / "resume") if r["status"] == "finished")
    assert sorted(finished) == sorted(r.config_id for r in expand(load_sweep(path)).runs)
    assert set(finished.values()) == {1}
    assert run_cli("run", str(path), "--results-dir", str(res)).stdout.count("0 to run") == 1


# --- W&B agents ----------------------------------------------------------------------------------------------------


def test_agents_dry_run_prints_one_command_per_gpu(capsys, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert main(["agents", "me/esc50/abc123", "--gpus", "8", "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 8
    for i, line in enumerate(lines):
        assert re.fullmatch(rf"CUDA_VISIBLE_DEVICES={i} \S*wandb agent me/esc50/abc123 > "
                            rf"results/agent-logs/me_esc50_abc123/gpu{i}\.log 2>&1", line)
    assert main(["agents", "abc123", "--gpus", "0,2,5", "--count", "3", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert re.findall(r"CUDA_VISIBLE_DEVICES=(\d)", out) == ["0", "2", "5"] and out.count("agent --count 3") == 3
    assert main(["agents", "abc123", "--dry-run"]) == 2  # no GPU visible
    assert main(["agents", "not a sweep", "--gpus", "2", "--dry-run"]) == 2
    assert "not a W&B sweep id" in capsys.readouterr().err


def test_agents_get_their_gpu_and_ctrl_c(tmp_path):
    fake = tmp_path / "fake_wandb.py"
    fake.write_text("import os, signal, sys, time\n"
                    "def stop(*_):\n    print('stopping on GPU', os.environ['CUDA_VISIBLE_DEVICES'], flush=True)\n"
                    "    sys.exit(0)\n"
                    "signal.signal(signal.SIGINT, stop)\nprint('started', sys.argv[1:], flush=True)\n"
                    "time.sleep(60)\n")
    code = ("import sys, audiosweep.sweep.agents as a\n"
            f"a.wandb_executable = lambda: [sys.executable, {str(fake)!r}]\n"
            "from audiosweep.sweep.cli import main\n"
            f"sys.exit(main(['agents', 'abc123', '--gpus', '3,7', '--log-dir', {str(tmp_path / 'logs')!r}]))\n")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "CUDA_VISIBLE_DEVICES": "3,7"})
    logs = [tmp_path / "logs" / f"gpu{g}.log" for g in (3, 7)]
    deadline = time.time() + 60
    while not all(p.is_file() and "started" in p.read_text() for p in logs) and time.time() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGINT, out
    for gpu, log in zip((3, 7), logs, strict=True):
        text = log.read_text()
        assert "started ['agent', 'abc123']" in text and f"stopping on GPU {gpu}" in text
