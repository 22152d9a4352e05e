"""Tables (analysis.summarize) checked against hand-computed numbers, and what the commands share (analysis.cli):
options, --by, one-line errors."""

from __future__ import annotations

import io

import pandas as pd
import pytest

from analysis import cli, plots, report, runs, summarize
from audiosweep.results import METRIC_GOALS
from tests.analysis_records import write_final_study, write_study

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_group_stats_match_hand_computed(tmp_path):
    study = write_study(tmp_path)
    stats = summarize.group_stats(runs.load_runs(str(study)), ["n_mels"])
    assert list(stats.n_mels) == [128, 64] and list(stats.n) == [3, 2]  # best first, failed run left out
    assert stats.accuracy_mean.tolist() == pytest.approx([0.82, 0.72])
    assert stats.accuracy_std.tolist() == pytest.approx([0.02, 0.0282842712])
    assert stats.accuracy_min.tolist() == pytest.approx([0.80, 0.70])
    assert stats.accuracy_max.tolist() == pytest.approx([0.84, 0.74])
    assert stats.valid_loss_mean.tolist() == pytest.approx([0.6, 0.9])
    assert stats.valid_loss_std[0] == pytest.approx(0.1)


def test_summarize_cli_formats_and_warnings(tmp_path, capsys):
    study = write_study(tmp_path)
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


def test_folds_table_matches_hand_computed(tmp_path, capsys):
    final_study = write_final_study(tmp_path)
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


def test_bad_arguments(tmp_path, capsys):
    study = write_study(tmp_path)
    assert summarize.main([str(study), "--by", "n_mel"]) == 1
    assert "did you mean n_mels?" in capsys.readouterr().err
    assert summarize.main([str(study), "--tags", "a"]) == 1
    assert "wandb:ENTITY/PROJECT" in capsys.readouterr().err
    assert summarize.main([str(study), "--filters", "{nope"]) == 1
    assert capsys.readouterr().err.startswith("analysis.summarize: --filters: not valid JSON")
    with pytest.raises(SystemExit):
        summarize.main([str(study), "--format", "html"])
    with pytest.raises(SystemExit):
        summarize.main([str(study), "--metric", "valid_loss"])


def test_commands_share_options_and_report_errors_in_one_line(tmp_path, capsys):
    assert cli.ACCURACY_METRICS == [m for m, goal in METRIC_GOALS.items() if goal == "maximize"]
    assert cli.ACCURACY_METRICS == ["accuracy", "best_accuracy"]
    for module in (summarize, plots, report):
        parser = module.build_parser()
        options = {a.dest: a for a in parser._actions}
        assert {"source", "sweep", "tags", "filters", "skip_bad", "metric", "by"} <= options.keys()
        assert options["metric"].choices == cli.ACCURACY_METRICS and options["metric"].default == "accuracy"
        assert module.main([str(tmp_path / "nope"), "--by", "n_mels"]) == 1
        err = capsys.readouterr().err
        assert err == f"{module.__name__}: {tmp_path / 'nope'}: no such folder (give a folder of result records, " \
                      "or wandb:ENTITY/PROJECT)\n"


def test_parse_keys():
    assert cli.parse_keys(None) == [] and cli.parse_keys(" n_mels, hop_length ,") == ["n_mels", "hop_length"]
    with pytest.raises(runs.SourceError, match="--by: unknown config key 'hop'"):
        cli.parse_keys("n_mels,hop")
