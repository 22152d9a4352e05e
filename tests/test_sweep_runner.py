"""The local runner: records, failures, resume, GPU slots and Ctrl-C."""

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

from audiosweep.errors import SweepError
from audiosweep.sweep.cli import main
from audiosweep.sweep.spec import SWEEP_COPY, expand, load_sweep
from tests.conftest import REPO, read_records, run_sweep_cli, write_sweep

TINY = {"allow_missing": True, "esc10": True, "arch": "simple_cnn", "pretrained": False, "sample_rate": 16000,
        "n_fft": 512, "win_length": 400, "hop_length": 320, "f_max": 8000, "n_epochs": 1, "batch_size": 16}


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> dict:
    from audiosweep.synthetic import make_synthetic_esc50

    root = tmp_path_factory.mktemp("synth")
    data = make_synthetic_esc50(root / "esc50", per_class_per_fold=2)
    return {"data_dir": str(data), "cache_dir": str(root / "cache")}


@pytest.mark.slow
def test_local_sweep_records_runs_and_reports_a_failing_one(tmp_path, synth):
    # valid_pct 0.01 passes the config's rules but leaves no validation clip: train.py fails on the data
    path = write_sweep(tmp_path / "mixed.yaml", {**TINY, **synth, "split": "stratified",
                                                 "valid_pct": {"values": [0.25, 0.01]},
                                                 "n_mels": {"values": [32, 40]}})
    out = run_sweep_cli("run", str(path), "--workers", "2", "--results-dir", str(tmp_path / "res"))
    assert out.returncode == 1, out.stdout + out.stderr
    recs = read_records(tmp_path / "res" / "mixed")
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
    recs = read_records(tmp_path / "res" / "vanish")
    assert sorted(r["exit_code"] for r in recs) == [-9, 0] and {r["status"] for r in recs} == {"failed"}
    assert all(r["written_by"] == "audiosweep.sweep" and Path(r["log"]).is_file() for r in recs)
    assert all(list(r)[-4:] == ["env", "log", "exit_code", "written_by"] and r["history"] == [] for r in recs)
    assert all(r["summary"]["epochs"] is None and r["summary"]["wall_time_s"] > 0 for r in recs)  # epochs unknown
    assert {f"{r['run_id']}.json" for r in recs} == {p.name for p in (tmp_path / "res" / "vanish").glob("*.json")}
    assert "killed by SIGKILL without a record" in capsys.readouterr().out
    assert main([*run, "--no-retry-failed"]) == 1
    assert capsys.readouterr().out.count("failed before, not rerun") == 2
    assert len(read_records(tmp_path / "res" / "vanish")) == 2
    assert main(run) == 1
    assert len(read_records(tmp_path / "res" / "vanish")) == 4  # retried, and the earlier records kept


def test_gpu_workers_get_their_gpu(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,7")  # the GPUs visible to the runner
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
                               "--results-dir", str(tmp_path / "res")], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    logs = tmp_path / "res" / "slow" / "logs"
    deadline = time.time() + 60
    while len(list(logs.glob("*.log"))) < 2 and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    runner.send_signal(signal.SIGINT)
    out, _ = runner.communicate(timeout=30)
    assert runner.returncode == 128 + signal.SIGINT
    assert "2 interrupted, 1 not started" in out and read_records(tmp_path / "res" / "slow") == []
    assert all("killed by SIGTERM" in p.read_text() for p in logs.glob("*.log"))


@pytest.mark.slow
def test_resume_after_killing_the_runner(tmp_path, synth):
    path = write_sweep(tmp_path / "resume.yaml", {**TINY, **synth, "n_mels": {"values": [32, 40]},
                                                  "trial_num": {"values": [1, 2]}})
    res = tmp_path / "res"
    cmd = [sys.executable, "-m", "audiosweep.sweep", "run", str(path), "--workers", "2", "--results-dir", str(res)]
    runner = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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
    out = run_sweep_cli("run", str(path), "--workers", "2", "--results-dir", str(res))
    assert out.returncode == 0, out.stdout + out.stderr
    assert all(p.read_bytes() == data for p, data in before.items())  # never rewritten
    finished = Counter(r["config_id"] for r in read_records(res / "resume") if r["status"] == "finished")
    assert sorted(finished) == sorted(r.config_id for r in expand(load_sweep(path)).runs)
    assert set(finished.values()) == {1}
    assert run_sweep_cli("run", str(path), "--results-dir", str(res)).stdout.count("0 to run") == 1


