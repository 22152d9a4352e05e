"""One flag style for every command (underscores, as W&B passes config keys), the dashed spelling as an alias."""

from __future__ import annotations

import argparse
import importlib
import re
import subprocess
import sys

import pytest

from audiosweep.cli_flags import ArgumentParser
from audiosweep.config import ConfigError, build_parser, parse_args
from tests.conftest import REPO

ANALYSIS = ["compare", "ensemble", "importance", "interactions", "plots", "report", "reproduce", "summarize"]


def parser_of(name: str) -> argparse.ArgumentParser:
    if name == "train.py":
        return build_parser()
    if name == "predict.py":
        return importlib.import_module("predict").build_parser()
    if name == "bench/pipeline.py":
        return importlib.import_module("bench.pipeline").build_bench_parser()
    return importlib.import_module(name).build_parser()


COMMANDS = ["train.py", "audiosweep.sweep.cli", "predict.py", "bench/pipeline.py", *(f"analysis.{m}" for m in ANALYSIS)]


def parsers(p: argparse.ArgumentParser):
    """``p`` and its subcommands' parsers."""
    yield p
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from parsers(sub)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_of_every_command_takes_both_spellings_and_help_shows_one(command):
    seen = 0
    for p in parsers(parser_of(command)):
        assert isinstance(p, ArgumentParser), p.prog
        options = [o for a in p._actions for o in a.option_strings if o.startswith("--")]
        assert not [o for o in options if "-" in o[2:]], p.prog  # documented with underscores only
        for option in (o for o in options if "_" in o):
            dashed = option.replace("_", "-")
            assert p.respelled([dashed, f"{dashed}=1"]) == [option, f"{option}=1"]
            seen += 1
        p.epilog = None  # the one line that names the dashed spelling
        assert not re.findall(r"--[a-z0-9]+-[a-z]", p.format_help()), p.prog
    assert seen


@pytest.mark.parametrize("argv", [["run", "s.yaml", "--results-dir", "r", "--runs-per-gpu", "2", "--wandb-mode",
                                   "offline", "--dry-run", "--no-retry-failed", "--gpus", "0"],
                                  ["run", "s.yaml", "--results_dir", "r", "--runs_per_gpu", "2", "--wandb_mode",
                                   "offline", "--dry_run", "--no_retry_failed", "--gpus", "0"],
                                  ["run", "s.yaml", "--results-dir=r", "--runs-per=2", "--wandb_mode=offline",
                                   "--dry-run", "--no-retry", "--gpus=0"]])
def test_the_sweep_command_reads_either_spelling_and_abbreviations(argv):
    args = parser_of("audiosweep.sweep.cli").parse_args(argv)
    assert (args.results_dir, args.runs_per_gpu, args.wandb_mode, args.dry_run, args.retry_failed) == \
        ("r", 2, "offline", True, False)


def test_train_py_takes_a_dashed_key_and_still_suggests_for_a_typo():
    cfg, explicit = parse_args(["--n-epochs", "3", "--results-dir=out", "--arch", "simple_cnn"])
    assert (cfg.n_epochs, cfg.results_dir, explicit["n_epochs"]) == (3, "out", "3")
    with pytest.raises(ConfigError, match=r"unknown config key 'n-epoch'; did you mean n_epochs\?"):
        parse_args(["--n-epoch", "3"])
    with pytest.raises(ConfigError, match=r"unknown config key 'n_epoch'; did you mean n_epochs\?"):
        parse_args(["--n_epoch", "3"])


def test_the_analysis_and_predict_commands_read_either_spelling():
    a = parser_of("analysis.summarize").parse_args(["runs", "--skip-bad", "--runs-csv", "x.csv"])
    b = parser_of("analysis.summarize").parse_args(["runs", "--skip_bad", "--runs_csv", "x.csv"])
    assert vars(a) == vars(b) and a.skip_bad and a.runs_csv == "x.csv"
    assert parser_of("predict.py").parse_args(["rec.json", "c.wav", "--top-k", "2"]).top_k == 2
    args = parser_of("analysis.reproduce").parse_args(["r", "--by", "n_mels", "--published", "p",
                                                       "--published-sweep", "S"])
    assert args.published_sweep == "S"


def test_values_unknown_flags_and_everything_after_a_double_dash_are_left_alone(capsys):
    p = ArgumentParser(prog="x")
    p.add_argument("--out_dir")
    p.add_argument("rest", nargs="*")
    assert p.respelled(["--out-dir", "--out-dir", "--", "--out-dir"]) == ["--out_dir", "--out_dir", "--",
                                                                          "--out-dir"]
    args = p.parse_args(["--out-dir=a-b_c", "--", "--out-dir"])
    assert (args.out_dir, args.rest) == ("a-b_c", ["--out-dir"])
    with pytest.raises(SystemExit) as e:
        p.parse_args(["--outdir", "a"])
    assert e.value.code == 2 and "unrecognized arguments: --outdir" in capsys.readouterr().err


def test_a_command_line_with_the_old_dashed_flags_runs_as_before(tmp_path):
    """The spelling the README showed before (dashes) still runs the command, end to end."""
    sweep = tmp_path / "s.yaml"
    sweep.write_text("program: train.py\nmethod: grid\nparameters:\n  arch: {value: simple_cnn}\n")
    out = subprocess.run([sys.executable, "-m", "audiosweep.sweep", "run", str(sweep), "--dry-run", "--results-dir",
                          str(tmp_path / "r"), "--wandb-mode", "disabled"], cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert f"--results_dir={tmp_path / 'r'}" in out.stdout and "--wandb_mode=disabled" in out.stdout
