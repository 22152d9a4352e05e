"""The interactions figures on a bayes sweep (analysis.interactions): quantile bins in the heatmap, a legible
parallel-coordinates figure on the declared scales, and file names that carry the sweep. The grid's tables and
figures are tested in test_analysis_importance.py."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.text import Text

from analysis import interactions, runs
from tests.analysis_records import is_png, write_bayes_sweep

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_continuous_keys_are_binned_into_quantiles(tmp_path):
    df = runs.load_runs(str(write_bayes_sweep(tmp_path / "bayes", n=32, pruned=0)))
    means, counts = interactions.mean_table(df, "learning_rate", "mix_up")
    bins = interactions.MAX_BINS
    assert counts.size <= bins ** 2 and counts.shape == (3, 3)  # 32 runs: 3 bins a key, about 3.5 runs a cell
    assert counts.to_numpy().sum() == 32 and (counts.to_numpy()[counts.to_numpy() > 0] > 1).all()
    lo, hi = (float(v) for v in means.columns[0].split("–"))
    assert lo == pytest.approx(df.mix_up.min(), rel=1e-2) and hi < df.mix_up.median()  # labels: the bins' ranges
    cell = df[(df.learning_rate <= float(means.index[0].split("–")[1]) * 1.001)
              & (df.mix_up <= hi * 1.001)]
    assert means.iat[0, 0] == pytest.approx(cell.accuracy.mean()) and counts.iat[0, 0] == len(cell)
    means, counts = interactions.mean_table(df, "arch", "mix_up")  # categorical: one row per value
    assert list(means.index) == ["resnet18", "timm/efficientnet_b0.ra_in1k"] and counts.shape[1] == 3


def _texts_inside(fig) -> list[str]:
    """The texts of ``fig`` drawn (partly) outside it."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer, box = canvas.get_renderer(), fig.bbox
    outside = []
    for t in fig.findobj(Text):
        if t.get_visible() and t.get_text().strip():
            bb = t.get_window_extent(renderer)
            if bb.x0 < box.x0 - 1 or bb.x1 > box.x1 + 1 or bb.y0 < box.y0 - 1 or bb.y1 > box.y1 + 1:
                outside.append(t.get_text())
    return outside


@pytest.mark.parametrize("keys", [["learning_rate", "arch"], None])
def test_parallel_coordinates_text_stays_inside_and_apart(tmp_path, keys):
    df = runs.load_runs(str(write_bayes_sweep(tmp_path / "bayes")))
    fig = interactions.plot_parallel(df, keys=keys)
    assert _texts_inside(fig) == []
    ax, renderer = fig.axes[0], fig.canvas.get_renderer()
    for t in ax.texts:  # a tick label ends before the next axis
        i = round(t.get_position()[0])
        assert t.get_window_extent(renderer).x1 < ax.transData.transform((i + 1, 0))[0]
    names = [t.get_window_extent(renderer) for t in ax.get_xticklabels()]
    assert all(a.x1 < b.x0 for a, b in zip(names, names[1:], strict=False))  # axis names do not overlap
    assert "timm/efficientnet_b0.ra_in1k" not in [t.get_text() for t in ax.texts]  # shortened
    assert "timm/ef….ra_in1k" in [t.get_text() for t in ax.texts]


def test_parallel_coordinates_scales_and_pruned_runs(tmp_path):
    df = runs.load_runs(str(write_bayes_sweep(tmp_path / "bayes", n=12, pruned=4)))
    fig = interactions.plot_parallel(df, keys=["learning_rate", "mix_up"])
    ax = fig.axes[0]
    names = [t.get_text().replace("\n", " ") for t in ax.get_xticklabels()]
    assert names[0].endswith("(log: log_uniform_values)") and names[1].endswith("(linear: uniform)")
    styles = ax.collections[0].get_linestyles()
    assert len(ax.collections[0].get_segments()) == 12
    assert sum(s[1] is not None for s in styles) == 4  # the pruned runs dashed
    assert "4 pruned runs included: every run's metric after epoch 2" in fig._suptitle.get_text().replace("\n", " ")
    learning_rate = sorted(s[0][1] for s in ax.collections[0].get_segments())
    lr = np.sort(df.learning_rate.to_numpy())
    expected = np.log(lr / lr[0]) / np.log(lr[-1] / lr[0])  # positions on a log axis
    assert learning_rate == pytest.approx(expected.tolist())


def test_figures_of_two_sweeps_keep_apart(tmp_path, capsys):
    out = tmp_path / "figs"
    for name in ("first", "second"):
        write_bayes_sweep(tmp_path / "results" / name, n=10, pruned=0, seed=len(name))
        assert interactions.main([str(tmp_path / "results" / name), "--by", "learning_rate,mix_up", "--out",
                                  str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        f"{fig}_{name}.png" for fig in ("heatmap_learning_rate_mix_up", "parallel_coordinates")
        for name in ("first", "second")]
    assert all(is_png(p) for p in out.iterdir())
    capsys.readouterr()
    assert interactions.main([str(tmp_path / "results"), "--by", "learning_rate,mix_up", "--out", str(out)]) == 0
    assert (out / "parallel_coordinates_first+second.png").is_file()  # pooled: both named
