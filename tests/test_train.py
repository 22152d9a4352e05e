"""End-to-end runs of train.py: learning on synthetic data, determinism, the real slice, failures, W&B offline."""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision

import train
from audiosweep.config import FIELDS
from audiosweep.results import config_id
from tests.conftest import REPO, SLICE, TINY, fill, read_records

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def run(tmp_path, synth_root, cache_dir, *extra, name="res"):
    out = tmp_path / name
    argv = ["--data_dir", str(synth_root), "--allow_missing", "true", "--esc10", "true", "--cache_dir",
            str(cache_dir), "--results_dir", str(out), *TINY, *extra]
    code = train.main(argv)
    records = read_records(out)
    assert len(records) == 1
    return code, records[0], out


# A record's fields in the order train.py writes them.
RECORD_FIELDS = ["record_version", "run_id", "config_id", "status", "error", "config", "history", "summary", "env",
                 "reason", "classes", "files"]


def check_record(rec):
    assert list(rec) == RECORD_FIELDS and rec["config_id"] == config_id(rec["config"])
    assert set(rec["config"]) == set(FIELDS)
    assert rec["status"] == "finished" and rec["error"] is None and rec["reason"] is None
    assert len(rec["history"]) == rec["summary"]["epochs"] >= 1
    for row in rec["history"]:
        assert set(row) >= {"epoch", "train_loss", "valid_loss", "accuracy"}
    s = rec["summary"]
    assert 0 <= s["accuracy"] <= 1 and s["best_accuracy"] >= s["accuracy"] and s["wall_time_s"] > 0
    assert s["best_accuracy"] == max(r["accuracy"] for r in rec["history"])
    assert rec["config"]["checkpoint"] == "best" or s["evaluated_epoch"] == len(rec["history"])
    evaluated = rec["history"][s["evaluated_epoch"] - 1]
    assert (s["train_loss"], s["valid_loss"]) == (evaluated["train_loss"], evaluated["valid_loss"])
    env = rec["env"]
    assert env["device"] == "cpu" and env["packages"]["torch"] == torch.__version__.split("+")[0]
    assert env["dataset_fingerprint"] and "git_commit" in env


@pytest.mark.slow
def test_learns_synthetic_data(tmp_path, synth_root, cache_dir):
    code, rec, out = run(tmp_path, synth_root, cache_dir, "--n_epochs", "3", "--mix_up", "0")
    assert code == 0
    check_record(rec)
    assert rec["summary"]["accuracy"] >= 0.9, rec["history"]
    preds = np.load(out / f"{rec['run_id']}.preds.npz")
    assert preds["probs"].shape == (40, 10) and len(preds["classes"]) == 10 and len(preds["filenames"]) == 40
    assert np.isclose((preds["probs"].argmax(1) == preds["targets"]).mean(), rec["summary"]["accuracy"])


@pytest.mark.slow
def test_same_config_and_seed_give_same_metrics(tmp_path, synth_root, cache_dir):
    args = ("--n_epochs", "2", "--split", "stratified", "--trial_num", "3")
    _, a, _ = run(tmp_path, synth_root, cache_dir, *args, name="a")
    _, b, _ = run(tmp_path, synth_root, cache_dir, *args, name="b")
    _, c, _ = run(tmp_path, synth_root, cache_dir, "--n_epochs", "2", "--split", "stratified", "--trial_num", "4",
                  name="c")
    strip = [{k: v for k, v in r.items() if k != "time_s"} for r in a["history"]]
    assert strip == [{k: v for k, v in r.items() if k != "time_s"} for r in b["history"]]
    assert strip != [{k: v for k, v in r.items() if k != "time_s"} for r in c["history"]]


