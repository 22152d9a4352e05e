"""The record contract: where a run's files live, which folders hold records, identity, the record and its summary."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest

from audiosweep import results
from audiosweep.config import merge
from audiosweep.errors import ConfigError, UserError
from tests.conftest import fill


def test_run_files_live_beside_the_record(tmp_path):
    files = results.RunFiles.of(tmp_path / "sweep", "20260101-000000-abcdef")
    assert files.record == tmp_path / "sweep" / "20260101-000000-abcdef.json"
    assert files.preds == tmp_path / "sweep" / "20260101-000000-abcdef.preds.npz"
    assert results.RunFiles(files.record).run_id == "20260101-000000-abcdef"


def test_record_files_leave_out_hidden_files_and_folders_without_records(tmp_path):
    for rel in ["a.json", "s/b.json", "s/logs/c.args.json", "wandb/run/d.json", ".e.json", "s/.f.json.1.tmp",
                "s/g.preds.npz"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("{}")
    assert [p.relative_to(tmp_path).as_posix() for p in results.record_files(tmp_path)] == ["a.json", "s/b.json"]
    assert [p.name for p in results.record_files(tmp_path / "s", recursive=False)] == ["b.json"]


def test_identity_is_the_effective_setting_without_environment_keys():
    base = merge([{"arch": "simple_cnn", "pretrained": False}]).effective_dict()
    asked = merge([{"arch": "simple_cnn", "pretrained": True, "data_dir": "/elsewhere",
                    "results_dir": "r", "device": "cpu"}]).effective_dict()
    assert results.config_id(base) == results.config_id(asked)
    assert results.config_id(base) != results.config_id({**base, "trial_num": 2})
    older = merge([{"arch": "simple_cnn", "pretrained": True}]).to_dict()  # recorded before effective values
    assert results.config_id(older) == results.config_id(base)
    before_augmentation = {k: v for k, v in base.items() if not k.endswith("_p")}  # keys that did not exist yet
    assert results.config_id(before_augmentation) == results.config_id(base)


HISTORY = [{"epoch": 1, "train_loss": 2.0, "valid_loss": 1.5, "accuracy": 0.4, "time_s": 1.0},
           {"epoch": 2, "train_loss": 1.0, "valid_loss": 1.1, "accuracy": 0.7, "time_s": 1.0},
           {"epoch": 3, "train_loss": 0.5, "valid_loss": 1.4, "accuracy": None, "time_s": 1.0}]
# The fields of a record in the order train.py writes them (extra ones after env).
TOP_KEYS = ["record_version", "run_id", "config_id", "status", "error", "config", "history", "summary", "env"]


def finished(history: list[dict] = HISTORY, evaluated_epoch: int = 2, **changes) -> results.Record:
    values = dict(evaluated_epoch=evaluated_epoch, accuracy=0.65, tta_accuracy=0.66, norm_stats={"mean": -20.0},
                  pretrained_weights=False, n_train=80, n_valid=20, feature_s=0.5, wall_time_s=9.5,
                  env={"device": "cpu"}, classes=["dog", "rain"], files={"preds": "r1.preds.npz"})
    return results.Record.finished(merge([]).effective_dict(), "r1", history, **{**values, **changes})


def test_records_carry_the_summary_schema(tmp_path):
    rec = results.Record.failed(merge([]).effective_dict(), "r1", "RuntimeError: x", {"device": None}, 1.5).to_dict()
    assert set(rec["summary"]) == {f for f in results.Summary.__dataclass_fields__}
    assert rec["summary"]["wall_time_s"] == 1.5 and rec["summary"]["accuracy"] is None
    assert set(results.SUMMARY_METRICS) <= set(rec["summary"]) and set(results.RECORD_KEYS) <= set(rec)
    path = results.write_json_atomic(results.RunFiles.of(tmp_path, "r1").record, rec)
    assert results.Record.load(path).status == "failed"
    with pytest.raises(ValueError, match="finished, failed"):
        results.Record._new({}, "r2", "done", [], results.Summary(), {})
    with pytest.raises(ValueError, match="not a result record"):
        results.Record.parse({"config": {}}, Path("x.json"))


def test_a_finished_record_summarises_its_history_at_the_evaluated_epoch():
    rec = finished(evaluated_epoch=2)
    data = rec.to_dict()
    assert list(data) == [*TOP_KEYS, "reason", "classes", "files"]
    assert data["status"] == "finished" and data["error"] is None and data["reason"] is None
    assert data["config_id"] == results.config_id(data["config"]) and data["history"] == HISTORY
    assert data["classes"] == ["dog", "rain"] and data["files"] == {"preds": "r1.preds.npz"}
    assert data["summary"] == {"accuracy": 0.65, "best_accuracy": 0.7, "train_loss": 1.0, "valid_loss": 1.1,
                               "epochs": 3, "evaluated_epoch": 2, "n_train": 80, "n_valid": 20, "feature_s": 0.5,
                               "norm_stats": {"mean": -20.0}, "pretrained_weights": False, "tta_accuracy": 0.66,
                               "wall_time_s": 9.5, "test_accuracy": None, "test_tta_accuracy": None, "n_test": None}
    last = finished(evaluated_epoch=3).summary  # the losses are the evaluated epoch's, not the best one's
    assert (last.train_loss, last.valid_loss, last.best_accuracy, last.evaluated_epoch) == (0.5, 1.4, 0.7, 3)
    no_accuracy = finished([{**HISTORY[0], "accuracy": None}], evaluated_epoch=1, accuracy=0.3)
    assert no_accuracy.summary.best_accuracy == 0.3  # no epoch measured one: the evaluated accuracy


def test_a_failed_record_of_train_and_of_the_sweep_runner():
    trained = results.Record.failed({"arch": "simple_cnn"}, "r1", "RuntimeError: x", {"device": "cpu"}, 2.5,
                                    HISTORY[:2], reason="error", classes=None, files={}).to_dict()
    assert list(trained) == [*TOP_KEYS, "reason", "classes", "files"]
    assert trained["status"] == "failed" and trained["error"] == "RuntimeError: x" and trained["reason"] == "error"
    assert trained["history"] == HISTORY[:2]
    assert trained["summary"] == {**results.Summary().to_dict(), "epochs": 2, "wall_time_s": 2.5}
    unreported = results.Record.failed({"arch": "simple_cnn"}, "r2", "ended without a record", {}, 7.0,
                                       log="r2.log", exit_code=-9, written_by="audiosweep.sweep").to_dict()
    assert list(unreported) == [*TOP_KEYS, "log", "exit_code", "written_by"] and unreported["exit_code"] == -9
    assert unreported["history"] == [] and unreported["summary"] == {**results.Summary().to_dict(),
                                                                     "wall_time_s": 7.0}  # epochs unknown: None


def test_a_stopped_record_keeps_its_fields_in_place(tmp_path):
    failed = results.Record.failed({"arch": "simple_cnn"}, "r1", "Terminated: received SIGTERM", {}, 2.5,
                                   HISTORY[:2], reason="terminated", classes=["a"], files={})
    path = results.write_json_atomic(tmp_path / "r1.json", failed.to_dict())
    stopped = results.Record.load(path).stopped("pruned at epoch 2", by="audiosweep.sweep")
    data = stopped.to_dict()
    assert list(data) == [*TOP_KEYS, "reason", "classes", "files", "stopped_by"]
    assert (stopped.status, stopped.reason, stopped.error) == ("stopped", "pruned at epoch 2", None)
    assert data["stopped_by"] == "audiosweep.sweep" and data["history"] == HISTORY[:2]
    assert {k: v for k, v in data.items() if k not in ("status", "reason", "error", "stopped_by")} == \
        {k: v for k, v in failed.to_dict().items() if k not in ("status", "reason", "error")}
    assert failed.status == "failed"  # the record it came from is left as it was


def test_an_old_record_loads_with_a_typed_summary(tmp_path):
    """A record of the first version: no evaluated_epoch or tta_accuracy, history rows without
    trainable_params; and a summary key no version knows, which is tolerated."""
    old = {"record_version": 1, "run_id": "20250101-000000-abcdef", "config_id": "0123456789ab", "status": "finished",
           "error": None, "config": {"arch": "resnet18", "n_mels": 128},
           "history": [{"epoch": 1, "train_loss": 2.0, "valid_loss": 1.5, "accuracy": 0.5, "time_s": 3.0}],
           "summary": {"accuracy": 0.5, "best_accuracy": 0.5, "train_loss": 2.0, "valid_loss": 1.5, "epochs": 1,
                       "n_train": 1600, "n_valid": 400, "feature_s": 4.0, "norm_stats": None,
                       "pretrained_weights": True, "wall_time_s": 60.0, "gpu_hours": 0.01},
           "env": {"device": "cuda"}}
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old, indent=1))
    rec = results.Record.load(path)
    assert rec.to_dict() == old and rec.run_id == "20250101-000000-abcdef" and rec.reason is None
    s = rec.summary
    assert (s.accuracy, s.best_accuracy, s.epochs, s.pretrained_weights) == (0.5, 0.5, 1, True)
    assert s.evaluated_epoch is None and s.tta_accuracy is None and not hasattr(s, "gpu_hours")
    assert results.write_json_atomic(tmp_path / "again.json", rec.to_dict()).read_text() == path.read_text()


def test_an_unusable_results_folder_is_refused_by_name(tmp_path, small_disk):
    (tmp_path / "a-file").write_text("x")
    for folder, why in [(tmp_path / "a-file", "File exists"), (tmp_path / "a-file" / "sub", "Not a directory")]:
        with pytest.raises(ConfigError, match=f"results_dir: cannot write result records to {folder} .*{why}"):
            results.check_results_dir(folder)
    fill(small_disk)
    with pytest.raises(ConfigError, match="No space left on device"):
        results.check_results_dir(small_disk)
    assert not list(small_disk.glob(".probe*"))  # the probe is gone


def test_a_record_that_no_longer_fits_goes_to_a_fallback_folder(tmp_path, small_disk, monkeypatch):
    monkeypatch.setattr(results, "fallback_dirs", lambda: [tmp_path / "ro" / "x", tmp_path / "fallback"])
    (tmp_path / "ro").write_text("a file: no folder can be made under it")
    results.check_results_dir(small_disk)  # fine at the start of the run...
    fill(small_disk)  # ... then the disk fills up
    written, problem = finished(accuracy=0.9).write(small_disk / "r1.json")
    assert written == tmp_path / "fallback" / "r1.json" and "No space left" in problem
    assert results.Record.load(written).summary.accuracy == 0.9
    assert not [p for p in small_disk.iterdir() if p.name.startswith(".")]  # no temporary file left


@pytest.mark.parametrize("text, why", [
    ('{"config": "resnet18", "history": [], "summary": {}, "status": "finished"}', "config is a str"),
    ('{"config": [], "history": [], "summary": {}, "status": "finished"}', "config is a list"),
    ('{"config": {}, "history": null, "summary": {}, "status": "finished"}', "history is a NoneType"),
    ('{"config": {}, "history": [3], "summary": {}, "status": "finished"}', "history.0. is not an object"),
    (b'{"config": {"arch": "\xff"}}', "not a readable result record"),  # not UTF-8
])
def test_malformed_records_are_named(tmp_path, text, why):
    path = tmp_path / "bad.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ValueError, match=f"{path}: .*{why}"):
        results.Record.load(path)


def _finished_record(**summary) -> dict:
    history = [{"epoch": 1, "train_loss": 1.0, "valid_loss": 1.2, "accuracy": 0.5, "time_s": 1.0}]
    return {"record_version": 1, "run_id": "r1", "status": "finished", "config": {}, "history": history,
            "summary": {"accuracy": 0.5, "best_accuracy": 0.5, "valid_loss": 1.2, **summary}}


@pytest.mark.parametrize(("change", "named"), [
    ({"summary": {"accuracy": float("inf")}}, "summary.accuracy is inf, not finite"),
    ({"summary": {"best_accuracy": 1e300}}, "summary.best_accuracy is 1e+300, outside [0, 1]"),
    ({"summary": {"accuracy": float("nan")}}, "summary.accuracy is nan, not finite"),
    ({"summary": {"tta_accuracy": -0.25}}, "summary.tta_accuracy is -0.25, outside [0, 1]"),
    ({"summary": {"accuracy": 2}}, "summary.accuracy is 2, outside [0, 1]"),
    ({"summary": {"valid_loss": "low"}}, "summary.valid_loss is 'low', not a number"),
    ({"history": [{"epoch": 1, "accuracy": "0.9"}]}, "history[0].accuracy is '0.9', not a number"),
    ({"history": [{"epoch": 1, "train_loss": [1]}]}, "history[0].train_loss is [1], not a number"),
    ({"history": [{"epoch": 1, "accuracy": float("-inf")}]}, "history[0].accuracy is -inf, outside [0, 1]"),
    ({"status": "<b>done</b>"}, "status is '<b>done</b>', not one of finished, failed, stopped"),
    ({"run_id": "../elsewhere"}, "run_id '../elsewhere' is not a file name"),
])
def test_records_with_unusable_metrics_or_identity_are_malformed(tmp_path, change, named):
    obj = _finished_record()
    for key, value in change.items():
        obj[key] = {**obj[key], **value} if key == "summary" else value
    path = tmp_path / "r1.json"
    path.write_text(json.dumps(obj))  # json writes inf and nan as Infinity and NaN, which it reads back
    with pytest.raises(results.RecordError, match="malformed result record") as e:
        results.Record.load(path)
    assert str(path) in str(e.value) and named in str(e.value)


def test_a_failed_run_may_have_diverged_but_a_finished_one_not(tmp_path):
    obj = {**_finished_record(valid_loss=float("nan")), "status": "failed"}
    obj["history"][0]["train_loss"] = float("nan")
    assert results.Record.parse(obj, tmp_path / "f.json").status == "failed"
    with pytest.raises(results.RecordError, match="summary.valid_loss is nan, not finite, in a finished run"):
        results.Record.parse({**obj, "status": "finished"}, tmp_path / "f.json")


def test_record_files_never_open_fifos_or_devices(tmp_path):
    (tmp_path / "a.json").write_text("{}")
    os.mkfifo(tmp_path / "b.json")
    (tmp_path / "c.json").mkdir()
    irregular = []
    assert [p.name for p in results.record_files(tmp_path, irregular=irregular)] == ["a.json"]
    assert [p.name for p in irregular] == ["b.json", "c.json"]
    with pytest.raises(results.RecordError, match="not a regular file"):  # read without blocking
        results.read_json(tmp_path / "b.json")


@pytest.mark.parametrize(("content", "named"), [
    (b"PK\x03\x04 torn", "not a readable predictions file"),
    (b"", "not a readable predictions file"),
    ({"probs": np.full((2, 2), np.nan), "targets": np.array([0, 1])}, "not all finite"),
    ({"probs": np.eye(2), "targets": np.array([0, 7])}, "not all class indices 0 to 1"),
    ({"probs": np.eye(3), "targets": np.array([0, 1])}, "do not agree"),
])
def test_predictions_files_are_checked_on_load(tmp_path, content, named):
    path = tmp_path / "r.preds.npz"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        np.savez(path, classes=np.array(["a", "b"]), filenames=np.array(["x.wav", "y.wav"]), **content)
    with pytest.raises(results.RecordError, match=named) as e:
        results.load_predictions(path)
    assert str(path) in str(e.value)


# --- faults: files in folders others may write ---------------------------------------------------------------------


def plant(folder: Path, names: list[str], decoy: Path) -> None:
    """Symbolic links at ``names`` in ``folder``, all to ``decoy``: what anyone who can write to a shared folder
    can do at the names a writer is known to use."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).symlink_to(decoy)


