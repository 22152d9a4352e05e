"""The record contract: where a run's files live, which folders hold records, identity, the summary schema."""

from __future__ import annotations

from pathlib import Path

import pytest

from audiosweep import results
from audiosweep.config import ConfigError, merge
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


def test_records_carry_the_summary_schema(tmp_path):
    rec = results.make_record(merge([]).effective_dict(), "r1", "failed", [], results.Summary(wall_time_s=1.5),
                              {"device": None}, "RuntimeError: x")
    assert set(rec["summary"]) == {f for f in results.Summary.__dataclass_fields__}
    assert rec["summary"]["wall_time_s"] == 1.5 and rec["summary"]["accuracy"] is None
    assert set(results.SUMMARY_METRICS) <= set(rec["summary"]) and set(results.RECORD_KEYS) <= set(rec)
    path = results.write_json_atomic(results.RunFiles.of(tmp_path, "r1").record, rec)
    assert results.load_record(path)["status"] == "failed"
    with pytest.raises(ValueError, match="finished, failed"):
        results.make_record({}, "r2", "done", [], results.Summary(), {})
    with pytest.raises(ValueError, match="not a result record"):
        results.check_record({"config": {}}, Path("x.json"))


def test_an_unusable_results_folder_is_refused_by_name(tmp_path, small_disk):
    (tmp_path / "a-file").write_text("x")
    for folder, why in [(tmp_path / "a-file", "File exists"), (tmp_path / "a-file" / "sub", "Not a directory")]:
        with pytest.raises(ConfigError, match=f"results_dir: cannot write result records to {folder} .*{why}"):
            results.check_results_dir(folder)
    fill(small_disk)
    with pytest.raises(ConfigError, match="No space left on device"):
        results.check_results_dir(small_disk)
    assert not list(small_disk.glob(".probe-*"))  # the probe is gone


def test_a_record_that_no_longer_fits_goes_to_a_fallback_folder(tmp_path, small_disk, monkeypatch):
    monkeypatch.setattr(results, "fallback_dirs", lambda: [tmp_path / "ro" / "x", tmp_path / "fallback"])
    (tmp_path / "ro").write_text("a file: no folder can be made under it")
    results.check_results_dir(small_disk)  # fine at the start of the run...
    fill(small_disk)  # ... then the disk fills up
    rec = results.make_record(merge([]).effective_dict(), "r1", "finished", [], results.Summary(accuracy=0.9), {})
    written, problem = results.write_record(rec, small_disk / "r1.json")
    assert written == tmp_path / "fallback" / "r1.json" and "No space left" in problem
    assert results.load_record(written)["summary"]["accuracy"] == 0.9
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
        results.load_record(path)
