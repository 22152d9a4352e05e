"""sweeps/palanisamy/: Table I and the deep ensembles of Palanisamy et al. 2020, each grid point a valid run with the
paper's recipe, dataset protocol and front end, and the run counts of its README."""

from __future__ import annotations

import re

import pytest

from audiosweep.sweep.cli import main
from audiosweep.sweep.spec import REPO_ROOT, expand, load_sweep, run_config

FOLDER = REPO_ROOT / "sweeps" / "palanisamy"
SWEEPS = sorted(FOLDER.glob("*.yaml"))
ARCHS = {"densenet201", "resnet50", "inception_v3_tv"}
# The code's training recipe (config/*.json, train.py), for every run.
RECIPE = {"optimizer": "adam_l2", "learning_rate": 1e-4, "weight_decay": 1e-3, "batch_size": 32,
          "loss": "cross_entropy", "label_smoothing": 0.0, "mix_up": 0.0, "checkpoint": "best", "schedule": "step",
          "step_factor": 0.1, "normalize": "none", "frontend": "logmel", "n_mels": 128, "mel_scale": "htk",
          "mel_norm": "none", "log_scale": "ln", "stacked_win_lengths_ms": [25.0, 50.0, 100.0],
          "stacked_hop_lengths_ms": [10.0, 25.0, 50.0], "warp_domain": "waveform", "pitch_integer": True,
          "pitch_semitones": 2.0, "stretch_min_rate": 0.9, "stretch_max_rate": 1.2, "keep_clean_copy": True}
PRETRAINED = {"pretrained": True, "finetune": "full", "freeze_epochs": 0, "discriminative_lr": False, "n_epochs": 70,
              "step_size": 30, "step_milestones": None}
RANDOM = {"pretrained": False, "n_epochs": 450, "step_size": None, "step_milestones": [300, 350]}
# Per dataset: sample rate, FFT (the paper's 100 ms), Nyquist, and the common shape every channel is resized to.
DATASETS = {"esc50": {"sample_rate": 44100, "n_fft": 4410, "f_max": 22050.0, "resize_to": [128, 250]},
            "urbansound8k": {"sample_rate": 22050, "n_fft": 2205, "f_max": 11025.0, "resize_to": [128, 250]},
            "gtzan": {"sample_rate": 22050, "n_fft": 2205, "f_max": 11025.0, "resize_to": [128, 1500]}}
FOLDS = {"esc50": [1, 2, 3, 4, 5], "urbansound8k": list(range(1, 11)), "gtzan": list(range(1, 11))}


def configs(path):
    return [run_config(r.params) for r in expand(load_sweep(path)).runs]


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.name)
def test_every_run_has_the_papers_recipe_protocol_and_front_end(path, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)  # the recipe paths are relative to the repository root
    runs = configs(path)
    dataset = runs[0]["dataset"]
    assert {c["arch"] for c in runs} == ARCHS and {c["dataset"] for c in runs} == {dataset}
    for c in runs:
        assert {k: c[k] for k in RECIPE} == RECIPE
        assert {k: c[k] for k in DATASETS[dataset]} == DATASETS[dataset]
        init = PRETRAINED if c["pretrained"] else RANDOM
        assert {k: c[k] for k in init} == init
    table1 = path.stem.startswith("table1")
    assert sorted({c["pretrained"] for c in runs}) == ([False, True] if table1 else [True])
    if table1 and dataset == "gtzan":  # the paper's stratified 20 %, one split per trial
        assert {(c["split"], c["valid_pct"]) for c in runs} == {("stratified", 0.2)}
        assert sorted({c["trial_num"] for c in runs}) == [1, 2, 3]
    else:
        assert {c["split"] for c in runs} == {"official"} and sorted({c["fold"] for c in runs}) == FOLDS[dataset]
    if not table1:  # 5 members per architecture and fold, differing only in the seed
        assert sorted({c["trial_num"] for c in runs}) == [1, 2, 3, 4, 5]
        assert len(runs) == len(ARCHS) * 5 * len(FOLDS[dataset])


@pytest.mark.slow
def test_check_passes_and_counts_match_the_readme(capsys, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    assert main(["check", "--no-weights", *map(str, SWEEPS)]) == 0
    printed = dict(re.findall(r"palanisamy/(\S+\.yaml): (\d+) runs", capsys.readouterr().out))
    table = dict(re.findall(r"^\| `(\S+\.yaml)` \|.*?\| +(\d+) \|", (FOLDER / "README.md").read_text(), re.M))
    assert printed == table and set(printed) == {p.name for p in SWEEPS}


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.name)
def test_headers_say_what_is_reproduced_the_published_number_and_how_to_analyse(path):
    header = path.read_text().split("\nname:")[0]
    assert "Palanisamy et al. 2020" in header and "Published" in header and "Analyse:" in header
    assert re.search(r"\d\d\.\d\d %", header)
