"""Sweep files (spec, params, check): W&B's forms and semantics, identity of runs, clear errors."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from audiosweep import results
from audiosweep.config import FIELDS, parse_args
from audiosweep.sweep.cli import main
from audiosweep.sweep.spec import REPO_ROOT, build_command, expand, load_recipe, load_sweep, run_config
from tests.conftest import run_sweep_cli, write_sweep

SWEEPS = sorted((REPO_ROOT / "sweeps").glob("*.yaml"))
BAYES_EXAMPLE = REPO_ROOT / "sweeps" / "bayes_example.yaml"  # the one that is not a grid study
GRIDS = [p for p in SWEEPS if p != BAYES_EXAMPLE]


# --- the sweep files -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", GRIDS, ids=lambda p: p.name)
def test_every_sweep_file_is_valid(path):
    sweep = load_sweep(path)
    plan = expand(sweep)
    assert sweep.method == "grid" and sweep.raw["metric"] == {"name": "accuracy", "goal": "maximize"}
    assert plan.bounded and len(plan.runs) == len({r.config_id for r in plan.runs}) > 0
    if path.stem != "smoke":  # every setting repeated, trials 1..N or folds, enough for an interval
        trials = sweep.params["trial_num"].grid_values() if "trial_num" in sweep.params else [1]
        folds = next((sweep.params[k].grid_values() for k in ("fold", "test_fold") if k in sweep.params), [1])
        assert trials == list(range(1, len(trials) + 1)) and len(trials) * len(folds) >= 3


@pytest.mark.slow
def test_check_cli_counts_match_the_readme(capsys):
    assert main(["check", "--no-weights", *map(str, SWEEPS)]) == 0
    out = capsys.readouterr().out
    printed = dict(re.findall(r"sweeps/(\S+\.yaml): (\d+) runs", out))
    assert f"{BAYES_EXAMPLE.name}: at most 12 runs (bayes)" in out
    table = {m[0]: m[1] for m in re.findall(r"^\| `(\S+\.yaml)` \|.*?\| +(\d+) \|",
                                            (REPO_ROOT / "sweeps" / "README.md").read_text(), re.M)}
    assert printed == table and set(printed) == {p.name for p in GRIDS}
    assert f"`{BAYES_EXAMPLE.name}` | " in (REPO_ROOT / "sweeps" / "README.md").read_text()


def test_the_bayes_example_is_a_valid_bayes_sweep_that_runs(tmp_path):
    """The README's ``sweep run sweeps/bayes_example.yaml``: checked, and its first trials drawn (--dry-run)."""
    sweep = load_sweep(BAYES_EXAMPLE)
    assert sweep.method == "bayes" and sweep.raw["early_terminate"]["type"] == "hyperband"
    done = run_sweep_cli("run", str(BAYES_EXAMPLE), "--count", "2", "--dry-run", "--results-dir", str(tmp_path))
    assert done.returncode == 0 and "bayes (Optuna TPE)" in done.stdout + done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_runs_are_described_with_short_floats_and_keep_their_full_values(tmp_path):
    sweep = load_sweep(write_sweep(tmp_path / "lr.yaml", {"learning_rate": {"values": [0.004130399570052626, 0.02]},
                                                          "n_mels": 32}))
    run = expand(sweep).runs[0]
    assert sweep.describe(run) == "learning_rate=0.00413"  # the runner's lines, --dry-run, W&B run names
    assert run.params["learning_rate"] == 0.004130399570052626


def test_the_test_rotation_holds_out_each_fold_once_and_validates_on_another():
    plan = expand(load_sweep(REPO_ROOT / "sweeps" / "test_rotation.yaml"))
    pairs = [(r.config["test_fold"], r.config["fold"]) for r in plan.runs]
    assert sorted(t for t, _ in pairs) == [1, 2, 3, 4, 5] and all(f != t for t, f in pairs)
    assert dict(pairs) == {1: 2, 2: 3, 3: 4, 4: 5, 5: 1}  # the next fold, cyclically
    assert all(r.config["checkpoint"] == "best" and r.config["split"] == "official" for r in plan.runs)


AUGMENTATION_SWITCHES = ("gain_p", "shift_p", "noise_p", "polarity_p", "pitch_p", "stretch_p", "spec_freq_masks",
                         "spec_time_masks")


@pytest.mark.parametrize("name", ["recipe_noise_pitch_stretch_specaugment.yaml", "recipe_stretch_pitch.yaml"])
def test_recipe_sweeps_hold_their_own_baseline_and_the_full_recipe(name):
    sweep = load_sweep(REPO_ROOT / "sweeps" / name)
    configs = [run_config(r.params) for r in expand(sweep).runs]
    switches = [n for n in sweep.varying if n != "trial_num"]
    assert switches and set(switches) <= set(AUGMENTATION_SWITCHES)
    off = [c for c in configs if not any(c[k] for k in AUGMENTATION_SWITCHES)]
    full = [c for c in configs if all(c[k] for k in switches)]
    assert sorted(c["trial_num"] for c in off) == sorted(c["trial_num"] for c in full) == [1, 2, 3, 4, 5]
    assert len(configs) == 2 ** len(switches) * 5


