"""The running runs' progress files as the runner reads them (audiosweep.sweep.progress): found by launch id, and
a run's total seconds projected from its epochs done, for the ETA before any run has ended."""

import json
import os
import time
from types import SimpleNamespace

import pytest

from audiosweep.sweep.progress import Projections, find_file, projected_seconds, read_rows


def write_progress(path, launch, times, mtime):
    path.write_text("".join(json.dumps({"epoch": i, "accuracy": 0.5, "time_s": t, "launch": launch}) + "\n"
                            for i, t in enumerate(times, start=1)))
    os.utime(path, (mtime, mtime))


def test_projected_seconds_are_the_time_outside_epochs_plus_the_mean_epoch_times_all():
    rows = [{"epoch": 1, "time_s": 10.0}, {"epoch": 2, "time_s": 12.0}]
    assert projected_seconds(rows, epochs=6, since_start=30.0) == pytest.approx(8 + 6 * 11)  # 8 s of start-up
    assert projected_seconds(rows, epochs=6, since_start=5.0) == pytest.approx(6 * 11)  # clock skew: no start-up
    assert projected_seconds([], epochs=6, since_start=30.0) is None  # before the first epoch


def test_projections_of_running_jobs_from_their_progress_files(tmp_path):
    started = time.time() - 100
    write_progress(tmp_path / "a.progress.jsonl", "host:1:a", [10.0, 10.0], started + 40)
    write_progress(tmp_path / "old.progress.jsonl", "host:1:b", [99.0], started - 3600)  # an earlier run's
    job = SimpleNamespace(launch="host:1:a", started=started, run=SimpleNamespace(config={"n_epochs": 4}))
    waiting = SimpleNamespace(launch="host:1:b", started=started, run=SimpleNamespace(config={"n_epochs": 4}))
    unknown = SimpleNamespace(launch="host:1:c", started=started, run=SimpleNamespace(config={}))  # a W&B agent's
    projections = Projections(tmp_path)
    assert projections.seconds([job, waiting, unknown]) == [pytest.approx(20 + 4 * 10), None, None]
    assert find_file(tmp_path, "host:1:a", started, claimed={tmp_path / "a.progress.jsonl"}) is None
    assert projections.seconds([]) == [] and projections.files == {}  # ended runs forgotten
    job.run.config["freeze_epochs"] = 1  # fine_tune: a frozen epoch first
    assert projections.seconds([job]) == [pytest.approx(20 + 5 * 10)]
    assert len(read_rows(tmp_path / "a.progress.jsonl")) == 2
