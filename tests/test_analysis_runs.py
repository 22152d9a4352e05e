"""Loading runs (analysis.runs): local records and W&B (through a fake API) into the same columns, knobs without
effect made equal, files that are no records, and the warnings about pooling runs."""

from __future__ import annotations

import io
import json
import math
import os
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from analysis import checks, cli, compare, plots, report, runs, summarize
from audiosweep.config import ENVIRONMENT, FIELDS, REPLICATE, keys_with_role
from audiosweep.results import EPOCH_METRICS, SUMMARY_METRICS, write_json_atomic
from tests.analysis_records import write_run, write_study

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_local_loader_columns_and_values(tmp_path):
    study = write_study(tmp_path)
    df = runs.load_runs(str(study))
    assert list(df.columns) == runs.COLUMNS and list(df.columns[:len(FIELDS)]) == list(FIELDS)
    assert list(df.columns[len(FIELDS):len(FIELDS) + len(SUMMARY_METRICS)]) == list(SUMMARY_METRICS)
    assert len(df) == 6 and set(df.sweep) == {"nmels"}
    failed = df[df.run_id == "r64-3"].iloc[0]
    assert failed.status == "failed" and math.isnan(failed.accuracy) and failed.wall_time_s == 3.5
    row = df[df.run_id == "r128-2"].iloc[0]
    assert (row.n_mels, row.trial_num, row.accuracy, row.valid_loss, row.epochs) == (128, 2, 0.82, 0.6, 2)
    assert row.hop_length == 308 and row.hop_length_ms is None  # an int beside None stays an int
    assert row.history[-1] == {"epoch": 2, "train_loss": 1.5, "valid_loss": 0.6, "accuracy": 0.82}
    assert list(row.history[-1]) == ["epoch", *EPOCH_METRICS]
    assert Path(row.record_path) == study / "r128-2.json"


def test_warns_about_other_parameters_differing_in_a_group(tmp_path, capsys):
    folder = tmp_path / "lr"
    write_run(folder, "a", 0.8, n_mels=64, trial_num=1, fold=1, data_dir="/x", learning_rate=0.01)
    write_run(folder, "b", 0.9, n_mels=64, trial_num=2, fold=2, data_dir="/y", learning_rate=0.001)
    assert summarize.main([str(folder), "--by", "n_mels"]) == 0
    err = capsys.readouterr().err
    assert "differ in other parameters: learning_rate (0.01, 0.001)" in err
    for nuisance in ("trial_num", "fold", "data_dir", "unequal"):
        assert nuisance not in err
    assert summarize.main([str(folder), "--by", "n_mels,learning_rate"]) == 0
    assert "differ" not in capsys.readouterr().err


def test_keys_allowed_to_differ_are_the_replicate_and_environment_roles(tmp_path):
    assert checks.NUISANCE_KEYS == set(keys_with_role(REPLICATE, ENVIRONMENT)) >= {"trial_num", "fold", "device"}
    write_run(tmp_path, "a", 0.8, num_workers=1, cache_dir="/c1", project="p1", wandb_mode="offline")
    write_run(tmp_path, "b", 0.9, num_workers=8, cache_dir="/c2", project="p2", wandb_mode="disabled")
    df = runs.load_runs(str(tmp_path))
    assert checks.group_warnings(df, []) == [] and checks.varying_keys(df) == []


def test_knobs_without_effect_do_not_differ(tmp_path, capsys):
    """An older simple_cnn record says pretrained=true (with a frozen epoch), a newer one false: the same run."""
    write_run(tmp_path, "old", 0.8, arch="simple_cnn", pretrained=True, freeze_epochs=1, n_mels=64)
    write_run(tmp_path, "new", 0.9, arch="simple_cnn", pretrained=False, freeze_epochs=0, n_mels=64, trial_num=2)
    df = runs.load_runs(str(tmp_path))
    assert df.pretrained.tolist() == [False, False] and df.freeze_epochs.tolist() == [0, 0]
    assert checks.varying_keys(df) == []
    assert summarize.main([str(tmp_path), "--by", "n_mels"]) == 0
    assert "differ in other parameters" not in capsys.readouterr().err

    write_run(tmp_path / "stacked", "s", 0.7, stacked_win_lengths=[512, 1024], win_length=400)
    row = runs.load_runs(str(tmp_path / "stacked")).iloc[0]
    assert row.win_length is None and row.stacked_win_lengths == (512, 1024) and row.pretrained