# --- the report's own sweep files (config.ALIASES): written here in their style -----------------------------------

# A sweep in the style of the report's augmentation sweep: its keys and booleans, no metric, its own project.
REPORT_STYLE_AUGMENTATION = """\
program: train.py
method: grid
project: some-project
parameters:
  arch:
    value: resnet34
  sample_rate:
    value: 44100
  n_fft:
    value: 4096
  n_mels:
    value: 384
  hop_length:
    value: 441
  win_length:
    value: 1764
  n_epochs:
    value: 50
  batch_size:
    value: 64
  trial:
    values: [1, 2, 3, 4, 5]
  add_noise:
    values: [False, True]
  mix_up:
    values: [False, True]
  signal_shift:
    values: [False, True]
  pitch_shift:
    values: [False, True]
"""


def test_a_report_style_augmentation_sweep_is_augment_yaml(tmp_path, capsys):
    theirs = tmp_path / "report_style.yaml"
    theirs.write_text(REPORT_STYLE_AUGMENTATION)
    ours = REPO_ROOT / "sweeps" / "augment.yaml"
    assert main(["check", "--no-weights", str(theirs), str(ours)]) == 0
    out = capsys.readouterr().out
    assert f"{theirs}: 80 runs (grid)" in out and "augment.yaml: 80 runs (grid)" in out
    # each of their runs is the run of augment.yaml with the documented values: the mapping, switch by switch
    mine = {(p["pitch_p"], p["shift_p"], p["noise_p"], p["mix_up"], p["trial_num"]): r.config_id
            for r in expand(load_sweep(ours)).runs for p in [r.params]}
    report = {(1 if p["pitch_shift"] else 0, 0.5 if p["signal_shift"] else 0, 1 if p["add_noise"] else 0,
               0.4 if p["mix_up"] else 0, p["trial"]): r.config_id
              for r in expand(load_sweep(theirs)).runs for p in [r.params]}
    assert len(mine) == len(set(mine.values())) == 80 and report == mine
    # and what train.py records for them holds our keys only, with our values
    record = run_config({"pitch_shift": True, "signal_shift": False, "add_noise": True, "mix_up": True, "trial": 2})
    assert set(record) == set(FIELDS)
    assert (record["pitch_p"], record["shift_p"], record["noise_p"], record["mix_up"], record["trial_num"]) == (
        1.0, 0.0, 1.0, 0.4, 2)


def test_a_stacked_window_sweep_in_the_reports_style(tmp_path):
    theirs = tmp_path / "stacked.yaml"
    theirs.write_text("program: train.py\nmethod: grid\nparameters:\n"
                      "  win_length_1:\n    values: [256, 512]\n"
                      "  win_length_2:\n    values: [1102, 1764]\n"
                      "  win_length_3:\n    values: [2205, 4096]\n"
                      "  trial_num:\n    values: [1, 2]\n")
    runs = expand(load_sweep(theirs)).runs
    assert len(runs) == 16
    for run in runs:
        record = run_config(run.params)
        p = run.params
        assert record["stacked_win_lengths"] == [p["win_length_1"], p["win_length_2"], p["win_length_3"]]
        assert record["win_length"] is None and "win_length_1" not in record
    ours = expand(load_sweep(write_sweep(tmp_path / "ours.yaml", {
        "stacked_win_lengths": {"values": [[a, b, c] for a in (256, 512) for b in (1102, 1764) for c in (2205, 4096)]},
        "trial_num": {"values": [1, 2]}}))).runs
    assert {r.config_id for r in ours} == {r.config_id for r in runs}


def test_a_sample_rate_sweep_needs_no_f_max(tmp_path, capsys):
    plan = expand(load_sweep(write_sweep(tmp_path / "sr.yaml", {
        "sample_rate": {"values": [8000, 16000, 22050, 32000, 44100]}, "trial_num": 1})))
    assert len(plan.runs) == 5 and not plan.notes
    assert [run_config(r.params)["f_max"] for r in plan.runs] == [4000.0, 8000.0, 11025.0, 16000.0, 18000.0]
    # f_max given above Nyquist at some sample rate is refused, naming the grid point
    path = write_sweep(tmp_path / "bad.yaml", {"sample_rate": {"values": [16000, 44100]}, "f_max": 18000})
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err
    assert "1 grid point(s) rejected" in err and "{sample_rate: 16000}: f_max and sample_rate: f_max=18000" in err


def test_a_bare_list_parameter_is_refused_naming_it(tmp_path, capsys):
    path = tmp_path / "bare.yaml"
    path.write_text("program: train.py\nmethod: grid\nparameters:\n"
                    "  arch:\n    - resnet18\n    - densenet121\n"
                    "  trial_num:\n    values: [1, 2]\n")
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "1 problem(s)" in err
    assert "parameters.arch: a bare list is not a W&B parameter" in err
    assert "write {values: ['resnet18', 'densenet121']}" in err


