"""Parameter importance (analysis.importance) and interactions (analysis.interactions) on a small grid whose
accuracy depends strongly on n_mels, a little on normalize and not at all on learning_rate."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestRegressor

from analysis import importance, interactions, labels, runs
from tests.analysis_records import is_png, write_run

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

N_MELS, RATES, NORMS = (64, 128, 224), (0.001, 0.01, 0.1), ("global", "sample")
TRIALS = (0.0, 0.01, 0.05)  # per trial_num (a replicate key): cells' means differ from their medians


def accuracy(n_mels: int, normalize: str, trial: int) -> float:
    return 0.5 + 0.12 * N_MELS.index(n_mels) + 0.02 * NORMS.index(normalize) + TRIALS[trial - 1]


def write_grid(folder, rates=RATES) -> pd.DataFrame:
    """n_mels x learning_rate x normalize x 3 trials, plus a failed run that the statistics leave out."""
    for m in N_MELS:
        for lr in rates:
            for norm in NORMS:
                for t in range(1, len(TRIALS) + 1):
                    write_run(folder, f"m{m}-lr{lr}-{norm}-t{t}", accuracy(m, norm, t), n_mels=m, learning_rate=lr,
                              normalize=norm, trial_num=t)
    write_run(folder, "failed", None, status="failed", n_mels=512, learning_rate=1.0, normalize="none")
    return runs.load_runs(str(folder))


def test_importance_ranks_the_strong_key_first(tmp_path):
    table = importance.importance(write_grid(tmp_path))
    assert list(table.columns) == importance.COLUMNS
    assert list(table.key) == ["n_mels", "normalize", "learning_rate"]
    assert list(table.kind) == ["numeric", "categorical", "numeric"]
    assert list(table.label) == [labels.axis_label(k) for k in table.key]
    assert table.rf_importance.iloc[0] > 0.9 and table.rf_importance.iloc[2] < 0.01
    assert table.rf_importance.sum() == pytest.approx(1.0)
    assert abs(table.correlation.iloc[2]) < 1e-9  # the metric does not depend on learning_rate


def test_correlations_equal_pandas(tmp_path):
    df = write_grid(tmp_path)
    ok = df[df.status == "finished"]
    table = importance.importance(df).set_index("key")
    assert table.loc["n_mels", "correlation"] == pytest.approx(ok.n_mels.astype(float).corr(ok.accuracy))
    assert table.loc["learning_rate", "correlation"] == pytest.approx(ok.learning_rate.corr(ok.accuracy), abs=1e-12)
    # two values: the indicators' r are opposite; the first value's (global) is reported
    is_global = (ok.normalize == "global").astype(float)
    assert table.loc["normalize", "correlation"] == pytest.approx(is_global.corr(ok.accuracy))
    assert table.loc["normalize", "correlation"] < 0 and table.loc["normalize", "correlated_value"] == "global"
    assert table.loc["n_mels", "correlated_value"] == ""


def test_rf_importance_equals_a_direct_fit(tmp_path):
    df = write_grid(tmp_path)
    ok = df[df.status == "finished"]
    x = pd.DataFrame({"n_mels": ok.n_mels.astype(float), "normalize=global": (ok.normalize == "global") * 1.0,
                      "normalize=sample": (ok.normalize == "sample") * 1.0, "learning_rate": ok.learning_rate})
    fitted = RandomForestRegressor(n_estimators=200, random_state=importance.SEED).fit(x.to_numpy(), ok.accuracy)
    expected = dict(zip(x.columns, fitted.feature_importances_, strict=True))
    table = importance.importance(df).set_index("key").rf_importance
    assert table["n_mels"] == pytest.approx(expected["n_mels"])
    assert table["normalize"] == pytest.approx(expected["normalize=global"] + expected["normalize=sample"])
    assert table["learning_rate"] == pytest.approx(expected["learning_rate"])
    encoded, of_key = importance.encode(ok, ["n_mels", "normalize", "learning_rate"])
    assert of_key["normalize"] == ["normalize=global", "normalize=sample"]
    pd.testing.assert_frame_equal(encoded[x.columns], x, check_dtype=False)


def test_importance_needs_two_keys_and_five_runs(tmp_path, capsys):
    df = write_grid(tmp_path)
    with pytest.raises(runs.SourceError, match=r"at least 5 finished \(or pruned\) runs with accuracy; there are 4"):
        importance.importance(df[df.status == "finished"].iloc[:4])
    one_key = df[(df.learning_rate == 0.01) & (df.normalize == "global")]
    with pytest.raises(runs.SourceError, match=r"at least 2 setting keys .* 1 vary \(n_mels\)"):
        importance.importance(pd.concat([one_key] * 2))

    assert importance.main([str(tmp_path), "--format", "csv"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == ",".join(importance.COLUMNS) and out.splitlines()[1].startswith("n_mels,")
    assert "1 of 55 runs left out of the statistics" in err
    assert importance.main([str(tmp_path / "none")]) == 2
    assert capsys.readouterr().err.startswith("analysis.importance: ")


def test_importance_cli_too_few_keys(tmp_path, capsys):
    for i, m in enumerate(N_MELS * 2):
        write_run(tmp_path, f"r{i}", 0.5 + 0.1 * N_MELS.index(m), n_mels=m, trial_num=i)
    assert importance.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "at least 2 setting keys that vary across the finished runs; 1 vary (n_mels)" in err  # trial_num: no


def test_heatmap_table_equals_groupby_means(tmp_path):
    df = write_grid(tmp_path)
    means, counts = interactions.mean_table(df, "n_mels", "normalize")
    ok = df[df.status == "finished"]
    expected = ok.groupby(["n_mels", "normalize"]).accuracy.mean().unstack()
    np.testing.assert_allclose(means.to_numpy(), expected.to_numpy())
    assert (counts.to_numpy() == ok.groupby(["n_mels", "normalize"]).size().unstack().to_numpy()).all()
    assert list(means.index) == ["64", "128", "224"] and list(means.columns) == ["global", "sample"]
    assert (means.index.name, means.columns.name) == ("n_mels", "normalize")

    partial, n = interactions.mean_table(df[~((df.n_mels == 64) & (df.normalize == "sample"))], "n_mels",
                                         "normalize")
    assert np.isnan(partial.loc["64", "sample"]) and n.loc["64", "sample"] == 0  # a pair no run tried
    shown = interactions.display_table(partial, n)
    assert list(shown.iloc[0]) == ["64", "52.00 (n=9)", "–"]


def test_heatmap_figure(tmp_path):
    fig = interactions.plot_heatmap(write_grid(tmp_path), "n_mels", "normalize")
    ax = fig.axes[0]
    assert ax.get_ylabel() == labels.axis_label("n_mels") and ax.get_xlabel() == labels.axis_label("normalize")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["global", "sample"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["64", "128", "224"]
    assert ax.images[0].get_array()[2].tolist() == pytest.approx([0.76, 0.78])
    assert [t.get_text() for t in ax.texts][:2] == ["52.0%\nn=9", "54.0%\nn=9"]
    assert fig.axes[1].get_ylabel() == "mean validation accuracy"  # the colorbar


def test_parallel_coordinates_figure(tmp_path):
    fig = interactions.plot_parallel(write_grid(tmp_path))
    ax = fig.axes[0]
    assert [t.get_text().replace("\n", " ") for t in ax.get_xticklabels()] == [
        labels.axis_label("n_mels") + " (linear: by range)", labels.axis_label("normalize"),
        labels.axis_label("learning_rate") + " (log: by range)", "validation accuracy"]
    lines = ax.collections[0].get_segments()
    assert len(lines) == 54  # one per finished run
    best = lines[-1]  # drawn last: n_mels 224, sample, accuracy 81%
    assert best[:, 1].tolist() == pytest.approx([1.0, 1.0, best[2, 1], 1.0])
    assert {round(s[2, 1], 6) for s in lines} == {0.0, 0.5, 1.0}  # 0.001, 0.01, 0.1 evenly on a log axis
    assert fig.axes[1].get_ylabel() == "validation accuracy"
    texts = [t.get_text() for t in ax.texts]
    assert {"64", "128", "224", "global", "sample", "0.001", "0.1"} <= set(texts)

    linear = interactions.plot_parallel(write_grid(tmp_path / "linear", rates=(0.01, 0.02, 0.05)))
    assert "(linear: by range)" in linear.axes[0].get_xticklabels()[2].get_text()
    same = write_grid(tmp_path / "same").query("run_id == 'm64-lr0.01-global-t1'")
    with pytest.raises(runs.SourceError, match="no setting key varies across the 3 finished runs"):
        interactions.plot_parallel(pd.concat([same] * 3))


def test_interactions_cli_writes_figures(tmp_path, capsys):
    write_grid(tmp_path / "grid")
    out = tmp_path / "figs"
    assert interactions.main([str(tmp_path / "grid"), "--by", "n_mels,normalize", "--out", str(out)]) == 0
    printed, err = capsys.readouterr()
    assert printed.splitlines()[0].split() == ["n_mels", "\\", "normalize", "global", "sample"]
    assert printed.splitlines()[2].split() == ["64", "52.00", "(n=9)", "54.00", "(n=9)"]
    assert printed.split()[-2:] == [str(out / "heatmap_n_mels_normalize_grid.png"),
                                    str(out / "parallel_coordinates_grid.png")]
    for name in ("heatmap_n_mels_normalize_grid.png", "parallel_coordinates_grid.png"):
        assert is_png(out / name)
    assert "learning_rate (0.001, 0.01, 0.1)" in err  # pooled over in the heatmap's cells

    for by, message in (("n_mels", "--by: give two different keys, A,B (got 1: n_mels)"),
                        ("n_mels,n_mels", "give two different keys"), ("n_mel,arch", "--by: unknown")):
        assert interactions.main([str(tmp_path / "grid"), "--by", by, "--out", str(tmp_path / "bad")]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
    with pytest.raises(SystemExit):  # --by is required
        interactions.main([str(tmp_path / "grid")])
