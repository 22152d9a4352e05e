"""Mid-run resume: a run stopped after an epoch and resumed with --resume ends as an uninterrupted run does."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from fastai.callback.core import Callback

import train
from audiosweep.checkpoint import Checkpoint
from audiosweep.errors import Terminated
from audiosweep.synthetic import make_synthetic_esc50
from tests.conftest import REPO, TINY, read_records, toy_learner

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

# Six epochs that learn, with MixUp (torch's global generator), SpecAugment masks (augmented batches) and the
# loader's own shuffling generator, so that every random source a resumed run must restore is drawn from.
SIX = [*TINY, "--n_mels", "32", "--hop_length", "320", "--n_epochs", "6", "--mix_up", "0.4", "--spec_time_masks", "1",
       "--spec_time_width", "4", "--trial_num", "5"]
METRICS = ("epoch", "train_loss", "valid_loss", "accuracy", "trainable_params")


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    """ESC-10 classes, 2 clips per class and fold: 80 training clips, 20 validation ones."""
    return make_synthetic_esc50(tmp_path_factory.mktemp("synth") / "ESC-50", per_class_per_fold=2)


def argv(synth_root, cache_dir, out, *extra):
    return ["--data_dir", str(synth_root), "--allow_missing", "true", "--esc10", "true", "--cache_dir",
            str(cache_dir), "--results_dir", str(out), *SIX, *extra]


def metrics(record: dict) -> list[dict]:
    return [{k: row[k] for k in METRICS} for row in record["history"]]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, synth_root, cache_dir) -> dict:
    out = tmp_path_factory.mktemp("whole")
    assert train.main(argv(synth_root, cache_dir, out)) == 0
    (rec,) = read_records(out)
    assert not list(out.glob("*.ckpt.pt")), "a finished run leaves no checkpoint"
    return rec


def stop_after(monkeypatch, epoch: int) -> None:
    """SIGTERM's effect (Terminated) right after the checkpoint of ``epoch`` is written."""
    write = Checkpoint.after_epoch

    def after_epoch(self):
        write(self)
        if len(self.learn.history.rows) == epoch:
            raise Terminated("received SIGTERM")

    monkeypatch.setattr(Checkpoint, "after_epoch", after_epoch)


def stopped_run(tmp_path, monkeypatch, synth_root, cache_dir, epoch: int = 3, *extra) -> tuple[dict, object]:
    out = tmp_path / "res"
    with monkeypatch.context() as m:
        stop_after(m, epoch)
        assert train.main(argv(synth_root, cache_dir, out, *extra)) == 128 + signal.SIGTERM
    (rec,) = read_records(out)
    assert rec["status"] == "failed" and rec["reason"] == "terminated" and len(rec["history"]) == epoch
    assert (out / f"{rec['run_id']}.ckpt.pt").exists()
    return rec, out