def test_ranges_of_an_augmentation_that_is_off_make_no_new_runs(tmp_path):
    off = expand(load_sweep(write_sweep(tmp_path / "off.yaml", {"pitch_p": 0,
                                                                "pitch_semitones": {"values": [2, 5]}})))
    assert len(off.runs) == 1 and off.notes == ["1 of 2 grid points repeat a configuration"]
    on = expand(load_sweep(write_sweep(tmp_path / "on.yaml", {"pitch_p": 1, "pitch_semitones": {"values": [2, 5]}})))
    assert len(on.runs) == 2 and off.runs[0].config_id not in {r.config_id for r in on.runs}
    # the same with SpecAugment: a width without masks is no run of its own
    masks = expand(load_sweep(write_sweep(tmp_path / "m.yaml", {"spec_time_masks": {"values": [0, 2]},
                                                                "spec_time_width": {"values": [32, 64]}})))
    assert len(masks.runs) == 3


# --- expansion: W&B semantics, identity --------------------------------------------------------------------------


def test_grid_is_the_cartesian_product_with_constants(tmp_path):
    sweep = load_sweep(write_sweep(tmp_path / "g.yaml", {
        "n_mels": {"values": [64, 128, 64.0]},  # 64.0 is 64 for W&B: two values
        "trial_num": {"distribution": "int_uniform", "min": 1, "max": 3},  # inclusive
        "mix_up": {"distribution": "q_uniform", "min": 0, "max": 0.4, "q": 0.2},  # arange: 0, 0.2
        "arch": "resnet34"}))
    runs = expand(sweep).runs
    assert len(runs) == 2 * 3 * 2
    assert all(r.params["arch"] == "resnet34" for r in runs)
    # W&B iterates the parameters in sorted order, the last one fastest
    assert [(r.params["n_mels"], r.params["trial_num"]) for r in runs[:4]] == [(64, 1), (64, 2), (64, 3), (128, 1)]
    assert [r.params["mix_up"] for r in runs[5:7]] == [0.0, 0.2]
    assert len(expand(sweep, count=5).runs) == 5
    capped = load_sweep(write_sweep(tmp_path / "c.yaml", {"n_mels": {"values": [64, 128]},
                                                          "trial_num": {"values": [1, 2, 3]}}, run_cap=4))
    assert [r.params for r in expand(capped).runs] == [r.params for r in expand(capped, count=100).runs][:4]


def test_identity_ignores_key_order_and_matches_train_py(tmp_path):
    a = expand(load_sweep(write_sweep(tmp_path / "a.yaml", {"n_mels": {"values": [64, 128]}, "fold": 2,
                                                           "hop_length": 308})))
    b = expand(load_sweep(write_sweep(tmp_path / "b.yaml", {"fold": 2, "n_mels": {"values": [128, 64]}})))
    assert {r.config_id for r in a.runs} == {r.config_id for r in b.runs}  # 308 is the default hop
    cfg, _ = parse_args(["--fold", "2", "--results_dir", "elsewhere", "--n_mels=64"])
    assert results.config_id(cfg.to_dict()) == a.runs[0].config_id
    ms = expand(load_sweep(write_sweep(tmp_path / "m.yaml", {"hop_length_ms": 7, "fold": 2, "n_mels": 64})))
    assert ms.runs[0].config_id != a.runs[0].config_id  # 7 ms is 309 samples, another configuration


def test_knobs_without_effect_do_not_make_new_runs(tmp_path):
    """simple_cnn ignores pretrained (and then freeze_epochs): four grid points, one configuration."""
    plan = expand(load_sweep(write_sweep(tmp_path / "p.yaml", {"arch": "simple_cnn",
                                                               "pretrained": {"values": [True, False]},
                                                               "freeze_epochs": {"values": [0, 1]}})))
    assert len(plan.runs) == 1 and plan.notes == ["3 of 4 grid points repeat a configuration"]
    # environment keys (where data, caches and results live) never change a run's identity
    here = expand(load_sweep(write_sweep(tmp_path / "a.yaml", {"data_dir": "a", "cache_dir": "c", "device": "cpu"})))
    there = expand(load_sweep(write_sweep(tmp_path / "b.yaml", {"data_dir": "b", "num_workers": 1})))
    assert here.runs[0].config_id == there.runs[0].config_id