def test_empty_and_missing_folders(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert summarize.main([str(tmp_path / "empty"), "--by", "n_mels"]) == 2
    assert capsys.readouterr().err == (f"analysis.summarize: no result records under {tmp_path / 'empty'} "
                                       "(train.py writes <run_id>.json into --results_dir)\n")
    assert summarize.main([str(tmp_path / "nope"), "--by", "n_mels"]) == 2
    assert "nope: no such folder" in capsys.readouterr().err


@pytest.mark.parametrize("text", [b'{"config": "resnet18", "history": [], "summary": {}, "status": "finished"}',
                                  b'{"config": [], "history": [], "summary": {}, "status": "finished"}',
                                  b'{"config": {}, "history": null, "summary": {}, "status": "finished"}',
                                  b'{"config": {"arch": "\xff"}, "history": [], "summary": {}, "status": "x"}'])
@pytest.mark.slow
def test_malformed_records_are_skipped_by_every_command(tmp_path, capsys, text):
    study = write_study(tmp_path)
    (study / "odd.json").write_bytes(text)
    for command in (summarize.main, plots.main, report.main):
        assert command([str(study), "--by", "n_mels"]) == 2
        assert f"{study / 'odd.json'}: " in capsys.readouterr().err
    out = ["--out", str(tmp_path / "out")]
    for command, extra in ((summarize.main, []), (plots.main, out), (report.main, out)):
        assert command([str(study), "--by", "n_mels", "--skip-bad", *extra]) == 0
        err = capsys.readouterr().err
        assert "skipped malformed record" in err and "Traceback" not in err


def test_a_folder_of_failed_runs_is_an_error_not_an_empty_table(tmp_path, capsys):
    for trial in (1, 2):
        write_run(tmp_path / "failed", f"f{trial}", None, status="failed", trial_num=trial)
    for argv in ([], ["--by", "n_mels"], ["--folds"]):
        assert summarize.main([str(tmp_path / "failed"), *argv]) == 2
        out, err = capsys.readouterr()
        assert out == "" and "no finished runs with accuracy" in err and "2 of 2 runs left out" in err


def test_malformed_record_names_the_file(tmp_path, capsys):
    study = write_study(tmp_path)
    (study / "broken.json").write_text('{"record_version": 1, "config": {')  # cut short
    assert summarize.main([str(study), "--by", "n_mels"]) == 2
    err = capsys.readouterr().err
    assert f"{study / 'broken.json'}: not a readable result record" in err and "--skip_bad" in err
    assert "Traceback" not in err
    assert summarize.main([str(study), "--by", "n_mels", "--skip-bad"]) == 0
    out, err = capsys.readouterr()
    assert "skipped malformed record" in err and "broken.json" in err and "82.00 ± 2.00" in out

    (study / "broken.json").unlink()
    write_json_atomic(study / "nosummary.json", {"record_version": 1, "run_id": "x", "config": {}, "status": "ok",
                                                 "history": []})
    assert summarize.main([str(study)]) == 2
    assert "nosummary.json: not a result record (missing summary)" in capsys.readouterr().err


def test_files_that_are_not_records_are_left_out(tmp_path, capsys):
    study = write_study(tmp_path)
    write_json_atomic(study / "logs" / "abc.args.json", {"n_mels": 64})  # the sweep runner's
    write_json_atomic(study / "wandb" / "run-1" / "files" / "wandb-summary.json", {"accuracy": 1.0})
    (study / ".r9.json.123.tmp").write_text("{")
    (study / ".hidden.json").write_text("{")
    assert len(runs.load_runs(str(study))) == 6
    assert capsys.readouterr().err == ""
    write_json_atomic(study / "state.json", {"done": 3})
    assert len(runs.load_runs(str(study))) == 6
    assert "not result records, e.g. " in capsys.readouterr().err


def test_mixed_sweeps_warn_and_filter(tmp_path, capsys):
    study = write_study(tmp_path)
    write_run(tmp_path / "results" / "other", "o-1", 0.5, n_mels=128)
    source = str(tmp_path / "results")
    df = runs.load_runs(source)
    assert sorted(df.sweep.unique()) == ["nmels", "other"]
    assert runs.load_runs(str(study)).sweep.unique().tolist() == ["nmels"]  # same name from either level
    assert summarize.main([source, "--by", "n_mels"]) == 0
    assert "runs from 2 sweeps are pooled: nmels (6 runs), other (1 runs); pass --sweep NAME" in \
        capsys.readouterr().err
    assert summarize.main([source, "--by", "n_mels", "--sweep", "other", "--format", "csv"]) == 0
    out, err = capsys.readouterr()
    assert "pooled" not in err and pd.read_csv(io.StringIO(out)).n.tolist() == [1]
    assert summarize.main([source, "--sweep", "nope"]) == 2
    assert "no sweep 'nope' under" in capsys.readouterr().err


def test_overview_lists_runs_with_their_replicates_and_metrics(tmp_path):
    study = write_study(tmp_path)
    table = runs.overview(runs.load_runs(str(study)), ["n_mels"], "best_accuracy")
    assert list(table.columns) == ["sweep", "run_id", "status", "n_mels", *keys_with_role(REPLICATE),
                                   "best_accuracy", *(m for m in SUMMARY_METRICS if m != "best_accuracy")]
    assert len(table) == 6


class FakeRun:
    """The attributes of ``wandb.apis.public.Run`` the loader reads, filled from a local record."""

    def __init__(self, rec: dict, state: str, sweep: str | None):
        self.id, self.config, self.state = rec["run_id"], dict(rec["config"]), state
        self.summary = {"_runtime": 4, "_wandb": {"runtime": 4}, **rec["summary"], "env": rec["env"]}
        self.sweep_name = f"id-{sweep}" if sweep else None
        self.sweep = SimpleNamespace(name=sweep, id=self.sweep_name) if sweep else None
        # fastai's WandbCallback: per batch train_loss, epoch-end rows add valid_loss and accuracy
        self.rows = [r for h in rec["history"] for r in ({"train_loss": 9.0},
                     {"train_loss": h["train_loss"], "valid_loss": h["valid_loss"], "accuracy": h["accuracy"]})]

    def scan_history(self, keys=None):
        return [{"_step": i, **{k: r[k] for k in keys}} for i, r in enumerate(self.rows) if set(keys) <= set(r)]


class FakeApi:
    def __init__(self, runs_):
        self._runs, self.calls = runs_, []

    def runs(self, path, filters=None, **kwargs):
        self.calls.append((path, filters))
        return iter(self._runs)


def test_wandb_loader_matches_local_loader(tmp_path, monkeypatch):
    study = write_study(tmp_path)
    recs = [json.loads(p.read_text()) for p in sorted(study.glob("*.json"))]
    api = FakeApi([FakeRun(r, "finished" if r["status"] == "finished" else "failed", "nmels") for r in recs])
    monkeypatch.setattr(runs, "wandb_api", lambda: api)
    remote = runs.load_runs("wandb:me/esc50", sweep="id-nmels", tags=["final"], filters={"config.arch": "x"})
    assert api.calls == [("me/esc50", {"$and": [{"config.arch": "x"}, {"sweep": "id-nmels"},
                                                {"tags": {"$in": ["final"]}}]})]
    local = runs.load_runs(str(study))
    assert remote.record_path.isna().all()
    pd.testing.assert_frame_equal(remote.drop(columns="record_path"), local.drop(columns="record_path"))
    assert summarize.group_stats(remote, ["n_mels"]).accuracy_mean.tolist() == pytest.approx([0.82, 0.72])


def test_wandb_runs_get_effective_values(tmp_path, monkeypatch):
    recs = [write_run(tmp_path, f"r{i}", 0.8, arch="simple_cnn", pretrained=p, trial_num=i)
            for i, p in enumerate([True, False], 1)]
    monkeypatch.setattr(runs, "wandb_api", lambda: FakeApi([FakeRun(r, "finished", None) for r in recs]))
    df = runs.load_runs("wandb:me/esc50")
    assert df.pretrained.tolist() == [False, False] and checks.check(df, []) == []


def test_wandb_states_sweeps_and_errors(tmp_path, monkeypatch):
    study = write_study(tmp_path)
    rec = json.loads((study / "r128-1.json").read_text())
    rec2 = {**rec, "run_id": "r2", "summary": {"_runtime": 7}, "history": []}
    monkeypatch.setattr(runs, "wandb_api", lambda: FakeApi([FakeRun(rec, "finished", None),
                                                            FakeRun(rec2, "crashed", None)]))
    df = runs.load_runs("wandb:me/esc50", history=False)
    assert df.status.tolist() == ["finished", "crashed"] and df.sweep.tolist() == ["", ""]
    assert df.wall_time_s.tolist() == [3.5, 7] and df.history.tolist() == [[], []]
    assert "1 of 2 runs left out of the statistics (crashed: 1" in checks.check(df, ["n_mels"])[0]

    def offline():
        raise ConnectionError("no network")

    monkeypatch.setattr(runs, "wandb_api", offline)
    with pytest.raises(runs.SourceError, match="wandb:me/esc50: cannot list runs .* `wandb login`"):
        runs.load_runs("wandb:me/esc50")
    assert runs.wandb_filters("me/esc50/abc123", None, None) == {"sweep": "abc123"}  # as `wandb sweep` prints
    with pytest.raises(runs.SourceError, match="expected wandb:ENTITY/PROJECT"):
        runs.load_runs("wandb:justone")


def test_where_keeps_the_runs_of_a_configuration_from_every_source(tmp_path, monkeypatch, capsys):
    study = write_study(tmp_path)
    assert sorted(runs.load_runs(str(study), where={"n_mels": 64}).run_id) == ["r64-1", "r64-2", "r64-3"]
    assert summarize.main([str(study), "--where", "n_mels=128, trial_num=2", "--format", "csv"]) == 0
    out = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert (out.n.tolist(), out.accuracy_mean.tolist()) == ([1], [0.82])
    assert summarize.main([str(study), "--where", "trial=3", "--by", "n_mels", "--format", "csv"]) == 0  # an alias
    assert pd.read_csv(io.StringIO(capsys.readouterr().out)).n_mels.tolist() == [128]  # r64-3 failed
    recs = [json.loads(p.read_text()) for p in sorted(study.glob("*.json"))]
    monkeypatch.setattr(runs, "wandb_api", lambda: FakeApi([FakeRun(r, r["status"], None) for r in recs]))
    remote = runs.load_runs("wandb:me/esc50", history=False, where={"n_mels": 128})
    assert sorted(remote.run_id) == ["r128-1", "r128-2", "r128-3"]
    assert cli.parse_where("stacked_win_lengths=[512, 1024],mix_up=true,f_max=none") == {
        "stacked_win_lengths": [512, 1024], "mix_up": 0.4, "f_max": None}  # commas in a list stay in its value
    for where, message in (("n_mel=64", "--where: unknown config key 'n_mel'; did you mean n_mels?"),
                           ("n_mels=many", "--where: n_mels: expected int, got 'many'"),
                           ("n_mels", "--where: expected KEY=VALUE, got 'n_mels'"),
                           ("n_mels=64,trial_num=9", f"--where trial_num=9: no run of {study} matches (with the "
                                                     "conditions before it); trial_num there: 1, 2, 3")):
        assert summarize.main([str(study), "--where", where]) == 2
        assert capsys.readouterr().err == f"analysis.summarize: {message}\n"


def _tamper(path: Path, **summary) -> None:
    rec = json.loads(path.read_text())
    rec["summary"].update(summary)
    path.write_text(json.dumps(rec))


@pytest.mark.parametrize("accuracy", [math.inf, 1e300, -0.5, math.nan])
def test_records_with_impossible_accuracy_are_never_ranked(tmp_path, capsys, accuracy):
    study = write_study(tmp_path)  # n_mels 128 (mean 82 %) is best; 64 (72 %) is made to look better
    _tamper(study / "r64-1.json", accuracy=accuracy, best_accuracy=accuracy)
    assert summarize.main([str(study), "--by", "n_mels"]) == 2
    err = capsys.readouterr().err
    assert f"{study / 'r64-1.json'}: malformed result record (summary.accuracy is" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 2  # the problem, then how to fix it
    assert summarize.main([str(study), "--by", "n_mels", "--skip-bad", "--format", "csv"]) == 0
    out, err = capsys.readouterr()
    table = pd.read_csv(io.StringIO(out))
    assert table.n_mels.tolist() == [128, 64] and table.n.tolist() == [3, 1]
    assert "skipped malformed record" in err and "r64-1.json" in err
    assert compare.main([str(study), "--by", "n_mels", "--skip-bad"]) == 0
    out = capsys.readouterr().out
    assert "inf" not in out and "reference n_mels=128" in out


@pytest.mark.slow
def test_string_history_values_are_skipped_by_the_report(tmp_path, capsys):
    study = write_study(tmp_path)
    rec = json.loads((study / "r128-1.json").read_text())
    rec["history"][1]["valid_loss"] = "0.6"
    (study / "r128-1.json").write_text(json.dumps(rec))
    assert report.main([str(study), "--out", str(tmp_path / "rep")]) == 2
    assert "history[1].valid_loss is '0.6', not a number" in capsys.readouterr().err
    assert report.main([str(study), "--skip-bad", "--out", str(tmp_path / "rep")]) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and "r128-1.json" in err


def test_a_fifo_among_the_records_is_skipped_not_waited_for(tmp_path, capsys):
    study = write_study(tmp_path)
    os.mkfifo(study / "pipe.json")  # opening it for reading would block until a writer came
    (study / "sub.json").mkdir()
    assert summarize.main([str(study), "--by", "n_mels", "--skip-bad"]) == 0
    out, err = capsys.readouterr()
    assert "82.00 ± 2.00" in out
    assert "skipped 2 *.json path(s) that are not regular files" in err and str(study / "pipe.json") in err


def test_states_no_record_or_wandb_knows_are_shown_as_unknown(tmp_path, monkeypatch):
    rec = json.loads((write_study(tmp_path) / "r128-1.json").read_text())
    monkeypatch.setattr(runs, "wandb_api", lambda: FakeApi([FakeRun(rec, "<img src=x onerror=alert(1)>", None),
                                                            FakeRun({**rec, "run_id": "r2"}, "killed", None)]))
    assert runs.load_runs("wandb:me/esc50", history=False).status.tolist() == ["unknown", "killed"]


@pytest.mark.slow
def test_a_run_id_that_is_no_file_name_is_refused_by_the_report(tmp_path, capsys):
    study = write_study(tmp_path)
    rec = json.loads((study / "r128-3.json").read_text())  # the run with predictions: its id names the report's csv
    (study / "r128-3.json").write_text(json.dumps({**rec, "run_id": "../../escaped"}))
    assert report.main([str(study), "--out", str(tmp_path / "rep")]) == 2
    assert "run_id '../../escaped' is not a file name" in capsys.readouterr().err
    assert report.main([str(study), "--skip-bad", "--out", str(tmp_path / "rep")]) == 0
    assert "Traceback" not in capsys.readouterr().err and not (tmp_path / "escaped.csv").exists()


def test_distinct_values_match_those_of_their_json_text():
    """Cells are told apart without writing each as JSON, yet as JSON would: NaNs alike, -0.0 apart from 0.0, 1
    apart from 1.0 and True, a tuple like the list it was, dicts whatever their key order."""
    values = [None, float("nan"), float("nan"), -0.0, 0.0, 1, 1.0, True, "1", (1, 2), [1, 2], {"a": 1, "b": 2},
              {"b": 2, "a": 1}, 1, "x", None]
    by_json = list({json.dumps(v, sort_keys=True, default=str): v for v in reversed(values)}.values())[::-1]
    got = checks.distinct_values(values)
    assert len(got) == len(by_json) == 11
    assert [json.dumps(v, sort_keys=True) for v in got] == \
        list(dict.fromkeys(json.dumps(v, sort_keys=True, default=str) for v in values))