@pytest.mark.slow
def test_a_recipe_run_records_the_config_id_check_runs_printed(tmp_path, synth):
    recipe = tmp_path / "base.yaml"
    recipe.write_text(yaml.safe_dump({**TINY, "n_mels": 40, "normalize": True, "top_db": None,
                                      "stft_normalized": True}))
    path = write_sweep(tmp_path / "recipe.yaml", {**synth, "normalize": False, "trial_num": {"values": [3]}})
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    check = run_sweep_cli("check", str(path), "--config", str(recipe), "--runs", env=env)
    assert check.returncode == 0, check.stderr
    [planned] = [json.loads(line) for line in check.stdout.splitlines()]
    out = run_sweep_cli("run", str(path), "--config", str(recipe), "--results-dir", str(tmp_path / "res"), env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    [rec] = read_records(tmp_path / "res" / "recipe")
    assert rec["status"] == "finished" and rec["config_id"] == planned["config_id"]
    assert {k: rec["config"][k] for k in ("n_mels", "normalize", "top_db", "stft_normalized", "trial_num")} == {
        "n_mels": 40, "normalize": "none", "top_db": None, "stft_normalized": True, "trial_num": 3}
    again = run_sweep_cli("run", str(path), "--config", str(recipe), "--results-dir", str(tmp_path / "res"), env=env)
    assert "1 finished before, 0 failed before (rerun), 0 to run" in again.stdout


@pytest.mark.parametrize("text", [b'{"config": "x", "history": [], "summary": {}, "status": "finished"}',
                                  b'{"config": {}, "history": null, "summary": {}, "status": "failed"}',
                                  b"\xff\xfe not json", b'["a list"]'])
def test_a_malformed_record_never_blocks_a_resume(tmp_path, capsys, text):
    (tmp_path / "ok.py").write_text("")
    path = write_sweep(tmp_path / "bad.yaml", {"trial_num": {"values": [1]}}, program="ok.py")
    folder = tmp_path / "res" / "bad"
    folder.mkdir(parents=True)
    (folder / "20260101-000000-bad000.json").write_bytes(text)
    run = ["run", str(path), "--results-dir", str(tmp_path / "res")]
    assert main([*run, "--dry-run"]) == 0
    assert main(run) == 1  # ok.py writes no record: the runner writes a failed one for it
    out = capsys.readouterr().out
    assert out.count("20260101-000000-bad000.json: ") == 2 and "left out" in out


def test_the_sweep_file_is_kept_beside_its_records(tmp_path, capsys):
    (tmp_path / "ok.py").write_text("")
    path = write_sweep(tmp_path / "keep.yaml", {"trial_num": {"values": [1]}, "mix_up": {"min": 0.0, "max": 0.4}},
                       program="ok.py", method="random", run_cap=1)
    run = ["run", str(path), "--results-dir", str(tmp_path / "res")]
    assert main([*run, "--dry-run"]) == 0
    assert not (tmp_path / "res" / "keep" / SWEEP_COPY).exists()  # a dry run writes nothing
    assert main(run) == 1  # ok.py writes no record
    assert yaml.safe_load((tmp_path / "res" / "keep" / SWEEP_COPY).read_text()) == yaml.safe_load(path.read_text())


def test_the_lock_is_taken_before_any_record_is_read(tmp_path, monkeypatch):
    from audiosweep.sweep import runner as runner_module
    from audiosweep.sweep.plan import PlanSource

    path = write_sweep(tmp_path / "race.yaml", {"trial_num": {"values": [1]}})
    sweep = load_sweep(path)
    opts = runner_module.Options(results_root=tmp_path)
    read = []
    monkeypatch.setattr(runner_module.RecordIndex, "refresh", lambda self: read.append(1))
    with runner_module.sweep_lock(tmp_path / "race"), pytest.raises(SweepError, match="another runner"):
        runner_module.Runner(sweep, PlanSource(sweep, expand(sweep), opts.folder(sweep)), opts).run()
    assert read == []


def test_a_link_planted_at_the_sweeps_lock_is_one_line_and_not_written_through(tmp_path, capsys):
    path = write_sweep(tmp_path / "linked.yaml", {"trial_num": {"values": [1]}})
    decoy = tmp_path / "decoy.txt"
    decoy.write_text("keep me")
    folder = tmp_path / "results" / "linked"
    folder.mkdir(parents=True)
    (folder / ".sweep.lock").symlink_to(decoy)
    assert main(["run", str(path), "--results-dir", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err
    assert "is a symbolic link, not written through" in err and "Traceback" not in err
    assert decoy.read_text() == "keep me"


class ShortSource:
    """A source of ``runs`` that has no more after ``n`` of them; keeps what it is told."""

    shared, failed_before = True, []

    def __init__(self, runs: list, n: int):
        self.runs, self.n, self.told = list(runs), n, []

    def begin(self, index, dry_run: bool) -> list[str]:
        return ["begun"]

    def dry_run(self, command) -> list[str]:
        return []

    def left(self) -> int:
        return len(self.runs)

    def next_run(self):
        if self.n == 0:
            self.runs = []
            return None
        self.n -= 1
        return self.runs.pop(0)

    def tell(self, run, rec, interrupted: bool) -> None:
        self.told.append((run.config_id, rec, interrupted))

    def end_report(self, counts: dict, interrupted: int) -> str:
        return f"ended {counts['failed']} failed, {interrupted} interrupted"


def composed(tmp_path: Path, program: str, source_n: int, pruner=None) -> tuple[int, ShortSource, list]:
    """A sweep of three runs of ``program`` on two workers, from a ShortSource giving ``source_n`` of them."""
    from audiosweep.sweep.runner import Options, Runner

    (tmp_path / "prog.py").write_text(program)
    sweep = load_sweep(write_sweep(tmp_path / "comp.yaml", {"trial_num": {"values": [1, 2, 3]}}, program="prog.py"))
    runs = expand(sweep).runs
    source = ShortSource(runs, source_n)
    code = Runner(sweep, source, Options(results_root=tmp_path / "res", slots=[None, None]), pruner).run()
    return code, source, runs


def test_the_runner_asks_its_source_until_it_has_no_more_and_tells_it_every_run(tmp_path, capsys):
    code, source, runs = composed(tmp_path, "", 2)  # writes no record: each run fails
    assert code == 1 and sorted(source.told) == sorted((r.config_id, None, False) for r in runs[:2])
    out = capsys.readouterr().out
    assert out.startswith("begun\n") and "ended 2 failed, 0 interrupted" in out
    assert len(read_records(tmp_path / "res" / "comp")) == 2


class StopAll:
    """A pruner stopping every run it sees at epoch 3; keeps the ended runs' records it is given."""

    def __init__(self):
        self.stopped, self.ended = set(), []

    def watch(self, jobs) -> list:
        stop = [(job, 3) for job in jobs if job.run.config_id not in self.stopped]
        self.stopped |= {job.run.config_id for job, _ in stop}
        return stop

    def finished(self, job, new: list) -> None:
        self.ended.append((job.run.config_id, new))


def test_the_runner_stops_what_its_pruner_says(tmp_path, capsys):
    pruner = StopAll()
    code, source, runs = composed(tmp_path, "import time\ntime.sleep(60)\n", 1, pruner)
    first = runs[0].config_id
    assert code == 1 and pruner.ended == [(first, [])] and source.told == [(first, None, False)]
    out = capsys.readouterr().out
    assert "pruning trial_num=1 at epoch 3" in out and "killed by SIGTERM without a record" in out


def test_eta_from_the_durations_of_finished_runs():
    from audiosweep.sweep.runner import eta_seconds, eta_text

    assert eta_seconds([], [5.0], pending=3, workers=1) is None  # nothing finished yet: no estimate
    assert eta_seconds([60.0, 120.0], [], pending=4, workers=1) == 360  # 4 runs of 90 s, one at a time
    assert eta_seconds([100.0], [30.0, 50.0], pending=4, workers=2) == (4 * 100 + 70 + 50) / 2
    assert eta_seconds([100.0], [30.0], pending=0, workers=4) == 70  # the last run: idle workers do not help
    assert eta_seconds([10.0], [50.0], pending=0, workers=1) == 0  # running past the mean
    assert eta_seconds([10.0], [], pending=0, workers=2) is None  # all done
    assert [eta_text(s) for s in (None, 42.4, 59.6, 200.0)] == ["", "about 42 s left", "about 1 min left",
                                                                 "about 3 min left"]


def test_eta_before_any_run_ended_from_the_epochs_of_the_running_ones():
    from audiosweep.sweep.runner import eta_seconds

    # Two running runs, one projected to take 100 s (40 s in), one before its first epoch (the mean: 100 s).
    assert eta_seconds([], [40.0, 10.0], pending=2, workers=2, projected=[100.0, None]) == (2 * 100 + 60 + 90) / 2
    assert eta_seconds([], [40.0], pending=1, workers=1, prior=500.0, projected=[100.0]) == 100 + 60  # epochs win
    assert eta_seconds([], [40.0], pending=1, workers=1, prior=500.0, projected=[None]) == 500 + 460  # the prior
    assert eta_seconds([200.0], [40.0], pending=1, workers=1, projected=[100.0]) == 200 + 60  # ended runs: the mean


def test_local_runs_are_grouped_named_and_tagged_for_wandb(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("WANDB_SWEEP_ID", raising=False)
    (tmp_path / "env.py").write_text("import os\nfor k in ('WANDB_RUN_GROUP', 'WANDB_NAME', 'WANDB_TAGS', "
                                     "'AUDIOSWEEP_SWEEP'):\n    print(k, '=', os.environ.get(k), sep='')\n")
    path = write_sweep(tmp_path / "envs.yaml", {"trial_num": {"values": [1, 2]}, "n_mels": 40}, program="env.py")
    run = ["run", str(path), "--results-dir", str(tmp_path / "res")]
    assert main([*run, "--dry-run"]) == 0
    assert capsys.readouterr().out.count("--wandb_mode=auto") == 2  # the default, as train.py's
    assert main(run) == 1  # env.py writes no record
    logs = sorted(p.read_text() for p in (tmp_path / "res" / "envs" / "logs").glob("*.log"))
    assert all("WANDB_RUN_GROUP=envs\n" in t and "WANDB_TAGS=envs,audiosweep-local\n" in t
               and "AUDIOSWEEP_SWEEP=envs\n" in t for t in logs)
    assert sorted(re.search(r"WANDB_NAME=(.*)", t)[1] for t in logs) == ["trial_num=1", "trial_num=2"]
    assert re.search(r"about \d+ s left", capsys.readouterr().err)  # the ETA, once the first run ended
    monkeypatch.setenv("WANDB_SWEEP_ID", "abc123")  # under a W&B agent, W&B groups the runs itself
    assert main(run) == 1
    logs = [p.read_text() for p in (tmp_path / "res" / "envs" / "logs").glob("*.log")]
    assert all(t.count("WANDB_RUN_GROUP=None") == 1 and t.count("AUDIOSWEEP_SWEEP=None") == 1 for t in logs)


@pytest.mark.parametrize("cores, workers, threads", [(2, 1, 2), (8, 3, 2), (2, 4, 1), (16, 2, 8)])
def test_each_run_gets_the_cores_it_may_use_shared_by_the_workers(tmp_path, monkeypatch, cores, workers, threads):
    """OMP_NUM_THREADS of a run: the cores of the runner's CPU affinity (not the machine's count) divided by the
    concurrent runs; one the user set is kept."""
    from audiosweep.sweep import procs
    from audiosweep.sweep import runner as runner_module
    from audiosweep.sweep.plan import PlanSource

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(procs.os, "sched_getaffinity", lambda pid: set(range(cores)))
    monkeypatch.setattr(procs.os, "cpu_count", lambda: 64)
    sweep = load_sweep(write_sweep(tmp_path / "t.yaml", {"trial_num": {"values": [1]}}))
    opts = runner_module.Options(results_root=tmp_path, slots=[None] * workers)
    runner = runner_module.Runner(sweep, PlanSource(sweep, expand(sweep), opts.folder(sweep)), opts)
    assert runner.env(None)["OMP_NUM_THREADS"] == str(threads)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert runner.env(None)["OMP_NUM_THREADS"] == "3"


def test_a_data_dir_typo_refuses_the_sweep_once_before_any_run(tmp_path, capsys):
    """Before: each run of the sweep was refused by train.py in turn (a failed record each), until --max_failures."""
    typo = tmp_path / "esc50-slcie"
    path = write_sweep(tmp_path / "typo.yaml", {**TINY, "data_dir": str(typo), "trial_num": {"values": [1, 2, 3]}})
    run = ["run", str(path), "--results_dir", str(tmp_path / "res")]
    assert main(run) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"data_dir {typo} does not exist: check the path, or pass --download true" in err
    assert not typo.exists() and not read_records(tmp_path / "res" / "typo")
    assert main([*run, "--dry_run"]) == 0  # planning only: nothing is read


def test_gpu_ids_that_are_not_visible_are_refused_unless_dry_run(tmp_path, capsys, monkeypatch):
    """Before: --gpus 0,1 on a machine without a GPU was accepted silently (runs started on the CPU)."""
    monkeypatch.setattr("audiosweep.sweep.agents.visible_gpus", lambda: [])
    (tmp_path / "ok.py").write_text("")
    path = write_sweep(tmp_path / "gpu.yaml", {"trial_num": {"values": [1, 2]}}, program="ok.py")
    run = ["run", str(path), "--gpus", "0,1", "--results-dir", str(tmp_path / "res")]
    assert main(run) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--gpus 0,1: GPU 0,1 not visible here (visible: none)" in err
    assert not (tmp_path / "res").exists()
    assert main([*run, "--dry-run"]) == 0  # planning for another machine
    monkeypatch.setattr("audiosweep.sweep.agents.visible_gpus", lambda: ["0"])
    assert main(run) == 2 and "GPU 1 not visible here (visible: 0)" in capsys.readouterr().err


def failing_program(tmp_path, errors: dict[int, str]) -> Path:
    """A program that fails (exit 1, no record) with ``errors[trial_num]`` as its last line, or succeeds (exit 0,
    writing a finished-looking nothing: the runner records it failed too, 'exit status 0') for trials not listed."""
    prog = tmp_path / "fail.py"
    prog.write_text("import sys\n"
                    f"errors = {errors!r}\n"
                    "trial = int(next(a for a in sys.argv if a.startswith('--trial_num=')).split('=')[1])\n"
                    "print(errors.get(trial, 'ok'))\n"
                    "sys.exit(1 if trial in errors else 0)\n")
    return prog


def test_the_runner_stops_after_n_runs_in_a_row_fail_the_same_way(tmp_path, capsys):
    """Before: offline, every run of the sweep failed the same way and the runner kept starting more."""
    errors = {t: f"DownloadError: cannot reach 127.0.0.1:{9000 + t} (run {t})" for t in range(1, 7)}
    failing_program(tmp_path, errors)
    path = write_sweep(tmp_path / "offline.yaml", {"trial_num": {"values": list(range(1, 7))}}, program="fail.py")
    run = ["run", str(path), "--results-dir", str(tmp_path / "res")]
    assert main([*run, "--max-failures", "2"]) == 1
    out = capsys.readouterr().out
    recs = read_records(tmp_path / "res" / "offline")
    assert len(recs) == 2 and {r["status"] for r in recs} == {"failed"}
    stop = [line for line in out.splitlines() if line.startswith("stopped after")]
    assert stop == ["stopped after 2 runs in a row failed with the same error: fail.py ended (exit status 1) without "
                    "writing a result record; last log lines: DownloadError: cannot reach 127.0.0.1:9002 (run 2). "
                    "Fix that and run the same command again to resume (--max_failures 0: never stop)"]
    assert "4 not started" in out
    assert main([*run, "--max-failures", "0"]) == 1  # never stops: every run, the 2 failed ones again
    assert len(read_records(tmp_path / "res" / "offline")) == 2 + 6 and "stopped after" not in capsys.readouterr().out


def test_different_errors_or_a_success_between_them_never_stop_the_sweep(tmp_path, capsys):
    failing_program(tmp_path, {1: "ValueError: one", 2: "KeyError: two", 3: "ValueError: one", 5: "ValueError: one",
                               6: "ValueError: one"})  # trial 4 succeeds in between
    path = write_sweep(tmp_path / "mixed.yaml", {"trial_num": {"values": list(range(1, 7))}}, program="fail.py")
    assert main(["run", str(path), "--results-dir", str(tmp_path / "res"), "--max-failures", "3"]) == 1
    assert len(read_records(tmp_path / "res" / "mixed")) == 6 and "stopped after" not in capsys.readouterr().out


@pytest.mark.slow
def test_an_offline_sweep_stops_after_three_identical_download_failures(tmp_path):
    """train.py runs with the dataset at a closed port of 127.0.0.1: 3 failed records of 5 runs, one clear line."""
    path = write_sweep(tmp_path / "offline.yaml", {**TINY, "n_mels": 32, "data_dir": str(tmp_path / "data"),
                                                   "download": True, "cache_dir": str(tmp_path / "cache"),
                                                   "download_url": "http://127.0.0.1:9/master.zip",
                                                   "trial_num": {"values": [1, 2, 3, 4, 5]}})
    out = run_sweep_cli("run", str(path), "--results-dir", str(tmp_path / "res"), "--wandb-mode", "disabled",
                        env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 1, out.stdout + out.stderr
    recs = read_records(tmp_path / "res" / "offline")
    assert len(recs) == 3 and all(r["status"] == "failed" and "Connection refused" in r["error"] for r in recs)
    assert out.stdout.splitlines()[-1].startswith("stopped after 3 runs in a row failed with the same error: "
                                                  "could not download http://127.0.0.1:9/master.zip "
                                                  "after 1 attempt")


# A train.py stand-in: a resumed run (--resume) finishes under the run id it continues; any other run is killed
# (SIGKILL) after its first epoch's progress row and checkpoint, without a record.
RESUMING_TRAIN_PY = """import json, os, signal, sys
from audiosweep import results
from audiosweep.config import parse_args
cfg, _ = parse_args(sys.argv[1:])
if not cfg.resume:
    files = results.RunFiles.of(cfg.results_dir, f"k{cfg.trial_num}")
    files.progress.write_text(json.dumps({"epoch": 1, "launch": os.environ[results.LAUNCH_ENV]}) + "\\n")
    files.checkpoint.write_bytes(b"")
    os.kill(os.getpid(), signal.SIGKILL)
row = {"epoch": 1, "train_loss": 1.0, "valid_loss": 1.0, "accuracy": 0.5, "time_s": 1.0}
rec = results.Record.finished(cfg.effective_dict(), cfg.resume, [row], evaluated_epoch=1, accuracy=0.5,
    tta_accuracy=None, norm_stats=None, pretrained_weights=False, n_train=1, n_valid=1, feature_s=0.0,
    wall_time_s=1.0, env={}, classes=[], files={}, resumed_from_epoch=1)
rec.write(results.RunFiles.of(cfg.results_dir, cfg.resume).record)
"""


def test_a_rerun_of_an_interrupted_run_with_a_checkpoint_resumes_it(tmp_path, capsys, monkeypatch):
    from audiosweep import results
    from audiosweep.sweep.spec import run_config

    monkeypatch.setenv("PYTHONPATH", str(REPO))
    (tmp_path / "stand-in.py").write_text(RESUMING_TRAIN_PY)
    path = write_sweep(tmp_path / "pre.yaml", {"trial_num": {"values": [1, 2]}}, program="train.py",
                       command=["${env}", "${interpreter}", str(tmp_path / "stand-in.py"), "${args}"])
    folder = tmp_path / "res" / "pre"
    folder.mkdir(parents=True)
    sweep = load_sweep(path)
    first = expand(sweep).runs[0]  # trial 1, preempted after an epoch: a failed record and its checkpoint
    config = run_config({**first.params, "results_dir": str(folder), "wandb_mode": "auto"}, sweep.recipe)
    rec = results.Record.failed(config, "r1", "Terminated: received SIGTERM", {}, 1.0, [], reason="terminated")
    results.write_json_atomic(folder / "r1.json", rec.to_dict())
    (folder / "r1.ckpt.pt").write_bytes(b"")
    run = ["run", str(path), "--results-dir", str(tmp_path / "res")]
    assert main([*run, "--dry-run"]) == 0
    listed = capsys.readouterr().out
    assert listed.count("--resume=r1") == 1 and re.search(r"trial_num=1\b.*\n.*--resume=r1", listed)
    assert main(run) == 1  # trial 2 is killed after its first epoch
    out = capsys.readouterr().out
    assert "resuming trial_num=1 from the checkpoint of run r1 (--resume r1)" in out and "1 of 2 runs finished" in out
    recs = {r["run_id"]: r for r in read_records(folder)}
    assert recs["r1"]["status"] == "finished" and recs["r1"]["resumed_from_epoch"] == 1 and len(recs) == 2
    assert recs["k2"]["status"] == "failed" and recs["k2"]["exit_code"] == -9  # written beside its checkpoint
    assert main(run) == 0
    assert "resuming trial_num=2 from the checkpoint of run k2 (--resume k2)" in capsys.readouterr().out
    assert [r["status"] for r in read_records(folder)] == ["finished", "finished"]