def test_random_is_seeded_bounded_and_within_the_distributions(tmp_path):
    sweep = load_sweep(write_sweep(tmp_path / "r.yaml", {
        "learning_rate": {"distribution": "log_uniform_values", "min": 1e-5, "max": 1e-2},
        "n_mels": {"distribution": "q_uniform", "min": 64, "max": 256, "q": 32},
        "hop_length": {"min": 200, "max": 400},  # int_uniform: both bounds integers
        "mix_up": {"values": [0.0, 0.1, 0.2], "probabilities": [0.5, 0.5, 0.0]},
        "f_max": {"distribution": "inv_log_uniform_values", "min": 8000.0, "max": 22050.0}},
        method="random", run_cap=30))
    plan = expand(sweep, seed=1)
    assert plan.bounded and len(plan.runs) == 30 and len({r.config_id for r in plan.runs}) == 30
    for p in (r.params for r in plan.runs):
        assert 1e-5 <= p["learning_rate"] <= 1e-2 and 8000 <= p["f_max"] <= 22050
        assert p["n_mels"] % 32 == 0 and isinstance(p["n_mels"], int) and 64 <= p["n_mels"] <= 256
        assert isinstance(p["hop_length"], int) and 200 <= p["hop_length"] <= 400 and p["mix_up"] in (0.0, 0.1)
    assert [r.params for r in expand(sweep, seed=1, count=5).runs] == [r.params for r in plan.runs[:5]]
    assert [r.params for r in expand(sweep, seed=2).runs] != [r.params for r in plan.runs]
    sweep.raw.pop("run_cap")
    assert not expand(sweep).bounded


def test_exponent_floats_survive_the_command_line(tmp_path):
    # an agent passes str(0.00001) = '1e-05', which YAML 1.1 alone reads as a string
    plan = expand(load_sweep(write_sweep(tmp_path / "e.yaml", {"learning_rate": {"values": [0.00001, 0.01]}})))
    assert [r.params["learning_rate"] for r in plan.runs] == [1e-05, 0.01]


@pytest.mark.parametrize("top, parameters, message", [
    ({}, {"n_mel": {"values": [64]}}, "unknown config key 'n_mel'; did you mean n_mels?"),
    ({}, {"n_fft": {"values": [1024, 4096]}, "win_length": 2205, "trial_num": {"values": [1, 2]}},
     "{n_fft: 1024, trial_num: 1}: win_length and n_fft: window length 2205 must be in 1..n_fft=1024"),
    ({"method": "grdi"}, {"n_mels": 64}, "method: 'grdi' is not one of grid, random, bayes"),
    ({"metric": {"name": "accuracy"}}, {"n_mels": 64}, "would look for the worst accuracy: set goal: maximize"),
    ({"metric": {"name": "acc", "goal": "maximize"}}, {"n_mels": 64}, "train.py does not log 'acc'"),
    ({"metric": {"name": "test_accuracy", "goal": "maximize"}}, {"n_mels": 64}, "test_accuracy is the held-out test "
                                                                                "set's, which nothing may select on"),
    ({"paramters": 1}, {"n_mels": 64}, "unknown top-level key 'paramters': did you mean parameters?"),
    ({"program": "nope.py"}, {"n_mels": 64}, "program: 'nope.py' not found"),
    ({}, {"normalize": {"values": ["global", "median"]}}, "normalize.values[1]: normalize: 'median' is not one"),
    ({}, {"learning_rate": {"min": 0.001, "max": 0.1}}, "grid search needs value, values, int_uniform or q_uniform"),
    ({"method": "random"}, {"batch_size": {"distribution": "uniform", "min": 8, "max": 64}},
     "batch_size is an integer key but uniform gives fractional numbers"),
    ({}, {"mix_up": 0.1, "arch": {"value": "resnet18", "q": 2}}, "key 'q' does not belong to a constant parameter"),
    ({"command": ["${env}", "${python}", "${program}", "${args}"]}, {"n_mels": 64}, "unknown macro '${python}'"),
    ({}, {"trial": {"values": [1, 2]}, "trial_num": 3}, "{trial: 1}: trial and trial_num: give one, not both"),
    ({}, {"pitch_shift": {"values": [False, 0.5]}}, "pitch_shift.values[1]: pitch_shift: expected bool, got 0.5"),
    ({}, {"pitch_shfit": {"values": [False, True]}}, "unknown config key 'pitch_shfit'; did you mean pitch_shift?"),
])
def test_bad_sweeps_fail_with_clear_messages(tmp_path, capsys, top, parameters, message):
    path = write_sweep(tmp_path / "bad.yaml", parameters, **top)
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and message in err


HYPERBAND = {"type": "hyperband", "min_iter": 3}
MAXIMIZE = {"name": "accuracy", "goal": "maximize"}


