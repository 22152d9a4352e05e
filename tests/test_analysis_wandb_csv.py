"""W&B runs-table exports as an analysis source (analysis.wandb_csv through analysis.runs.load_runs): a small
export written here, the report's real one (its headline numbers), every command on it, and the refusals."""

from __future__ import annotations

import io
import math
from pathlib import Path

import pandas as pd
import pytest

from analysis import compare, ensemble, importance, interactions, plots, report, runs, summarize, wandb_csv

# The report's W&B export (jhartquist/fastaudio-experiments, esc-50/fastaudio_esc50_1430_runs.csv): 1,430 runs.
EXPORT = Path(__file__).parent / "data" / "fastaudio_esc50_runs.csv"
RESNET18_FINAL, DENSENET161_FINAL = "3wp1qhom", "4w53cyvu"  # the report's final sweeps (5 trials per value)

HEADER = "Name,ID,Runtime,Sweep,State,accuracy,epoch,n_mels,normalize,mix_up,arch,Tags\n"
ROWS = ["a-1,id1,100,sw1,finished,0.80,3,64,true,0.4,resnet18,x\n",
        "a-2,id2,110,sw1,Finished,0.84,3,64,false,0.4,resnet18,x\n",
        "b-1,id3,120,sw1,crashed,,1,128,true,,resnet18,\n",
        "c-1,id4,130,sw2,finished,0.90,3,128,true,0.1,densenet161,\n"]


def write_export(path: Path, rows: list[str] = ROWS, header: str = HEADER) -> str:
    path.write_text(header + "".join(rows))
    return str(path)


def test_an_export_loads_into_the_runs_columns(tmp_path, capsys):
    df = runs.load_runs(write_export(tmp_path / "runs.csv"))
    assert list(df.columns) == runs.COLUMNS
    assert "left out 1 column(s) that are neither config keys nor summary metrics: Tags" in capsys.readouterr().err
    assert df.run_id.tolist() == ["id1", "id2", "id3", "id4"] and df.name.tolist() == ["a-1", "a-2", "b-1", "c-1"]
    assert df.status.tolist() == ["finished", "finished", "crashed", "finished"]
    assert df.sweep.tolist() == ["sw1", "sw1", "sw1", "sw2"] and df.wall_time_s.tolist() == [100, 110, 120, 130]
    assert df.epochs.tolist() == [3, 3, 1, 3] and df.history.tolist() == [[], [], [], []]
    assert df.record_path.isna().all() and math.isnan(df.accuracy[2]) and df.best_accuracy.isna().all()
    # typed through our keys: the report's normalize booleans, numbers as numbers
    assert df.normalize.tolist() == ["global", "none", "global", "global"] and df.n_mels.tolist() == [64, 64, 128, 128]
    assert df.mix_up[0] == 0.4 and df.mix_up[2] is None  # an empty cell: not logged, so unknown
    # keys the export lacks stay unknown rather than taking our defaults
    for key in ("sample_rate", "fold", "trial_num", "pretrained", "learning_rate", "dataset"):
        assert df[key].isna().all(), key


def test_an_export_without_state_or_epoch(tmp_path):
    path = write_export(tmp_path / "runs.csv", ["a,id1,5,,0.5,64\n"], "Name,ID,Runtime,Sweep,accuracy,n_mels\n")
    row = runs.load_runs(path).iloc[0]
    assert (row.status, row.sweep, row.wall_time_s, row.n_mels) == ("finished", "", 5, 64)
    assert math.isnan(row.epochs)  # unknown, not the 0 epochs of an empty history


def test_sweep_and_where_select_rows_of_an_export(tmp_path, capsys):
    path = write_export(tmp_path / "runs.csv")
    assert runs.load_runs(path, sweep="sw2").run_id.tolist() == ["id4"]
    assert runs.load_runs(path, sweep="me/esc50/sw2").run_id.tolist() == ["id4"]  # as `wandb sweep` prints it
    assert summarize.main([path, "--sweep", "sw1", "--where", "n_mels=64,normalize=global", "--format", "csv"]) == 0
    assert pd.read_csv(io.StringIO(capsys.readouterr().out)).n.tolist() == [1]
    assert summarize.main([path, "--where", "arch=densenet161,mix_up=0.1", "--by", "n_mels", "--format", "csv"]) == 0
    assert pd.read_csv(io.StringIO(capsys.readouterr().out)).accuracy_mean.tolist() == [0.9]
    assert summarize.main([path, "--sweep", "nope"]) == 2
    assert capsys.readouterr().err.endswith(f"no sweep 'nope' in {path}; sweeps there: sw1, sw2\n")


@pytest.mark.parametrize(("content", "message"), [
    (b"Name,ID,Sweep,accuracy\na,b,c,0.5\n", "not a W&B runs-table export: missing column(s) Runtime (it needs Name, "
                                            "ID, Runtime, Sweep, optionally State"),
    (b"", "not a W&B runs-table export: missing column(s) Name, ID, Runtime, Sweep ("),
    (b"\xff\xfe\x00\x01", "not a readable CSV file (UnicodeDecodeError"),
    (HEADER.encode(), "no runs (a header and no rows)")])
