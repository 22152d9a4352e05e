"""Analysis: loading runs (local records, W&B through a fake API), tables checked against hand-computed numbers,
warnings and error messages, figures, the report script and notebook, and records train.py really wrote."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from types import SimpleNamespace

import nbformat
import numpy as np
import pandas as pd
import pytest
from IPython.core.inputtransformer2 import TransformerManager

from analysis import plots, report, runs, summarize
from audiosweep.config import FIELDS, Config
from audiosweep.results import Summary, make_record, save_predictions, write_json_atomic
from tests.conftest import REPO, TINY

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
CLASSES = ["dog", "rooster", "rain"]


def write_run(folder: Path, run_id: str, acc: float | None, valid_loss: float = 1.0, status: str = "finished",
              preds: bool = False, **config) -> dict:
    """A result record as train.py writes it (2 epochs), with the given final accuracy and config changes."""
    cfg = {**Config().to_dict(), **config}
    history = [] if acc is None else [
        {"epoch": 1, "train_loss": 2.0, "valid_loss": valid_loss + 0.5, "accuracy": acc - 0.1, "time_s": 1.0},
        {"epoch": 2, "train_loss": 1.5, "valid_loss": valid_loss, "accuracy": acc, "time_s": 1.0}]
    summary = Summary(wall_time_s=3.5) if acc is None else Summary(
        accuracy=acc, best_accuracy=acc, train_loss=1.5, valid_loss=valid_loss, epochs=2, n_train=80, n_valid=20,
        wall_time_s=3.5)
    rec = make_record(cfg, run_id, status, history, summary, {"device": "cpu"},
                      None if status == "finished" else "RuntimeError: boom", classes=CLASSES)
    write_json_atomic(folder / f"{run_id}.json", rec)
    if preds:  # 3 classes x 4 clips; 11 of 12 right
        targets = np.repeat(np.arange(3), 4)
        predicted = targets.copy()
        predicted[5] = 2
        save_predictions(folder / f"{run_id}.preds.npz", np.eye(3)[predicted], targets, CLASSES,
                         [f"{i}.wav" for i in range(12)])
    return rec


@pytest.fixture
def study(tmp_path) -> Path:
    """n_mels 128: 0.80 / 0.82 / 0.84 (mean 0.82, std 0.02); n_mels 64: 0.70 / 0.74 (mean 0.72, std 0.0283);
    and a failed n_mels 64 run."""
    folder = tmp_path / "results" / "nmels"
    for trial, (acc, loss) in enumerate([(0.80, 0.5), (0.82, 0.6), (0.84, 0.7)], 1):
        write_run(folder, f"r128-{trial}", acc, loss, n_mels=128, trial_num=trial, preds=trial == 3)
    for trial, acc in enumerate([0.70, 0.74], 1):
        write_run(folder, f"r64-{trial}", acc, 0.9, n_mels=64, trial_num=trial)
    write_run(folder, "r64-3", None, status="failed", n_mels=64, trial_num=3)
    return folder


@pytest.fixture
def final_study(tmp_path) -> Path:
    """Fold 1: 0.80 / 0.90; fold 2: 0.70 / 0.74 / 0.78."""
    folder = tmp_path / "final"
    for fold, accs in ((1, [0.80, 0.90]), (2, [0.70, 0.74, 0.78])):
        for trial, acc in enumerate(accs, 1):
            write_run(folder, f"f{fold}-t{trial}", acc, fold=fold, trial_num=trial, preds=True)
    return folder


def test_local_loader_columns_and_values(study):
    df = runs.load_runs(str(study))
    assert list(df.columns) == runs.COLUMNS and list(df.columns[:len(FIELDS)]) == list(FIELDS)
    assert len(df) == 6 and set(df.sweep) == {"nmels"}
    failed = df[df.run_id == "r64-3"].iloc[0]
    assert failed.status == "failed" and math.isnan(failed.accuracy) and failed.wall_time_s == 3.5
    row = df[df.run_id == "r128-2"].iloc[0]
    assert (row.n_mels, row.trial_num, row.accuracy, row.valid_loss, row.epochs) == (128, 2, 0.82, 0.6, 2)
    assert row.hop_length == 308 and row.hop_length_ms is None  # an int beside None stays an int
    assert row.history[-1] == {"epoch": 2, "train_loss": 1.5, "valid_loss": 0.6, "accuracy": 0.82}
    assert Path(row.record_path) == study / "r128-2.json"


def test_group_stats_match_hand_computed(study):
    stats = summarize.group_stats(runs.load_runs(str(study)), ["n_mels"])
    assert list(stats.n_mels) == [128, 64] and list(stats.n) == [3, 2]  # best first, failed run left out
    assert stats.accuracy_mean.tolist() == pytest.approx([0.82, 0.72])
    assert stats.accuracy_std.tolist() == pytest.approx([0.02, 0.0282842712])
    assert stats.accuracy_min.tolist() == pytest.approx([0.80, 0.70])
    assert stats.accuracy_max.tolist() == pytest.approx([0.84, 0.74])
    assert stats.valid_loss_mean.tolist() == pytest.approx([0.6, 0.9])
    assert stats.valid_loss_std[0] == pytest.approx(0.1)


def test_summarize_cli_formats_and_warnings(study, capsys):
    assert summarize.main([str(study), "--by", "n_mels"]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["n_mels", "n"]
    assert "82.00 ± 2.00" in lines[2] and lines[2].split()[:2] == ["128", "3"]
    assert "72.00 ± 2.83" in lines[3] and "0.6000 ± 0.1000" in lines[2]
    assert "1 of 6 runs left out of the statistics (failed: 1" in err and "r64-3" in err
    assert "unequal group sizes: 3 runs: n_mels=128; 2 runs: n_mels=64" in err

    assert summarize.main([str(study), "--by", "n_mels", "--format", "csv"]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert table.n_mels.tolist() == [128, 64]
    assert table.accuracy_std.tolist() == pytest.approx([0.02, 0.0282842712])

    assert summarize.main([str(study), "--by", "n_mels", "--format", "markdown"]) == 0
    md = capsys.readouterr().out.splitlines()
    assert md[0].startswith("| n_mels |") and set(md[1]) <= set("|-: ") and md[2].startswith("|    128 | 3 |")


def test_folds_table_matches_hand_computed(final_study, capsys):
    table = summarize.fold_table(runs.load_runs(str(final_study))).set_index("fold")
    assert table.loc["1", ["n", "mean", "std"]].tolist() == pytest.approx([2, 0.85, 0.0707106781])
    assert table.loc["2", ["n", "mean", "std"]].tolist() == pytest.approx([3, 0.74, 0.04])
    assert table.loc["all runs", ["n", "mean", "std"]].tolist() == pytest.approx([5, 0.784, 0.0753657747])
    assert table.loc["mean of fold means", ["n", "mean", "std"]].tolist() == pytest.approx([2, 0.795, 0.0777817459])

    assert summarize.main([str(final_study), "--folds"]) == 0
    out, err = capsys.readouterr()
    rows = {line.split("  ")[0]: line for line in out.splitlines()[2:]}
    assert "85.00 ± 7.07" in rows["1"] and "74.00 ± 4.00" in rows["2"]
    assert "78.40 ± 7.54" in rows["all runs"] and "79.50 ± 7.78" in rows["mean of fold means"]
    assert "2 folds" in rows["mean of fold means"]
    assert "unequal group sizes: 3 runs: fold=2; 2 runs: fold=1" in err


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


def test_format_value_units():
    assert summarize.format_value("hop_length", 308, 44100) == "308 (7.0 ms)"
    assert summarize.format_value("win_length", 2205, 44100) == "2205 (50.0 ms)"
    assert summarize.format_value("n_fft", 4096, 44100) == "4096 (92.9 ms)"
    assert summarize.format_value("hop_length_ms", 10.0, 44100) == "10 ms (441)"
    assert summarize.format_value("f_max", 18000.0) == "18 kHz"
    assert summarize.format_value("f_min", 500.0) == "500 Hz"
    assert summarize.format_value("sample_rate", 44100) == "44.1 kHz"
    assert summarize.format_value("stacked_win_lengths", (1024, 2048), 44100) == "1024/2048"
    assert summarize.format_value("hop_length_ms", None) == "none"


def test_empty_and_missing_folders(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert summarize.main([str(tmp_path / "empty"), "--by", "n_mels"]) == 1
    assert f"no result records under {tmp_path / 'empty'}" in capsys.readouterr().err
    assert plots.main([str(tmp_path / "nope"), "--by", "n_mels", "--out", str(tmp_path / "f")]) == 1
    assert "nope: no such folder" in capsys.readouterr().err


def test_malformed_record_names_the_file(study, capsys):
    (study / "broken.json").write_text('{"record_version": 1, "config": {')  # cut short
    assert summarize.main([str(study), "--by", "n_mels"]) == 1
    err = capsys.readouterr().err
    assert f"{study / 'broken.json'}: not a readable result record" in err and "--skip-bad" in err
    assert summarize.main([str(study), "--by", "n_mels", "--skip-bad"]) == 0
    out, err = capsys.readouterr()
    assert "skipped malformed record" in err and "broken.json" in err and "82.00 ± 2.00" in out

    (study / "broken.json").unlink()
    write_json_atomic(study / "nosummary.json", {"record_version": 1, "run_id": "x", "config": {}, "status": "ok",
                                                 "history": []})
    assert summarize.main([str(study)]) == 1
    assert "nosummary.json: not a result record (missing summary)" in capsys.readouterr().err


def test_files_that_are_not_records_are_left_out(study, capsys):
    write_json_atomic(study / "logs" / "abc.args.json", {"n_mels": 64})  # the sweep runner's
    write_json_atomic(study / "wandb" / "run-1" / "files" / "wandb-summary.json", {"accuracy": 1.0})
    (study / ".r9.json.123.tmp").write_text("{")
    (study / ".hidden.json").write_text("{")
    assert len(runs.load_runs(str(study))) == 6
    assert capsys.readouterr().err == ""
    write_json_atomic(study / "state.json", {"done": 3})
    assert len(runs.load_runs(str(study))) == 6
    assert "not result records, e.g. " in capsys.readouterr().err


def test_mixed_sweeps_warn_and_filter(study, tmp_path, capsys):
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
    assert summarize.main([source, "--sweep", "nope"]) == 1
    assert "no sweep 'nope' under" in capsys.readouterr().err


def test_bad_arguments(study, capsys):
    assert summarize.main([str(study), "--by", "n_mel"]) == 1
    assert "did you mean n_mels?" in capsys.readouterr().err
    assert summarize.main([str(study), "--tags", "a"]) == 1
    assert "wandb:ENTITY/PROJECT" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        summarize.main([str(study), "--format", "html"])


class FakeRun:
    """The attributes of ``wandb.apis.public.Run`` the loader reads, filled from a local record."""

    def __init__(self, rec: dict, state: str, sweep: str | None):
        self.id, self.config, self.state = rec["run_id"], dict(rec["config"]), state
        self.summary = {"_runtime": 4, "_wandb": {"runtime": 4}, **rec["summary"]}
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


def test_wandb_loader_matches_local_loader(study, monkeypatch):
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


def test_wandb_states_sweeps_and_errors(study, monkeypatch):
    rec = json.loads((study / "r128-1.json").read_text())
    rec2 = {**rec, "run_id": "r2", "summary": {"_runtime": 7}, "history": []}
    monkeypatch.setattr(runs, "wandb_api", lambda: FakeApi([FakeRun(rec, "finished", None),
                                                            FakeRun(rec2, "crashed", None)]))
    df = runs.load_runs("wandb:me/esc50", history=False)
    assert df.status.tolist() == ["finished", "crashed"] and df.sweep.tolist() == ["", ""]
    assert df.wall_time_s.tolist() == [3.5, 7] and df.history.tolist() == [[], []]
    assert "1 of 2 runs left out of the statistics (crashed: 1" in runs.check(df, ["n_mels"])[0]

    def offline():
        raise ConnectionError("no network")

    monkeypatch.setattr(runs, "wandb_api", offline)
    with pytest.raises(runs.SourceError, match="wandb:me/esc50: cannot list runs .* `wandb login`"):
        runs.load_runs("wandb:me/esc50")
    assert runs.wandb_filters("me/esc50/abc123", None, None) == {"sweep": "abc123"}  # as `wandb sweep` prints
    with pytest.raises(runs.SourceError, match="expected wandb:ENTITY/PROJECT"):
        runs.load_runs("wandb:justone")


def is_png(path: Path, min_kb: int = 10) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > min_kb * 1024


def test_plots_cli_writes_figures(study, tmp_path, capsys):
    out = tmp_path / "figs"
    assert plots.main([str(study), "--by", "n_mels", "--out", str(out)]) == 0
    written = [Path(p) for p in capsys.readouterr().out.split()]
    names = {p.name for p in written}
    assert names == {f"{n}.{ext}" for n in ("accuracy_by_n_mels", "curves_by_n_mels", "confusion_r128-3")
                     for ext in ("png", "svg")}  # one fold: no per-fold figure
    for p in written:
        assert is_png(p) if p.suffix == ".png" else p.read_text().startswith("<?xml")
    assert plots.main([str(study), "--by", "n_mels", "--out", str(out), "--run", "r64-1"]) == 1
    assert "no predictions file r64-1.preds.npz" in capsys.readouterr().err


def test_fold_and_confusion_figures(final_study, tmp_path):
    df = runs.load_runs(str(final_study))
    paths = plots.write_figures(df, [], tmp_path, run_id="f2-t1")
    assert {p.name for p in paths if p.suffix == ".png"} == {"curves.png", "folds.png", "confusion_f2-t1.png"}
    assert all(is_png(p) for p in paths if p.suffix == ".png")
    fig = plots.plot_confusion(plots.pick_run(df, "f2-t1"))
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == CLASSES
    assert ax.images[0].get_array()[1].tolist() == pytest.approx([0, 0.75, 0.25])  # rows normalised


def test_param_figure_labels_units(tmp_path):
    for hop, accs in ((308, [0.8, 0.84]), (441, [0.7, 0.74])):
        for t, acc in enumerate(accs, 1):
            write_run(tmp_path, f"h{hop}-{t}", acc, hop_length=hop, trial_num=t)
    fig = plots.plot_param(runs.load_runs(str(tmp_path)), "hop_length")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["308 (7.0 ms)\nn=2", "441 (10.0 ms)\nn=2"]
    assert ax.get_xlabel() == "hop_length: STFT hop (samples, ms)" and ax.get_ylabel() == "validation accuracy"


def test_report_script(final_study, study, tmp_path, capsys):
    out = tmp_path / "report"
    assert report.main([str(final_study), "--out", str(out)]) == 0
    page = Path(capsys.readouterr().out.strip())
    text = page.read_text()
    assert page == out / "report.md" and "## Per fold" in text and "| mean of fold means |" in text
    assert "79.50 ± 7.78" in text and "## All runs" in text  # no parameter varies but the fold
    images = [line[line.index("(") + 1:-1] for line in text.splitlines() if line.startswith("![")]
    assert "folds.png" in images and all(is_png(out / name) for name in images)

    assert report.main([str(study), "--out", str(tmp_path / "r2")]) == 0
    text = (tmp_path / "r2" / "report.md").read_text()
    assert "## n_mels" in text and "82.00 ± 2.00" in text and "## Per fold" not in text
    assert "> warning: 1 of 6 runs left out" in text and "![accuracy by n_mels](accuracy_by_n_mels.png)" in text
    assert pd.read_csv(tmp_path / "r2" / "accuracy_by_n_mels.csv").accuracy_mean.tolist() == pytest.approx([.82, .72])


def test_notebook_is_valid_and_runs(final_study, tmp_path):
    path = REPO / "analysis" / "report.ipynb"
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "clear the notebook's outputs"
    for cell in code:
        compile(TransformerManager().transform_cell(cell.source), str(path), "exec")
    from nbclient import NotebookClient

    params = next(c for c in code if "parameters" in c.metadata.get("tags", []))
    params.source = f"SOURCE = {str(final_study)!r}\nSWEEP = None\nBY = None\nMETRIC = 'accuracy'\n" \
                    f"OUT = {str(tmp_path / 'nb')!r}"
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    assert is_png(tmp_path / "nb" / "folds.png") and (tmp_path / "nb" / "report.md").is_file()
    shown = [o for c in code for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(shown) == 3  # curves, folds, confusion matrix


@pytest.fixture(scope="module")
def trained(tmp_path_factory, synth_root, cache_dir) -> Path:
    """Records train.py really wrote: n_mels 32 and 40, 2 epochs each, in sweep folder 'tiny'."""
    import train

    out = tmp_path_factory.mktemp("trained") / "tiny"
    for n_mels in (32, 40):
        argv = ["--data_dir", str(synth_root), "--allow_missing", "true", "--esc10", "true", "--cache_dir",
                str(cache_dir), "--results_dir", str(out), *TINY, "--n_mels", str(n_mels), "--n_epochs", "2"]
        assert train.main(argv) == 0
    return out


@pytest.mark.slow
def test_records_written_by_train_py(trained, tmp_path, capsys):
    df = runs.load_runs(str(trained))
    assert list(df.columns) == runs.COLUMNS and sorted(df.n_mels) == [32, 40]
    assert (df.status == "finished").all() and df.sweep.unique().tolist() == ["tiny"]
    assert [len(h) for h in df.history] == [2, 2] and df.accuracy.between(0, 1).all()
    assert summarize.main([str(trained), "--by", "n_mels", "--format", "csv"]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out)).set_index("n_mels")
    assert table.accuracy_mean.to_dict() == pytest.approx(dict(zip(df.n_mels, df.accuracy, strict=True)))
    assert plots.main([str(trained), "--by", "n_mels", "--out", str(tmp_path)]) == 0
    confusion = next(tmp_path.glob("confusion_*.png"))
    assert is_png(confusion)
    best = plots.pick_run(df)
    assert best.accuracy == df.accuracy.max() and confusion.name == f"confusion_{best.run_id}.png"
    labels = [t.get_text() for t in plots.plot_confusion(best).axes[0].get_yticklabels()]
    assert len(labels) == 10 and "dog" in labels