@pytest.mark.slow
def test_a_run_stopped_after_epoch_3_resumes_to_the_uninterrupted_history(tmp_path, monkeypatch, synth_root,
                                                                          cache_dir, uninterrupted, capsys):
    stopped, out = stopped_run(tmp_path, monkeypatch, synth_root, cache_dir)
    assert metrics(stopped) == metrics(uninterrupted)[:3]
    capsys.readouterr()
    assert train.main(argv(synth_root, cache_dir, out, "--resume", stopped["run_id"])) == 0
    assert f"resuming run {stopped['run_id']} after epoch 3" in capsys.readouterr().out
    (rec,) = read_records(out)  # the same run id: its record replaced
    assert rec["run_id"] == stopped["run_id"] and rec["status"] == "finished" and rec["resumed_from_epoch"] == 3
    assert metrics(rec) == metrics(uninterrupted)
    assert rec["summary"]["accuracy"] == uninterrupted["summary"]["accuracy"]
    assert not list(out.glob("*.ckpt.pt"))
    progress = [json.loads(line) for line in (out / f"{rec['run_id']}.progress.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in progress] == [1, 2, 3, 4, 5, 6]


@pytest.mark.slow
def test_a_killed_run_resumes_from_its_checkpoint_alone(tmp_path, synth_root, cache_dir, uninterrupted):
    """SIGKILL (or a power loss): no record is written; the checkpoint on disk is enough."""
    out = tmp_path / "res"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "train.py", *argv(synth_root, cache_dir, out)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        progress = list(out.glob("*.progress.jsonl"))
        if progress and len(progress[0].read_text().splitlines()) >= 3 and list(out.glob("*.ckpt.pt")):
            break
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    assert not read_records(out)
    (ckpt,) = out.glob("*.ckpt.pt")
    run_id = ckpt.name.removesuffix(".ckpt.pt")
    assert train.main(argv(synth_root, cache_dir, out, "--resume", run_id)) == 0
    (rec,) = read_records(out)
    assert rec["run_id"] == run_id and 1 <= rec["resumed_from_epoch"] < 6
    assert metrics(rec) == metrics(uninterrupted)
    assert rec["summary"]["accuracy"] == uninterrupted["summary"]["accuracy"]


def fine_tune_history(tmp_path, layer: dict, stop: int | None = None, resume: dict | None = None) -> list[dict]:
    """The per-epoch metrics of recipes.fine_tune (a frozen fit, then one of all layers) on the toy Learner, with
    a checkpoint every epoch in ``tmp_path``; ``stop``: Terminated after that epoch's checkpoint."""
    from audiosweep.recipes import fine_tune
    from audiosweep.training import History

    history = History()
    saver = Checkpoint(tmp_path / "run.ckpt.pt", 1, {"run_id": "run", "config": {}}, resume)
    learn, cfg = toy_learner(layer, 32, 32, [history, saver])
    if resume:
        history.restore(resume["history"])
    if stop:
        learn.add_cb(StopAfter(stop))
        with pytest.raises(Terminated):
            fine_tune(learn, cfg)
    else:
        fine_tune(learn, cfg)
    return [{k: row[k] for k in METRICS} for row in history.rows]


class StopAfter(Callback):
    order = Checkpoint.order + 1

    def __init__(self, epoch: int):
        self.stop_at = epoch

    def after_epoch(self):
        if len(self.learn.history.rows) == self.stop_at:
            raise Terminated("received SIGTERM")


@pytest.mark.slow
@pytest.mark.parametrize("layer, stop", [
    ({"schedule": "one_cycle"}, 2),  # at the boundary of fine_tune's two fits
    ({"schedule": "one_cycle", "optimizer": "adamw", "mix_up": 0.4}, 3),  # inside the second fit; PyTorch's AdamW
    ({"schedule": "plateau", "plateau_patience": 1, "plateau_factor": 0.5, "learning_rate": 0.05}, 3),
    ({"schedule": "step", "step_size": 1, "optimizer": "sgd", "accumulate": 3}, 4),  # gradients carried over epochs
])
def test_fine_tunes_two_fits_resume_where_they_stopped(tmp_path, layer, stop):
    layer = {**layer, "arch": "simple_cnn", "pretrained": False, "freeze_epochs": 2, "n_epochs": 4,
             "discriminative_lr": False}
    whole = fine_tune_history(tmp_path / "whole", layer)
    assert len(whole) == 6
    assert fine_tune_history(tmp_path / "part", layer, stop=stop) == whole[:stop]
    ckpt = torch.load(tmp_path / "part" / "run.ckpt.pt", weights_only=True)
    assert ckpt["epoch"] == stop
    assert fine_tune_history(tmp_path / "part", layer, resume=ckpt) == whole


def write_record(out: Path, run_id: str, status: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{run_id}.json").write_text(json.dumps({"record_version": 1, "run_id": run_id, "config": {},
                                                    "history": [], "summary": {}, "status": status}))


def refusal(capsys, synth_root, cache_dir, out: Path, run_id: str, *extra) -> str:
    assert train.main(argv(synth_root, cache_dir, out, "--resume", run_id, *extra)) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_resume_is_refused_for_a_finished_run(tmp_path, capsys, synth_root, cache_dir):
    write_record(tmp_path, "done", "finished")
    assert "resume: run done finished" in refusal(capsys, synth_root, cache_dir, tmp_path, "done")


def test_resume_is_refused_without_a_checkpoint(tmp_path, capsys, synth_root, cache_dir):
    write_record(tmp_path, "early", "failed")
    err = refusal(capsys, synth_root, cache_dir, tmp_path, "early")
    assert "resume: run early has no checkpoint" in err and "without --resume" in err
    assert "resume: run nowhere has no checkpoint" in refusal(capsys, synth_root, cache_dir, tmp_path, "nowhere")
    assert "not a run id" in refusal(capsys, synth_root, cache_dir, tmp_path, "../early")


def test_resume_is_refused_with_other_settings_but_not_another_environment(tmp_path, capsys, synth_root,
                                                                           cache_dir):
    from audiosweep.checkpoint import FORMAT
    from audiosweep.config import parse_args

    cfg, _ = parse_args(argv(synth_root, cache_dir, tmp_path, "--resume", "run"))
    config = {**cfg.effective_dict(), "learning_rate": 0.5, "device": "cuda", "results_dir": "elsewhere"}
    write_record(tmp_path, "run", "failed")
    torch.save({"format": FORMAT, "run_id": "run", "config": config, "epoch": 1}, tmp_path / "run.ckpt.pt")
    err = refusal(capsys, synth_root, cache_dir, tmp_path, "run")
    assert "other settings (learning_rate 0.5 -> 0.01)" in err and "device" not in err
    (tmp_path / "run.ckpt.pt").write_bytes(b"not a checkpoint")
    assert "cannot read" in refusal(capsys, synth_root, cache_dir, tmp_path, "run")
    assert json.loads((tmp_path / "run.json").read_text())["status"] == "failed"  # the record is left as it was