def test_a_file_that_is_no_export_is_refused_in_one_line(tmp_path, capsys, content, message):
    (tmp_path / "x.csv").write_bytes(content)
    for command, extra in ((summarize.main, []), (compare.main, ["--by", "n_mels"]), (importance.main, [])):
        assert command([str(tmp_path / "x.csv"), *extra]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"{tmp_path / 'x.csv'}: {message}" in err, err
    assert summarize.main([str(tmp_path / "nope.csv")]) == 2
    assert "nope.csv: no such file (give a W&B runs-table export" in capsys.readouterr().err


@pytest.mark.parametrize(("row", "message"), [("z,id9,10,sw1,finished,0.7,3,abc,true,0.4,resnet18,\n",
                                               "n_mels: expected int, got 'abc'"),
                                              ("z,id9,10,sw1,finished,high,3,64,true,0.4,resnet18,\n",
                                               "accuracy: expected a number, got 'high'"),
                                              ("z,id9,10,sw1,finished,0.7,3,64,maybe,0.4,resnet18,\n",
                                               "normalize: 'maybe' is not one of"),
                                              ("z,,10,sw1,finished,0.7,3,64,true,0.4,resnet18,\n", "no ID"),
                                              ("z,id9,10,sw1\n", "not as many cells as the header has columns")])
def test_unreadable_rows_stop_the_load_or_are_skipped(tmp_path, capsys, row, message):
    path = write_export(tmp_path / "runs.csv", [*ROWS, row])
    assert summarize.main([path]) == 2
    err = capsys.readouterr().err
    assert f"{path}, line 6 (ID " in err and message in err and "--skip_bad" in err and "Traceback" not in err
    assert summarize.main([path, "--skip-bad", "--format", "csv"]) == 0
    out, err = capsys.readouterr()
    assert "skipped unreadable row" in err and message in err and pd.read_csv(io.StringIO(out)).n.tolist() == [3]


def test_read_export_names_what_it_leaves_out(tmp_path):
    export = wandb_csv.read_export(write_export(tmp_path / "runs.csv", [*ROWS, "z,,1,s,finished\n"]), skip_bad=True)
    assert [r.run_id for r in export.runs] == ["id1", "id2", "id3", "id4"] and export.ignored == ["Tags"]
    assert len(export.bad) == 1 and "line 6" in export.bad[0]
    assert export.runs[0].config == {"n_mels": 64, "normalize": "global", "mix_up": 0.4, "arch": "resnet18"}


def test_the_reports_headline_numbers_from_its_export(capsys):
    assert summarize.main([str(EXPORT), "--sweep", RESNET18_FINAL, "--by", "n_epochs"]) == 0
    out, err = capsys.readouterr()
    assert "      80  25        89.54 ± 1.94 [88.74, 90.34]" in out and err == ""
    assert summarize.main([str(EXPORT), "--sweep", DENSENET161_FINAL, "--by", "n_epochs"]) == 0
    assert "      80  25        91.47 ± 1.96 [90.66, 92.28]" in capsys.readouterr().out
    df = runs.load_runs(str(EXPORT))
    assert len(df) == 1430 and df.sweep.nunique() == 12 and (df.status == "finished").all()
    assert df[df.n_epochs == 80].epochs.dropna().eq(81).all()  # fine_tune's frozen epoch counts in `epoch`
    assert set(df.normalize) == {"global", "none"}


@pytest.mark.slow
def test_every_command_reads_the_export(tmp_path, capsys):
    source, sweep = str(EXPORT), ["--sweep", "q2bp6t59"]  # the n_mels sweep: 14 values x 3 epochs x 5 trials
    assert compare.main([source, *sweep, "--by", "n_mels", "--where", "n_epochs=80"]) == 0
    out = capsys.readouterr().out
    assert "reference n_mels=128" in out and [line.split()[0] for line in out.splitlines() if "worse" in line] == ["32"]
    assert importance.main([source, "--where", "n_epochs=80"]) == 0
    assert capsys.readouterr().out.splitlines()[2].startswith("mix_up ")  # the most important key at 80 epochs
    assert interactions.main([source, *sweep, "--by", "n_mels,n_epochs", "--out", str(tmp_path / "i")]) == 0
    assert plots.main([source, *sweep, "--by", "n_mels", "--out", str(tmp_path / "p")]) == 0
    assert (tmp_path / "p" / "accuracy_by_n_mels_q2bp6t59.png").is_file()
    assert not (tmp_path / "p" / "curves_by_n_mels_q2bp6t59.png").exists()  # no per-epoch history in an export
    assert report.main([source, *sweep, "--out", str(tmp_path / "r")]) == 0
    page = (tmp_path / "r" / "report.md").read_text()
    assert "## n_mels" in page and "## n_epochs" in page
    capsys.readouterr()
    assert ensemble.main([source, *sweep, "--over", "trial_num"]) == 2
    assert capsys.readouterr().err.endswith("a W&B runs-table export holds no predictions; ensembles average the "
                                            "<run_id>.preds.npz files beside result records (give their folder)\n")
    for command, extra in ((summarize.main, []), (plots.main, ["--out", str(tmp_path / "f")])):
        assert command([source, *sweep, "--folds", *extra]) == 2
        assert "--folds: no run says which fold it used" in capsys.readouterr().err


def test_impossible_accuracies_and_unknown_states_of_an_export_are_never_ranked(tmp_path, capsys):
    rows = [*ROWS[:2], "d-1,id5,90,sw1,finished,inf,3,128,true,0.4,resnet18,\n",
            "d-2,id6,90,sw1,finished,1.5,3,128,true,0.4,resnet18,\n",
            "d-3,id7,90,sw1,<b>up</b>,0.99,3,128,true,0.4,resnet18,\n"]
    path = write_export(tmp_path / "runs.csv", rows)
    assert summarize.main([path, "--by", "n_mels", "--format", "csv"]) == 0
    out, err = capsys.readouterr()
    assert pd.read_csv(io.StringIO(out)).n_mels.tolist() == [64]  # 128 has no usable accuracy
    assert "run id5: accuracy is inf, which no run can reach" in err and "run id6: accuracy is 1.5" in err
    assert runs.load_runs(path).status.tolist()[-1] == "unknown"