# each refused by W&B's sweep engine (sweeps 0.3.0: config/schema.json, or its controller's first run)
@pytest.mark.parametrize("top, parameters, message", [
    ({"metric": {**MAXIMIZE, "impute": "mean"}}, {"n_mels": 64}, "metric.impute: 'mean' is not one of latest, best"),
    ({"metric": {**MAXIMIZE, "impute_while_running": False}}, {"n_mels": 64}, "(quote it: 'false')"),
    ({"metric": {**MAXIMIZE, "target": "high"}}, {"n_mels": 64}, "metric.target: expected a number, got 'high'"),
    ({"early_terminate": {**HYPERBAND, "min_iter": 0}}, {"n_mels": 64},
     "early_terminate.min_iter: expected an integer >= 1, got 0"),
    ({"early_terminate": {**HYPERBAND, "eta": 1}}, {"n_mels": 64}, "early_terminate.eta: expected a number > 1"),
    ({"early_terminate": {**HYPERBAND, "min_iter": "3"}}, {"n_mels": 64},
     "early_terminate.min_iter: expected an integer >= 1, got '3'"),
    ({"early_terminate": {**HYPERBAND, "strict": "yes"}}, {"n_mels": 64},
     "early_terminate.strict: expected true or false, got 'yes'"),
    ({"early_terminate": HYPERBAND, "metric": None}, {"n_mels": 64},
     "metric: hyperband early_terminate needs a metric"),
    ({"method": "bayes"}, {"n_mels": 64, "trial_num": 1}, "bayes search needs at least one parameter to search"),
    ({"method": "bayes"}, {"mix_up": {"values": [0.0, 0.2], "probabilities": [0.5, 0.5]}},
     "parameters.mix_up: W&B's bayes search fails on values with probabilities"),
    ({"method": "random"}, {"learning_rate": {"distribution": "log_uniform", "min": -5, "max": 0}},
     "parameters.learning_rate: log_uniform is deprecated by W&B and refused (its min/max are base-e exponents): "
     "use log_uniform_values with the bounds as values (here min: 0.00673795, max: 1)"),
    ({"method": "random"}, {"n_mels": {"distribution": "q_log_uniform", "min": 4, "max": 5, "q": 8}},
     "parameters.n_mels: q_log_uniform is deprecated by W&B"),
    ({"method": "random"}, {"f_max": {"distribution": "inv_log_uniform", "min": -10, "max": -9}},
     "use inv_log_uniform_values with the bounds as values (here min: 8103.08, max: 22026.5)"),
], ids=["impute", "impute_while_running", "target", "min_iter_0", "eta_1", "min_iter_str", "strict_str",
        "hyperband_no_metric", "bayes_constants", "bayes_probabilities", "log_uniform", "q_log_uniform",
        "inv_log_uniform"])
def test_what_wandb_refuses_is_refused_naming_the_key(tmp_path, capsys, top, parameters, message):
    path = write_sweep(tmp_path / "bad.yaml", parameters, **top)
    if top.get("metric", ...) is None:  # no metric key at all, rather than metric: null
        raw = yaml.safe_load(path.read_text())
        del raw["metric"]
        path.write_text(yaml.safe_dump(raw))
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "1 problem(s)" in err and message in err
    assert "learning_rate.min" not in err  # an exponent is never checked as a learning rate


def test_what_wandb_accepts_of_the_same_keys_is_accepted(tmp_path):
    path = write_sweep(tmp_path / "ok.yaml", {"n_mels": {"values": [64]}, "trial_num": 1}, method="bayes",
                       metric={**MAXIMIZE, "target": 0.9, "impute": "best", "impute_while_running": "false"},
                       early_terminate={"type": "hyperband", "max_iter": 27, "s": 2, "eta": 2, "strict": False})
    assert load_sweep(path).method == "bayes"  # a single-value values: is searchable to W&B


