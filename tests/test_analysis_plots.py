"""Figures: values and axis labels from the config's metadata (analysis.labels), the report's plan
(analysis.plan), the drawings (analysis.figures) and the files the plots command writes."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from analysis import figures, labels, plan, plots, runs
from audiosweep import config
from tests.analysis_records import CLASSES, is_png, write_final_study, write_run, write_study

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_format_value_units():
    assert labels.format_value("hop_length", 308, 44100) == "308 (7.0 ms)"
    assert labels.format_value("win_length", 2205, 44100) == "2205 (50.0 ms)"
    assert labels.format_value("n_fft", 4096, 44100) == "4096 (92.9 ms)"
    assert labels.format_value("hop_length_ms", 10.0, 44100) == "10 ms (441)"
    assert labels.format_value("f_max", 18000.0) == "18 kHz"
    assert labels.format_value("f_min", 500.0) == "500 Hz"
    assert labels.format_value("sample_rate", 44100) == "44.1 kHz"
    assert labels.format_value("stacked_win_lengths", (1024, 2048), 44100) == "1024/2048"
    assert labels.format_value("hop_length_ms", None) == "none"
    assert labels.format_value("batch_size", 64, 44100) == "64" and labels.format_value("mix_up", 0.1) == "0.1"


def test_labels_and_units_come_from_the_config(monkeypatch):
    hop = config.FIELDS["hop_length"].metadata
    assert labels.axis_label("hop_length") == f"hop_length: {hop['label']} (samples, ms)" == \
        "hop_length: STFT hop (samples, ms)"
    assert labels.axis_label("hop_length_ms") == "hop_length_ms: STFT hop (ms, samples)"
    assert labels.axis_label("stacked_win_lengths") == "stacked_win_lengths: stacked windows (samples)"
    assert labels.axis_label("batch_size") == "batch_size: batch size (clips)"
    assert labels.axis_label("f_max") == "f_max: highest mel frequency"  # its values say Hz or kHz
    assert labels.axis_label("device") == "device"  # no label
    for key, field in config.FIELDS.items():
        if field.metadata["label"]:
            assert field.metadata["label"] in labels.axis_label(key)

    # another label and unit in the metadata: another axis label, and values shown in the new unit
    monkeypatch.setitem(config.FIELDS, "n_mels", SimpleNamespace(metadata={"label": "mel filters", "unit": "ms"}))
    assert labels.axis_label("n_mels") == "n_mels: mel filters (ms, samples)"
    assert labels.format_value("n_mels", 10.0, 16000) == "10 ms (160)"


def test_param_figure_labels_units(tmp_path):
    for hop, accs in ((308, [0.8, 0.84]), (441, [0.7, 0.74])):
        for t, acc in enumerate(accs, 1):
            write_run(tmp_path, f"h{hop}-{t}", acc, hop_length=hop, trial_num=t)
    fig = figures.plot_param(runs.load_runs(str(tmp_path)), "hop_length")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["308 (7.0 ms)\nn=2", "441 (10.0 ms)\nn=2"]
    assert ax.get_xlabel() == labels.axis_label("hop_length") == "hop_length: STFT hop (samples, ms)"
    assert ax.get_ylabel() == "validation accuracy"


def names(section: plan.Section) -> list[str]:
    return [f.name for f in section.figures]


def test_plan_sections_in_order(tmp_path, monkeypatch):
    study = write_study(tmp_path)
    final_study = write_final_study(tmp_path)
    for name in ("plot_param", "plot_curves", "plot_folds", "plot_confusion"):  # planning draws nothing
        monkeypatch.setattr(figures, name, lambda *a, **k: pytest.fail("drawn while planning"))
    df = runs.load_runs(str(study))
    sections = plan.sections(df, ["n_mels"])
    assert [(s.kind, s.title, s.by) for s in sections] == [(plan.PARAMETER, "n_mels", ["n_mels"]),
                                                           (plan.CONFUSION, "Confusion matrix", [])]
    assert [names(s) for s in sections] == [["accuracy_by_n_mels_nmels", "curves_by_n_mels_nmels"],
                                            ["confusion_r128-3_nmels"]]
    assert sections[1].note == "The best (highest accuracy) run, r128-3: rows are true classes, normalised to 1."
    assert [names(s) for s in plan.sections(df, ["n_mels"], folds=True)][1] == ["folds_nmels"]  # forced
    assert [names(s) for s in plan.sections(df, ["n_mels", "arch"], "best_accuracy")] == [
        ["best_accuracy_by_n_mels_nmels", "curves_by_n_mels_nmels"],
        ["best_accuracy_by_arch_nmels", "curves_by_arch_nmels"], ["confusion_r128-3_nmels"]]

    final = runs.load_runs(str(final_study))
    sections = plan.sections(final, [])
    assert [(s.kind, s.title, names(s)) for s in sections] == [
        (plan.PARAMETER, "All runs", ["curves_final"]), (plan.FOLDS, "Per fold", ["folds_final"]),
        (plan.CONFUSION, "Confusion matrix", ["confusion_f1-t2_final"])]
    assert [s.kind for s in plan.sections(final, ["fold"], folds=False)] == [plan.PARAMETER, plan.CONFUSION]
    assert plan.sections(final, ["fold", "n_mels"])[-2].by == ["n_mels"]  # per fold: by the other keys
    chosen = plan.sections(final, [], run_id="f2-t1")[-1]
    assert names(chosen) == ["confusion_f2-t1_final"] and chosen.note.startswith("The chosen run, f2-t1:")


def test_plan_without_predictions_or_finished_runs(tmp_path):
    study = write_study(tmp_path)
    for path in study.glob("*.preds.npz"):
        path.unlink()
    df = runs.load_runs(str(study))
    confusion = plan.sections(df, [])[-1]
    assert confusion.figures == [] and confusion.skipped.startswith("no run has a <run_id>.preds.npz beside its")
    assert confusion.note == f"Not drawn: {labels.md_escape(confusion.skipped)}"  # Markdown: <run_id> escaped
    with pytest.raises(runs.SourceError, match="--run r64-1: no predictions file r64-1.preds.npz beside"):
        plan.sections(df, [], run_id="r64-1")
    with pytest.raises(runs.SourceError, match="--run nope: no such run"):
        plan.sections(df, [], run_id="nope")
    with pytest.raises(runs.SourceError, match="no finished runs with accuracy"):
        plan.sections(df[df.status == "failed"], [])


@pytest.mark.slow
def test_plots_cli_writes_figures(tmp_path, capsys):
    study = write_study(tmp_path)
    out = tmp_path / "figs"
    assert plots.main([str(study), "--by", "n_mels", "--out", str(out)]) == 0
    written = [Path(p) for p in capsys.readouterr().out.split()]
    assert {p.name for p in written} == {f"{n}_nmels.{ext}" for n in ("accuracy_by_n_mels", "curves_by_n_mels",
                                                                      "confusion_r128-3") for ext in ("png", "svg")}
    for p in written:  # one fold: no per-fold figure
        assert is_png(p) if p.suffix == ".png" else p.read_text().startswith("<?xml")
    assert plots.main([str(study), "--by", "n_mels", "--out", str(tmp_path / "bad"), "--run", "r64-1"]) == 2
    assert "no predictions file r64-1.preds.npz" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()  # the plan fails before anything is drawn

    assert plots.main([str(study), "--out", str(tmp_path / "forced"), "--folds"]) == 0
    assert {Path(p).name for p in capsys.readouterr().out.split()} >= {"curves_nmels.png", "folds_nmels.png"}


def test_plots_cli_warns_without_predictions(tmp_path, capsys):
    study = write_study(tmp_path)
    for path in study.glob("*.preds.npz"):
        path.unlink()
    assert plots.main([str(study), "--out", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert [Path(p).name for p in out.split()] == ["curves_nmels.png", "curves_nmels.svg"]
    assert "warning: no run has a <run_id>.preds.npz beside its record" in err


def test_fold_and_confusion_figures(tmp_path):
    final_study = write_final_study(tmp_path)
    df = runs.load_runs(str(final_study))
    paths = plots.write_figures(df, [], tmp_path, run_id="f2-t1")
    assert {p.name for p in paths if p.suffix == ".png"} == {"curves_final.png", "folds_final.png",
                                                               "confusion_f2-t1_final.png"}
    assert all(is_png(p) for p in paths if p.suffix == ".png")
    fig = figures.plot_confusion(plan.pick_run(df, "f2-t1"))
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == CLASSES
    assert ax.images[0].get_array()[1].tolist() == pytest.approx([0, 0.75, 0.25])  # rows normalised
    pairs = figures.confused_pairs(plan.pick_run(df, "f2-t1"))  # 11 of 12 right: one rooster clip taken for rain
    assert pairs.to_dict("records") == [{"true": "rooster", "predicted": "rain", "clips": 1, "share_of_true": 0.25}]


def test_curves_show_training_and_validation_loss(tmp_path):
    df = runs.load_runs(str(write_study(tmp_path)))
    fig = figures.plot_curves(df, "n_mels")
    loss = fig.axes[1]
    solid = [ln for ln in loss.lines if ln.get_linestyle() == "-" and len(ln.get_xdata())]
    dashed = [ln for ln in loss.lines if ln.get_linestyle() == "--" and len(ln.get_xdata())]
    assert len(solid) == len(dashed) == 2  # one validation and one training line per n_mels value
    assert sorted(ln.get_ydata()[-1] for ln in dashed) == pytest.approx([1.5, 1.5])  # write_run's train_loss
    assert {t.get_text() for t in loss.get_legend().get_texts()} == {"validation", "training"}


def test_param_figure_shows_95_intervals_and_marks_worse_values(tmp_path):
    import numpy as np
    from scipy import stats as st

    from tests.analysis_records import write_paired_study

    df = runs.load_runs(str(write_paired_study(tmp_path)))
    ax = figures.plot_param(df, "n_mels").axes[0]
    bars = next(c for c in ax.containers if hasattr(c, "has_yerr") and c.has_yerr)
    (low_caps, high_caps) = bars.lines[1][:2]
    for x, value in enumerate([32, 64, 128]):  # the axis runs in ascending order
        acc = df[df.n_mels == value].accuracy.to_numpy()
        low, high = st.t.interval(0.95, len(acc) - 1, loc=acc.mean(), scale=st.sem(acc))
        assert (low_caps.get_ydata()[x], high_caps.get_ydata()[x]) == pytest.approx((low, high))
    crosses = [ln for ln in ax.lines if ln.get_marker() == "x"]
    assert sorted(ln.get_xdata()[0] for ln in crosses) == [0, 1]  # 32 and 64: worse than 128
    assert [t.get_text().endswith("worse") for t in ax.texts] == [True, True, False]
    assert np.isclose(crosses[0].get_ydata()[0], df[df.n_mels == 32].accuracy.mean())