def test_links_planted_at_a_writers_names_are_never_written_through(tmp_path, monkeypatch):
    decoy = tmp_path / "decoy.txt"
    decoy.write_text("precious")
    shared = tmp_path / "shared-results"
    pids = range(os.getpid() - 5, os.getpid() + 6)  # the pid-based names of the earlier versions, and neighbours
    plant(shared, [f".probe-{p}.tmp" for p in pids] + [f".r1.json.{p}.tmp" for p in pids]
          + [f".r1.preds.{p}.tmp.npz" for p in pids] + ["r1.json", "r1.preds.npz", "r1.progress.jsonl"], decoy)
    results.check_results_dir(shared)
    finished(accuracy=0.75).write(shared / "r1.json")
    results.save_predictions(shared / "r1.preds.npz", np.eye(2), np.arange(2), ["a", "b"], ["x.wav", "y.wav"])
    with pytest.raises(UserError, match="is a symbolic link, not written through"):  # a run's progress file
        results.append_line(shared / "r1.progress.jsonl", "{}", create=True)
    with pytest.raises(UserError, match="is a symbolic link, not written through"):
        results.append_line(shared / "r1.progress.jsonl", "{}")
    assert decoy.read_text() == "precious"
    assert not (shared / "r1.json").is_symlink() and results.Record.load(shared / "r1.json").summary.accuracy == 0.75
    assert np.load(shared / "r1.preds.npz")["probs"].shape == (2, 2)
    assert oct((shared / "r1.json").stat().st_mode & 0o777) == oct(0o666 & ~results.UMASK)  # not mkstemp's 0o600
    # the fallback folder in the shared temporary folder: another user's (here: a link to theirs) is not used
    other = tmp_path / "theirs"
    other.mkdir()
    monkeypatch.setattr(results, "fallback_dirs", lambda: [tmp_path / "tmp" / "unsaved", tmp_path / "mine"])
    plant(tmp_path / "tmp", ["unsaved"], other)
    (tmp_path / "a-file").write_text("no folder can be made under it")
    written, _ = finished(accuracy=0.5).write(tmp_path / "a-file" / "r2.json")
    assert written == tmp_path / "mine" / "r2.json" and not list(other.iterdir())


def test_a_read_only_results_folder_is_refused_by_the_sweep_runner_in_one_line(tmp_path, monkeypatch, capsys):
    """The sweep runner's --results-dir on a read-only file system (simulated: the tests run as root, whom
    permissions do not stop, so the probe's file creation fails with EROFS)."""
    from audiosweep.sweep.cli import main as sweep_main
    from tests.conftest import write_sweep

    def read_only(folder, name):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(folder / name))

    monkeypatch.setattr(results, "create_exclusive", read_only)
    sweep = write_sweep(tmp_path / "s.yaml", {"n_epochs": 1})
    assert sweep_main(["run", str(sweep), "--results-dir", str(tmp_path / "ro")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert f"--results_dir: cannot write result records to {tmp_path / 'ro' / 's'} (Read-only file system)" in err
    with pytest.raises(ConfigError, match=r"results_dir: .*Read-only file system.*--results_dir results"):
        results.check_results_dir(tmp_path / "ro2")
