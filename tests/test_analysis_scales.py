"""Axis scales (analysis.scales): the sweep's declared distribution where its copy is beside the records, else the
data's range."""

from __future__ import annotations

import pytest

from analysis import runs, scales
from audiosweep.sweep.spec import SWEEP_COPY, load_sweep
from tests.analysis_records import write_bayes_sweep
from tests.conftest import write_sweep


def test_declared_distribution_decides_the_scale(tmp_path):
    df = runs.load_runs(str(write_bayes_sweep(tmp_path / "bayes")))
    dists = scales.declared(df)
    assert dists == {"learning_rate": "log_uniform_values", "mix_up": "uniform"}  # values: not declared a scale
    assert df.mix_up.max() / df.mix_up.min() > 100  # 3 decades of data ...
    assert not scales.is_log("mix_up", df.mix_up, dists)  # ... on a linear axis: uniform
    assert df.learning_rate.max() / df.learning_rate.min() < 5  # half a decade ...
    assert scales.is_log("learning_rate", df.learning_rate, dists)  # ... on a log axis: log_uniform_values
    assert scales.scale_note("mix_up", dists) == "uniform"


def test_without_a_sweep_file_the_range_decides(tmp_path):
    df = runs.load_runs(str(write_bayes_sweep(tmp_path / "old", sweep_file=False)))
    assert scales.declared(df) == {}
    assert scales.is_log("mix_up", df.mix_up, {}) and not scales.is_log("learning_rate", df.learning_rate, {})
    assert scales.scale_note("mix_up", {}) == "by range"


def test_sweeps_that_disagree_fall_back_to_the_range(tmp_path):
    write_bayes_sweep(tmp_path / "a", n=6, pruned=0)
    folder = write_bayes_sweep(tmp_path / "b", n=6, pruned=0)
    text = (folder / SWEEP_COPY).read_text().replace("log_uniform_values", "uniform")
    (folder / SWEEP_COPY).write_text(text)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / SWEEP_COPY).write_text("{not: [yaml")  # unreadable: ignored
    assert scales.declared(runs.load_runs(str(tmp_path))) == {"mix_up": "uniform"}


def test_the_sweep_copy_reads_back(tmp_path):
    sweep = load_sweep(write_sweep(tmp_path / "s.yaml", {"learning_rate": {"min": 0.001, "max": 0.1},
                                                          "weight_decay": {"distribution": "log_uniform_values",
                                                                           "min": 1e-5, "max": 1e-2}}, method="random"))
    path = sweep.save_copy(tmp_path / "results" / "s")
    assert path.name == SWEEP_COPY
    assert scales._distributions(path) == {"learning_rate": "uniform", "weight_decay": "log_uniform_values"}


@pytest.mark.parametrize("dist", sorted(scales.LOG_DISTRIBUTIONS))
def test_log_distributions(dist):
    assert scales.is_log("k", [1.0, 1.1], {"k": dist})