def test_run_needs_a_count_for_unbounded_bayes_and_random(tmp_path, capsys):
    bayes = write_sweep(tmp_path / "b.yaml", {"n_mels": {"values": [64, 128]}}, method="bayes")
    random = write_sweep(tmp_path / "r.yaml", {"n_mels": {"values": [64, 128]}}, method="random")
    assert main(["check", str(bayes), str(random)]) == 0
    out = capsys.readouterr().out
    assert "b.yaml: unbounded (bayes)" in out and "r.yaml: unbounded (random" in out
    assert main(["run", str(bayes), "--dry-run"]) == 2
    assert "a bayes sweep without run_cap never ends: give --count N" in capsys.readouterr().err
    assert main(["run", str(random), "--dry-run"]) == 2
    assert "give --count N" in capsys.readouterr().err
    assert main(["run", str(random), "--dry-run", "--count", "2", "--results-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.count("--wandb_mode=auto") == 2  # as train.py: offline without credentials


def test_a_sweep_can_vary_recipe_files_given_to_train_py_as_config(tmp_path, capsys):
    (tmp_path / "fast.yaml").write_text("learning_rate: 0.02\nmix_up: 0\n")
    (tmp_path / "slow.yaml").write_text("learning_rate: 0.0001\noptimizer: adamw\n")
    recipes = [str(tmp_path / "fast.yaml"), str(tmp_path / "slow.yaml")]
    path = write_sweep(tmp_path / "recipes.yaml", {"config": {"values": recipes}, "trial_num": {"values": [1, 2]},
                                                   "mix_up": 0.2})
    plan = expand(load_sweep(path))
    configs = [run_config(r.params) for r in plan.runs]
    assert [(c["learning_rate"], c["optimizer"], c["mix_up"]) for c in configs] == [
        (0.02, "adam", 0.2), (0.02, "adam", 0.2), (0.0001, "adamw", 0.2), (0.0001, "adamw", 0.2)]  # sweep keys win
    assert len({r.config_id for r in plan.runs}) == 4 and "config" not in configs[0]
    cmd = build_command(load_sweep(path), plan.runs[0].params)
    assert f"--config={recipes[0]}" in cmd

    bad = write_sweep(tmp_path / "missing.yaml", {"config": {"values": [str(tmp_path / "absent.yaml")]}})
    assert main(["check", str(bad)]) == 2
    assert "absent.yaml" in capsys.readouterr().err


# --- a recipe under every run (--config), the report's normalize booleans, --runs -------------------------------

RECIPE = "n_mels: 128\nhop_length: 441\nwin_length: 1764\nf_max: 20000\nlearning_rate: 0.02\nnormalize: true\n" \
         "top_db: null\nstft_normalized: true\n"


def test_a_recipe_lies_under_every_run_and_the_sweeps_keys_win(tmp_path, monkeypatch):
    (tmp_path / "base.yaml").write_text(RECIPE)
    (tmp_path / "mine.yaml").write_text("learning_rate: 0.005\nbatch_size: 32\n")
    monkeypatch.chdir(tmp_path)  # a relative --config is made absolute: the runs read it wherever they start
    recipe = load_recipe("base.yaml")
    assert recipe == tmp_path / "base.yaml"
    path = write_sweep(tmp_path / "s.yaml", {"n_mels": {"values": [64, 224]}, "normalize": {"values": [False, True]},
                                             "config": str(tmp_path / "mine.yaml")},
                       program=str(REPO_ROOT / "train.py"))
    sweep = load_sweep(path, recipe)
    runs = expand(sweep).runs
    assert len(runs) == 4 and all(r.config == run_config(r.params, recipe) for r in runs)
    for run in runs:  # the sweep's values, then its own config file, then the recipe, then the defaults
        c = run.config
        assert (c["n_mels"], c["normalize"]) == (run.params["n_mels"], "global" if run.params["normalize"] else "none")
        assert (c["learning_rate"], c["batch_size"]) == (0.005, 32)
        assert (c["hop_length"], c["win_length"], c["f_max"], c["top_db"], c["stft_normalized"]) == (
            441, 1764, 20000.0, None, True)
        assert c["n_fft"] == 4096 and c["mix_up"] == 0.1
        cmd = build_command(sweep, run.params)
        args = cmd[cmd.index(str(REPO_ROOT / "train.py")) + 1:]
        assert args[0] == f"--config={recipe}" and args[1] == f"--config={tmp_path / 'mine.yaml'}"
        assert results.config_id(parse_args(args)[0].effective_dict()) == run.config_id  # what train.py records
    plain = expand(load_sweep(path)).runs
    assert {r.config_id for r in plain}.isdisjoint(r.config_id for r in runs)


def test_check_runs_prints_each_runs_effective_config_as_a_json_line(tmp_path, capsys):
    (tmp_path / "base.yaml").write_text(RECIPE)
    path = write_sweep(tmp_path / "s.yaml", {"n_fft": {"values": [8192, 16384]}, "win_length": 4410,
                                             "norm": {"values": [False, True]}})
    assert main(["check", "--no-weights", str(path), "--config", str(tmp_path / "base.yaml"), "--runs"]) == 0
    out, err = capsys.readouterr()
    lines = [json.loads(line) for line in out.splitlines()]
    runs = expand(load_sweep(path, load_recipe(tmp_path / "base.yaml"))).runs
    assert [(d["sweep"], d["config_id"], d["config"]) for d in lines] == [(str(path), r.config_id, r.config)
                                                                          for r in runs]
    assert [(d["config"]["n_fft"], d["config"]["normalize"]) for d in lines] == [
        (8192, "none"), (8192, "global"), (16384, "none"), (16384, "global")]
    assert set(lines[0]["config"]) == set(FIELDS) and lines[0]["config"]["n_mels"] == 128
    assert f"{path}: 4 runs (grid)" in err and "1 of 1 sweep file(s) valid" in err
    bayes = write_sweep(tmp_path / "b.yaml", {"n_mels": {"values": [64, 128]}}, method="bayes")
    assert main(["check", str(bayes), "--runs"]) == 0
    out, err = capsys.readouterr()
    assert out == "" and "--runs lists no run" in err


@pytest.mark.parametrize("recipe, message", [
    (None, "--config: no such file"),
    ("n_mel: 64\n", "--config {}: unknown config key 'n_mel'; did you mean n_mels?"),
    ("n_fft: 1024\nwin_length: 2048\n", "window length 2048 must be in 1..n_fft=1024"),
])
def test_a_bad_recipe_is_refused(tmp_path, capsys, recipe, message):
    path = tmp_path / "base.yaml"
    if recipe is not None:
        path.write_text(recipe)
    sweep = write_sweep(tmp_path / "s.yaml", {"n_mels": {"values": [64, 128]}})
    assert main(["check", str(sweep), "--config", str(path)]) == 2
    assert message.format(path) in capsys.readouterr().err
    assert main(["run", str(sweep), "--config", str(path), "--dry-run"]) == 2


def test_json_argument_macros_cannot_carry_a_recipe(tmp_path, capsys):
    (tmp_path / "base.yaml").write_text(RECIPE)
    path = write_sweep(tmp_path / "s.yaml", {"n_mels": 64}, command=["${env}", "${program}", "${args_json}"])
    assert main(["check", "--no-weights", str(path)]) == 0
    assert main(["check", str(path), "--config", str(tmp_path / "base.yaml")]) == 2
    assert "${args_json} passes the parameters as JSON, which holds no --config recipe" in capsys.readouterr().err


def test_the_runner_names_the_recipe_and_gives_it_to_every_run(tmp_path, capsys):
    (tmp_path / "base.yaml").write_text(RECIPE)
    path = write_sweep(tmp_path / "s.yaml", {"n_mels": {"values": [64, 128]}})
    assert main(["run", str(path), "--config", str(tmp_path / "base.yaml"), "--dry-run",
                 "--results-dir", str(tmp_path / "res")]) == 0
    out = capsys.readouterr().out
    assert f"({path} over recipe {tmp_path / 'base.yaml'}): 2 runs (grid)" in out
    assert out.count(f"train.py --config={tmp_path / 'base.yaml'} --n_mels=") == 2


# --- names and bounds: a sweep file cannot write outside --results-dir nor hang the reader ------------------------


@pytest.mark.parametrize("name, says", [("runs/../../../etc", "holds a path separator"),
                                        ("C:\\sweeps\\x", "holds a path separator"),
                                        ("..", "starts with a dot"), (" ", "is empty"),
                                        ("a\nb", "holds a NUL or control character")])
def test_a_sweep_name_that_is_not_one_folder_name_is_refused_and_writes_nothing(tmp_path, capsys, name, says):
    (tmp_path / "deep").mkdir()
    path = write_sweep(tmp_path / "deep" / "s.yaml", {"trial_num": {"values": [1, 2]}}, name=name)
    assert main(["check", str(path)]) == 2
    assert main(["run", str(path), "--results-dir", str(tmp_path / "deep" / "res")]) == 2
    errs = [line for line in capsys.readouterr().err.splitlines() if "name:" in line]
    assert len(errs) == 2 and all(f"name: {name!r} {says}" in e and "one plain folder name" in e for e in errs)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["deep", "s.yaml"]  # no results folder, log or lock


def test_the_runner_never_makes_a_folder_outside_the_results_root(tmp_path):
    from audiosweep.errors import SweepError
    from audiosweep.sweep.runner import Options

    sweep = load_sweep(write_sweep(tmp_path / "ok.yaml", {"trial_num": {"values": [1]}}))
    sweep.raw["name"] = "../escape"  # past load_sweep's check: the folder is refused all the same
    with pytest.raises(SweepError, match="not one plain folder name"):
        Options(results_root=tmp_path / "res").folder(sweep)


def test_a_yaml_alias_bomb_is_refused_at_once_naming_the_limit(tmp_path, capsys):
    import time

    from audiosweep.sweep.spec import MAX_YAML_NODES

    # 7 levels of 8 aliases: 8^7 = 2 million nodes once expanded, in under 300 bytes
    levels = ["l0: &l0 [a, b, c, d, e, f, g, h]"] + [
        f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 8) + "]" for i in range(1, 7)]
    path = tmp_path / "bomb.yaml"
    path.write_text("program: train.py\nmethod: grid\nparameters:\n  trial_num: {values: [1]}\n"
                    "description: {" + ", ".join(levels) + "}\n")
    start = time.perf_counter()
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err
    assert time.perf_counter() - start < 5 and len(err) < 500
    assert f"over the limit of {MAX_YAML_NODES}" in err and "aliases expand to" in err
    path.write_text("program: train.py\nmethod: grid\nparameters: &p\n  trial_num: {values: [1]}\n  x: *p\n")
    assert main(["check", str(path)]) == 2 and "a YAML alias refers to a mapping or list that contains it" in \
        capsys.readouterr().err


def test_a_few_aliases_still_read(tmp_path):
    path = tmp_path / "alias.yaml"
    path.write_text("program: train.py\nmethod: grid\nparameters:\n  trial_num: &two {values: [1, 2]}\n"
                    "  n_mels: {values: [32, 40]}\n")
    assert len(expand(load_sweep(path)).runs) == 4


def test_sweep_files_over_the_size_limit_or_not_utf8_are_one_line_errors(tmp_path, capsys, monkeypatch):
    from audiosweep.sweep import spec

    path = write_sweep(tmp_path / "s.yaml", {"trial_num": {"values": [1, 2]}}, description="x" * 300)
    monkeypatch.setattr(spec, "MAX_SWEEP_BYTES", 256)
    assert main(["check", str(path)]) == 2
    assert "larger than the limit of" in capsys.readouterr().err
    monkeypatch.undo()
    path.write_bytes(path.read_bytes().replace(b"program", b"# r\xe9sum\xe9\nprogram"))
    assert main(["check", str(path)]) == 2
    assert main(["run", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"error: {path}: not UTF-8 text (byte 0xe9 on line 1): save the file as UTF-8" == err[-1]


def test_a_grid_over_the_limit_is_refused_at_once_unless_run_cap_bounds_it(tmp_path, capsys):
    import time

    from audiosweep.sweep.spec import MAX_GRID_POINTS

    params = {"trial_num": {"min": 1, "max": 10}, "n_mels": {"values": [32, 40, 48, 56, 64, 72, 80]},
              "mix_up": {"values": [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]}, "hop_length": {"min": 100, "max": 109}}
    path = write_sweep(tmp_path / "big.yaml", params)
    start = time.perf_counter()
    assert main(["check", str(path)]) == 2
    assert time.perf_counter() - start < 5
    err = capsys.readouterr().err
    assert "the grid has 4200 points (" in err and f"over the limit of {MAX_GRID_POINTS} runs" in err
    assert "run_cap: N" in err
    assert main(["check", str(write_sweep(tmp_path / "huge.yaml", {"trial_num": {"min": 1, "max": 10 ** 18}},
                                          run_cap=3))]) == 2  # one parameter's values are never listed
    assert "over the limit" in capsys.readouterr().err
    assert len(expand(load_sweep(write_sweep(tmp_path / "capped.yaml", params, run_cap=5))).runs) == 5


def test_count_beyond_a_finite_random_space_is_capped_with_a_note(tmp_path, capsys):
    import time

    path = write_sweep(tmp_path / "r.yaml", {"trial_num": {"values": [1, 2, 3]}, "n_mels": {"values": [32, 40]},
                                             "n_epochs": {"min": 1, "max": 2}}, method="random")
    start = time.perf_counter()
    assert main(["run", str(path), "--count", "500000", "--dry-run", "--results-dir", str(tmp_path / "r")]) == 0
    assert time.perf_counter() - start < 10
    out = capsys.readouterr().out
    assert "--count 500000 capped to the 12 distinct configuration(s)" in out and "12 to run" in out


@pytest.mark.parametrize("key, spec, says", [
    ("trial_num", {"min": 1, "max": 10 ** 23}, "integer bounds must lie within +-2^63"),
    ("trial_num", {"distribution": "int_uniform", "min": -2 ** 63, "max": 4}, "integer bounds must lie within +-2^63"),
    ("learning_rate", {"min": -1e308, "max": 1e308}, "is too wide to draw from: narrow it"),
    ("learning_rate", {"distribution": "q_uniform", "min": 0.0, "max": 1.0, "q": 1e-320}, "in steps of q 1e-320 is "
                                                                                          "too wide"),
    ("learning_rate", {"distribution": "beta", "a": 0, "b": 1}, "a: must be > 0 (a beta distribution's shape)"),
    ("learning_rate", {"distribution": "log_normal", "mu": 1000.0}, "cannot draw a value from"),
])
def test_numbers_out_of_range_are_one_line_errors(tmp_path, capsys, key, spec, says):
    for method in ("random", "bayes", "grid"):
        path = write_sweep(tmp_path / f"{method}.yaml", {key: spec}, method=method)
        assert main(["check", str(path)]) == 2
        assert main(["run", str(path), "--count", "2", "--dry-run", "--results-dir", str(tmp_path / "r")]) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and (err.count(says) == 2 or method != "random"), err
        assert all(line.startswith(("error: ", "  ", "0 of 1")) and (str(path) in line or not line.startswith(
            "error")) for line in err.splitlines()), err


def test_a_metric_that_is_no_name_is_refused(tmp_path, capsys):
    path = write_sweep(tmp_path / "m.yaml", {"n_mels": 64}, metric={"name": ["accuracy"], "goal": "maximize"})
    assert main(["check", str(path)]) == 2
    assert "metric: name and goal are strings" in capsys.readouterr().err


def test_checking_a_grid_builds_train_pys_parser_once(tmp_path, monkeypatch):
    from audiosweep.config import build_parser
    from audiosweep.sweep import spec

    built = []
    monkeypatch.setattr(spec, "build_parser", lambda: built.append(1) or build_parser())
    spec._train_parser.cache_clear()
    plan = expand(load_sweep(write_sweep(tmp_path / "s.yaml", {"n_mels": {"values": [32, 64, 128]},
                                                               "learning_rate": {"values": [0.001, 0.01]}})))
    spec._train_parser.cache_clear()
    assert len(plan.runs) == 6 and built == [1]
    assert [r.config["n_mels"] for r in plan.runs] == [32, 64, 128] * 2
