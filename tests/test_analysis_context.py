"""What a report states about its runs: counts, dates, fixed and varying settings, environment."""

from __future__ import annotations

import datetime as dt
import json

from analysis import runs
from analysis.context import context_markdown, environment, fixed_settings, run_counts, run_dates, varying_settings
from tests.analysis_records import write_run, write_study


def test_counts_varying_and_fixed_settings(tmp_path):
    df = runs.load_runs(str(write_study(tmp_path)))
    assert run_counts(df) == "6 runs: 5 finished with accuracy, 1 failed"
    assert varying_settings(df) == {"n_mels": ["128", "64"]}
    fixed = fixed_settings(df).set_index("key")
    assert "n_mels" not in fixed.index and "trial_num" not in fixed.index  # varying, and a replicate
    assert fixed.loc["n_fft", "value"] == "4096" and fixed.loc["arch", "label"] == "architecture"


def test_dates_and_environment_come_from_the_records(tmp_path):
    recs = [write_run(tmp_path, run_id, 0.8, trial_num=i) for i, run_id in
            enumerate(["20261121-093000-aaaaaa", "20261122-101500-bbbbbb"], 1)]
    for rec, commit in zip(recs, ["abc123", "def456"], strict=True):  # as train.py's results.environment writes it
        rec["env"].update(packages={"torch": "2.11.0", "fastai": "2.8.12"}, git_commit=commit)
        (tmp_path / f"{rec['run_id']}.json").write_text(json.dumps(rec))
    df = runs.load_runs(str(tmp_path))
    assert run_dates(df) == "2026-11-21 09:30 to 2026-11-22 10:15"
    assert environment(df) == {"device": ["cpu"], "git_commit": ["abc123 (1 runs)", "def456 (1 runs)"],
                               "torch": ["2.11.0"], "fastai": ["2.8.12"]}
    page = context_markdown(df, now=dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC))
    assert "- **Runs**: 2 runs: 2 finished with accuracy." in page
    assert "- **Started**: 2026-11-21 09:30 to 2026-11-22 10:15." in page
    assert "- **Report written**: 2026-11-22 12:00 UTC." in page
    assert "git_commit abc123 (1 runs), def456 (1 runs); torch 2.11.0" in page
    assert "| `n_fft` | FFT size | 4096 |" in page