@pytest.mark.slow
def test_failure_is_recorded_not_lost(tmp_path, cache_dir):
    out = tmp_path / "res"
    (out).mkdir()
    (out / "earlier.json").write_text('{"kept": true}')
    code = train.main(["--data_dir", str(tmp_path / "nowhere"), "--download", "true", "--download_url",
                       "http://127.0.0.1:9/esc50.zip",
                       "--results_dir", str(out), "--cache_dir", str(cache_dir), *TINY])
    assert code == 1
    records = [json.loads(p.read_text()) for p in out.glob("2*.json")]
    assert len(records) == 1 and records[0]["status"] == "failed" and records[0]["reason"] == "error"
    assert "127.0.0.1:9" in records[0]["error"] and "Error:" not in records[0]["error"]  # our error: no class name
    assert list(records[0]) == RECORD_FIELDS and records[0]["history"] == [] and records[0]["files"] == {}
    summary = records[0]["summary"]
    assert summary["epochs"] == 0 and summary["wall_time_s"] > 0 and summary["accuracy"] is None
    assert set(records[0]["config"]) == set(FIELDS)
    assert json.loads((out / "earlier.json").read_text()) == {"kept": True}
    assert not list(out.glob(".*tmp"))


@pytest.mark.slow
def test_wandb_offline_run_writes_wandb_files(tmp_path, synth_root, cache_dir, capfd):
    """The offline run's folder is written; W&B's run history and summary reach the console only when asked."""
    code, rec, out = run(tmp_path, synth_root, cache_dir, "--n_epochs", "1", "--wandb_mode", "offline")
    assert code == 0
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and rec["run_id"] in runs[0].name
    assert list(runs[0].glob("run-*.wandb"))
    console = "".join(capfd.readouterr())
    assert "Run summary" not in console and "Run history" not in console
    assert f"wandb: Run data is saved locally in {out / 'wandb'}" in console  # where to `wandb sync` from
    code, rec, out = run(tmp_path, synth_root, cache_dir, "--n_epochs", "1", "--wandb_mode", "offline",
                         "--wandb-verbose", "true", name="verbose")
    console = "".join(capfd.readouterr())
    assert code == 0 and "wandb: Run summary:" in console and "wandb: Run history:" in console
    assert rec["config"]["wandb_verbose"] is True


