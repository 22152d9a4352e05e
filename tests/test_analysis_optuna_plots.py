"""Optuna's plots of a bayes sweep's study (analysis.optuna_plots), found in the runner's journal."""

from __future__ import annotations

import optuna
import pytest

from analysis import optuna_plots, plan, report, runs
from audiosweep.sweep.study import storage
from tests.analysis_records import is_png, write_bayes_sweep, write_study

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_bayes_study_plots_next_to_the_others(tmp_path):
    folder = write_bayes_sweep(tmp_path / "bayes", n=10, pruned=3, journal=True)
    df = runs.load_runs(str(folder))
    (study,) = optuna_plots.bayes_studies(df)
    assert study.study_name == "bayes" and len(study.trials) == 10
    section = next(s for s in plan.sections(df, []) if s.kind == plan.OPTUNA)
    assert [f.name for f in section.figures] == ["optuna_history_bayes", "optuna_slice_bayes",
                                                 "optuna_importances_bayes", "optuna_intermediate_bayes"]
    page = report.build_report(df, tmp_path / "r").read_text()
    assert "## Optuna's view of the bayes study" in page and "![Optuna: parameter importances (fANOVA)]" in page
    assert "3 pruned runs included: every run's metric after epoch 2" in page  # the importance section says so
    for f in section.figures:
        assert is_png(tmp_path / "r" / f"{f.name}.png", 5)


def test_no_bayes_study_no_section(tmp_path):
    df = runs.load_runs(str(write_study(tmp_path)))  # a grid: no journal
    assert optuna_plots.bayes_studies(df) == [] and plan.OPTUNA not in [s.kind for s in plan.sections(df, [])]
    folder = write_bayes_sweep(tmp_path / "grid", n=4, pruned=0)
    study = optuna.create_study(storage=storage(None, folder), study_name="grid:hyperband")  # RungSource's
    study.add_trial(optuna.trial.create_trial(value=0.5, intermediate_values={1: 0.5}))
    assert optuna_plots.bayes_studies(runs.load_runs(str(folder))) == []
