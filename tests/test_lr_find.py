"""``train.py --lr_find true``: fastai's learning-rate finder on the run's data and model, its plot and suggestions
written, no result record, and the results folder still readable by the analysis."""

from __future__ import annotations

import json
import math

import pytest

import train
from analysis import summarize
from audiosweep.config import Config
from audiosweep.lr_find import DROPPED, SUGGESTIONS, without
from audiosweep.results import RunFiles, config_id, record_files
from tests.analysis_records import write_run
from tests.conftest import TINY


@pytest.mark.slow
def test_lr_find_writes_its_plot_and_suggestions_and_no_record(tmp_path, synth_root, cache_dir, capsys):
    out = tmp_path / "res"
    argv = ["--data_dir", str(synth_root), "--allow_missing", "true", "--esc10", "true", "--cache_dir",
            str(cache_dir), "--results_dir", str(out), *TINY, "--n_mels", "32", "--lr_find", "true"]
    assert train.main(argv) == 0
    printed = capsys.readouterr().out
    (table,) = out.glob("*.lr_find.json")
    (plot,) = out.glob("*.lr_find.png")
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    found = json.loads(table.read_text())
    assert set(found["suggestions"]) == set(SUGGESTIONS)
    assert all(math.isfinite(v) and 1e-7 <= v <= 10 for v in found["suggestions"].values())
    assert len(found["lr_loss"]) > 10 and found["settings"]["n_mels"] == 32
    assert record_files(out) == [] and not (tmp_path / "models").exists()
    valley = f"{found['suggestions']['valley']:.2e}"
    assert f"--learning_rate {valley}" in printed and "--lr_find" not in printed.split("train with:")[1]
    write_run(out, "r1", 0.8)  # a record beside the finder's files: read alone, without a warning about them
    assert summarize.main([str(out)]) == 0
    assert "not result records" not in capsys.readouterr().err


def test_record_files_skip_the_finders_files(tmp_path):
    files = RunFiles.of(tmp_path, "x")
    for path in (files.lr_find(".json"), files.record):
        path.write_text("{}")
    assert record_files(tmp_path) == [files.record]


def test_the_printed_command_leaves_out_the_finder_and_the_rate_it_replaces():
    argv = ["--lr_find", "true", "--arch", "resnet18", "--learning_rate=0.1", "--lr", "3e-3", "--pretrained",
            "true", "--lr_find"]
    assert without(argv, DROPPED) == ["--arch", "resnet18", "--pretrained", "true"]


def test_lr_find_is_no_part_of_a_runs_identity():
    assert config_id(Config(lr_find=True).to_dict()) == config_id(Config().to_dict())