@pytest.mark.slow
def test_pretrained_resnet_fine_tunes(tmp_path, synth_root, cache_dir, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    url = torchvision.models.ResNet18_Weights.DEFAULT.url
    ckpt = tmp_path / "torch" / "hub" / "checkpoints" / url.rsplit("/", 1)[1]
    ckpt.parent.mkdir(parents=True)
    torch.save(torchvision.models.resnet18().state_dict(), ckpt)
    code, rec, _ = run(tmp_path, synth_root, cache_dir, "--arch", "resnet18", "--pretrained", "true",
                       "--n_epochs", "1", "--freeze_epochs", "1", "--batch_size", "32", "--n_mels", "32")
    assert code == 0
    check_record(rec)
    assert rec["summary"]["epochs"] == 2  # one frozen epoch, then one with all layers
    # the printed epochs (one line each: stdout is no terminal here) are numbered as in the record: 1-based,
    # across the frozen and unfrozen phases
    printed = [line.split()[1] for line in capsys.readouterr().out.splitlines() if re.match(r"epoch \d+ ", line)]
    assert printed == ["1", "2"] == [str(r["epoch"]) for r in rec["history"]]


def test_record_holds_effective_values(tmp_path, synth_root, cache_dir):
    """simple_cnn has no pretrained weights: whatever was asked, the record says what the run did."""
    code, rec, _ = run(tmp_path, synth_root, cache_dir, "--n_epochs", "1", "--pretrained", "true",
                       "--freeze_epochs", "3")
    assert code == 0 and rec["summary"]["pretrained_weights"] is False
    assert (rec["config"]["pretrained"], rec["config"]["freeze_epochs"]) == (False, 0)


@pytest.mark.slow
@pytest.mark.skipif(not (SLICE / "meta" / "esc50.csv").is_file(), reason="../shared/esc50-slice not present")
def test_real_slice_run_via_cli(tmp_path, cache_dir):
    out = tmp_path / "res"
    proc = subprocess.run(
        [sys.executable, "train.py", "--data_dir", str(SLICE), "--allow_missing", "true", "--split", "stratified",
         "--arch", "simple_cnn", "--n_mels", "64", "--n_epochs", "2", "--wandb_mode", "disabled",
         "--sample_rate", "22050", "--f_max", "11025", "--cache_dir", str(cache_dir), "--results_dir", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "validation accuracy:" in proc.stdout and "1586 missing" in proc.stderr
    (rec,) = read_records(out)
    check_record(rec)
    assert rec["summary"]["n_train"] + rec["summary"]["n_valid"] == 414
    assert len(rec["classes"]) == 50


# --- faults: refused before any work, recorded as failed, never lost -----------------------------------------------


def refused(tmp_path, capsys, *argv) -> str:
    """train.py's stderr for a run refused before any work (exit status 2, no traceback, no record)."""
    code = train.main(["--data_dir", str(tmp_path / "nowhere"), "--download_url", "http://127.0.0.1:9/x.zip",
                       *TINY, *argv])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and not list(tmp_path.rglob("2*.json")), err
    return err


def test_unusable_results_folder_is_refused_before_any_work(tmp_path, capsys, small_disk):
    (tmp_path / "file").write_text("x")
    assert "results_dir: cannot write result records to" in refused(tmp_path, capsys, "--results_dir",
                                                                    str(tmp_path / "file"))
    assert "Not a directory" in refused(tmp_path, capsys, "--results_dir", str(tmp_path / "file" / "sub"))
    fill(small_disk)
    assert "No space left on device" in refused(tmp_path, capsys, "--results_dir", str(small_disk))


@pytest.mark.parametrize("argv, says", [
    (["--n_mels", "1"], "needs at least"),
    (["--hop_length", "100000"], "frames (a smaller hop_length)"),
    (["--n_fft", "10000000", "--win_length", "400"], "n_fft=10000000 needs clips longer than"),
    (["--trial_num", "-1"], "trial_num: must be in 0..4294967295"),
    (["--sample_rate", ".nan"], "sample_rate: expected int, got nan"),
    (["--batch_size", "1"], "batch_size: must be >= 2"),
])
def test_configs_that_cannot_train_are_refused_naming_the_keys(tmp_path, capsys, argv, says):
    assert says in refused(tmp_path, capsys, "--results_dir", str(tmp_path / "res"), *argv)


def test_a_diverging_run_is_recorded_failed(tmp_path, synth_root, cache_dir):
    code, rec, _ = run(tmp_path, synth_root, cache_dir, "--n_epochs", "2", "--learning_rate", "1e8", "--mix_up", "0")
    assert code == 1 and rec["status"] == "failed" and rec["reason"] == "diverged"
    assert "loss became nan at epoch 1" in rec["error"] and "lower learning_rate" in rec["error"]


@pytest.mark.slow
def test_sigterm_records_the_run_as_terminated(tmp_path, synth_root, cache_dir):
    out = tmp_path / "res"
    proc = subprocess.Popen(
        [sys.executable, "train.py", "--data_dir", str(synth_root), "--allow_missing", "--esc10", "--cache_dir",
         str(cache_dir), "--results_dir", str(out), *TINY, "--n_epochs", "200"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:  # wait until training has begun
        if "validation clips" in line:
            break
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM and "Traceback" not in err, err[-2000:]
    (rec,) = read_records(out)
    assert rec["status"] == "failed" and rec["reason"] == "terminated" and "SIGTERM" in rec["error"]


def start_training(tmp_path, synth_root, cache_dir, env=None, script=None) -> subprocess.Popen:
    """train.py (or ``script``, which runs it) in a process of its own, returned once training has begun. SIGHUP
    is reset to its default there: a test run under nohup must not pass its ignored SIGHUP on."""
    argv = ["--data_dir", str(synth_root), "--allow_missing", "--esc10", "--cache_dir", str(cache_dir),
            "--results_dir", str(tmp_path / "res"), *TINY]
    cmd = [sys.executable, "-c", script, *argv] if script else [sys.executable, "train.py", *argv, "--n_epochs", "200"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
                            preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL))
    for line in proc.stdout:  # wait until training has begun
        if "validation clips" in line:
            break
    return proc


@pytest.mark.slow
@pytest.mark.parametrize("first, second, reason", [
    (signal.SIGHUP, None, "hangup"),  # the terminal or ssh session closed
    (signal.SIGTERM, signal.SIGINT, "terminated"),  # Ctrl-C 20 ms after a scheduler's SIGTERM
    (signal.SIGHUP, signal.SIGTERM, "hangup"),
])
def test_a_stopped_run_leaves_one_record_whatever_follows_the_first_signal(tmp_path, synth_root, cache_dir, first,
                                                                         second, reason):
    proc = start_training(tmp_path, synth_root, cache_dir)
    proc.send_signal(first)
    if second is not None:
        time.sleep(0.02)
        proc.send_signal(second)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + first and "Traceback" not in err, err[-2000:]
    (rec,) = read_records(tmp_path / "res")
    assert rec["status"] == "failed" and rec["reason"] == reason and signal.Signals(first).name in rec["error"]


FULL_DISK_THEN_CTRL_C = """
import errno, os, signal, sys, threading
from pathlib import Path
from audiosweep import results
real, results_dir = results.write_json_atomic, Path(sys.argv[sys.argv.index("--results_dir") + 1])
def full(path, obj):  # the results folder is full; Ctrl-C comes during the 1 s wait before the retry
    if path.parent != results_dir:
        return real(path, obj)
    if not getattr(full, "pressed", False):
        full.pressed = True
        threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
results.write_json_atomic = full
import train
sys.exit(train.main(sys.argv[1:] + ["--n_epochs", "1"], command=True))
"""


@pytest.mark.slow
def test_ctrl_c_during_the_records_retry_on_a_full_disk_loses_nothing(tmp_path, synth_root, cache_dir):
    home = tmp_path / "home"
    proc = start_training(tmp_path, synth_root, cache_dir, env={"HOME": str(home)}, script=FULL_DISK_THEN_CTRL_C)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGINT and "Traceback" not in err, err[-2000:]
    (saved,) = (home / ".cache" / "audiosweep" / "unsaved-records").glob("*.json")
    rec = json.loads(saved.read_text())
    assert rec["status"] == "finished" and rec["summary"]["accuracy"] is not None
    assert "No space left on device" in err and str(saved) in err
    assert not read_records(tmp_path / "res")


def test_a_read_only_results_folder_is_refused_in_one_line(tmp_path, capsys, monkeypatch):
    """As root, permissions stop nothing: the probe's file creation is made to fail as on a read-only mount."""
    from audiosweep import results

    def read_only(folder, name):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(folder / name))

    monkeypatch.setattr(results, "create_exclusive", read_only)
    err = refused(tmp_path, capsys, "--results_dir", str(tmp_path / "ro"))
    assert err == (f"train.py: results_dir: cannot write result records to {tmp_path / 'ro'} (Read-only file "
                   "system); give a writable folder with free space, e.g. --results_dir results\n")


@pytest.mark.slow
@pytest.mark.parametrize("finetune", ["head", "full"])
def test_ast_trains_on_its_own_front_end(tmp_path, synth_root, cache_dir, hf_offline, finetune, capsys):
    """``--arch ast`` with the spectrogram keys left out: the kaldi front end at 16 kHz, 128 mels, AudioSet
    normalisation; the checkpoint a two-layer AST the test saved into the hub cache."""
    out = tmp_path / "res"
    argv = ["--data_dir", str(synth_root), "--allow_missing", "true", "--esc10", "true", "--cache_dir",
            str(cache_dir), "--results_dir", str(out), "--arch", "ast", "--finetune", finetune, "--n_epochs", "2",
            "--mix_up", "0", "--batch_size", "16", "--wandb_mode", "disabled", "--save_model", "best"]
    assert train.main(argv) == 0
    (rec,) = read_records(out)
    check_record(rec)
    c = rec["config"]
    assert (c["frontend"], c["sample_rate"], c["n_mels"], c["n_fft"], c["normalize"], c["finetune"]) == (
        "kaldi", 16000, 128, 512, "audioset", finetune)
    assert c["freeze_epochs"] == (0 if finetune == "head" else 1) and rec["summary"]["pretrained_weights"] is True
    assert len(rec["history"]) == (2 if finetune == "head" else 3)
    assert ("computed once" in capsys.readouterr().out) == (finetune == "head")
    saved = torch.load(out / f"{rec['run_id']}.model.pt", weights_only=True)
    assert any(k.startswith("0.ast.embeddings") for k in saved["state_dict"])  # the whole model, head mode too
    from audiosweep.inference import load_predictor

    clip = sorted((synth_root / "audio").glob("*.wav"))[0]
    assert load_predictor(out).probabilities([clip]).shape == (1, 10)  # rebuilt at the clip's frame count


@pytest.mark.slow
def test_a_log_file_gets_one_plain_line_per_epoch(tmp_path, synth_root, cache_dir, capsys):
    """stdout not a terminal (captured here, a log file under the sweep runner): no redrawn progress bars."""
    code, rec, _ = run(tmp_path, synth_root, cache_dir, "--n_epochs", "3")
    out = capsys.readouterr().out
    assert code == 0 and "\r" not in out and "█" not in out and "<" not in out
    lines = [line for line in out.splitlines() if line.startswith("epoch ")]
    assert len(lines) == 3 == len(rec["history"])
    for n, (line, row) in enumerate(zip(lines, rec["history"]), 1):
        m = re.fullmatch(r"epoch (\d+)  train_loss (\S+)  valid_loss (\S+)  accuracy (\S+)  time \d\d:\d\d", line)
        assert m and int(m[1]) == n == row["epoch"] and float(m[4]) == pytest.approx(row["accuracy"], abs=1e-6)


@pytest.mark.slow
def test_a_test_fold_is_seen_by_neither_training_nor_selection(tmp_path, cache_dir, monkeypatch):
    """The test fold's labels are rotated (each class named as the next): the better a model learns the classes,
    the worse it does there, so validation and test disagree on the best epoch. checkpoint best must pick
    validation's, and the record's test accuracy must be that epoch's, computed on exactly the test fold."""
    from fastai.callback.core import Callback

    from audiosweep import data, evaluation, training
    from audiosweep.results import RunFiles
    from audiosweep.synthetic import make_synthetic_csv

    metadata = make_synthetic_csv(tmp_path / "clips", n_classes=4, per_class=24, n_folds=3)
    table = pd.read_csv(metadata)
    names = sorted(table.label.unique())
    table.loc[table.fold == 3, "label"] = table.label[table.fold == 3].map(
        {c: names[(i + 1) % len(names)] for i, c in enumerate(names)})
    table.to_csv(metadata, index=False)
    seen, real_prepare, real_fit = {}, data.prepare_data, training.fit

    def prepare(cfg):
        seen["data"] = real_prepare(cfg)
        return seen["data"]

    class TestEachEpoch(Callback):  # the test fold's accuracy after every epoch, with the model as it is then
        def after_epoch(self):
            model, loader = self.learn.model, evaluation.test_loader(self.learn, seen["data"].test_idx)
            model.eval()
            with torch.no_grad():
                right = sum((model(xb).argmax(1) == yb).sum().item() for xb, yb in loader)
            seen["test"].append(right / len(seen["data"].test_idx))

    def fit(learn, cfg):
        seen["test"], seen["loaders"] = [], (learn.dls.train.idx.clone(), learn.dls.valid.idx.clone())
        with learn.added_cbs(TestEachEpoch()):
            real_fit(learn, cfg)

    monkeypatch.setattr(data, "prepare_data", prepare)
    monkeypatch.setattr(training, "fit", fit)
    out = tmp_path / "res"
    argv = ["--dataset", "csv", "--metadata", str(metadata), "--cache_dir", str(cache_dir), "--results_dir",
            str(out), *TINY, "--test_fold", "3", "--fold", "2", "--checkpoint", "best", "--n_epochs", "6",
            "--mix_up", "0", "--batch_size", "8"]
    assert train.main(argv) == 0
    (rec,) = read_records(out)
    check_record(rec)
    d, s = seen["data"], rec["summary"]
    folds = d.meta.fold.to_numpy()
    test = set(d.test_idx.tolist())
    assert test == set(np.flatnonzero(folds == 3)) and s["n_test"] == len(test) == 32
    train_rows, valid_rows = (set(i.tolist()) for i in seen["loaders"])
    assert not (train_rows | valid_rows) & test  # no test clip in a loader used while fitting
    assert valid_rows == set(np.flatnonzero(folds == 2)) and train_rows == set(np.flatnonzero(folds == 1))
    assert (s["n_train"], s["n_valid"]) == (32, 32) and rec["config"]["fold"] == 2
    valid_accs = [row["accuracy"] for row in rec["history"]]
    assert s["evaluated_epoch"] == int(np.argmax(valid_accs)) + 1  # chosen on validation
    assert int(np.argmax(seen["test"])) != int(np.argmax(valid_accs))  # where the test fold would choose another
    assert s["test_accuracy"] == pytest.approx(seen["test"][s["evaluated_epoch"] - 1])
    files = RunFiles.of(out, rec["run_id"])
    assert rec["files"]["test_preds"] == files.predictions(test=True).name
    with np.load(files.predictions(test=True)) as f:
        assert sorted(f["filenames"]) == sorted(d.meta.filename.iloc[sorted(test)])
        assert (f["probs"].argmax(1) == f["targets"]).mean() == pytest.approx(s["test_accuracy"])
    with np.load(files.preds) as f:
        assert not set(f["filenames"]) & set(d.meta.filename.iloc[sorted(test)])


@pytest.mark.slow
def test_train_py_exits_once_its_output_and_wandb_run_are_written(tmp_path, synth_root, cache_dir):
    """train.py leaves without the interpreter's shutdown (os._exit): the record, the last lines through a pipe,
    W&B's offline run with its summary, and the exit status are all there."""
    out = tmp_path / "res"
    argv = [sys.executable, "train.py", "--data_dir", str(synth_root), "--allow_missing", "true", "--esc10", "true",
            "--cache_dir", str(cache_dir), "--results_dir", str(out), *TINY, "--n_epochs", "1"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # a pipe: stdout block-buffered
    proc = subprocess.run([*argv, "--wandb_mode", "offline"], cwd=REPO, capture_output=True, text=True, timeout=600,
                          env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.rstrip().splitlines()[-1].startswith("result record:")
    (rec,) = read_records(out)
    (log,) = (out / "wandb").glob(f"offline-run-*/run-{rec['run_id']}.wandb")
    assert b"best_accuracy" in log.read_bytes()  # the summary, written at the run's finish
    failed = subprocess.run([*argv, "--wandb_mode", "disabled", "--learning_rate", "1e8", "--mix_up", "0"],
                            cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert failed.returncode == 1 and "(failed)" in failed.stdout.splitlines()[-1], failed.stderr[-3000:]
