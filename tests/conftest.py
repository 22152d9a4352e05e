"""Shared fixtures: a small synthetic ESC-50 tree, a shared waveform cache, tiny fast run settings."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from audiosweep.synthetic import make_synthetic_esc50

REPO = Path(__file__).resolve().parent.parent
SLICE = REPO.parent / "shared" / "esc50-slice"

# Settings that make a run take seconds on a 2-core CPU: 16 kHz audio, small FFT, 40 mels, simple_cnn.
TINY = ["--arch", "simple_cnn", "--pretrained", "false", "--sample_rate", "16000", "--n_fft", "512",
        "--win_length", "400", "--hop_length", "160", "--n_mels", "40", "--f_max", "8000", "--batch_size", "16",
        "--wandb_mode", "disabled", "--num_workers", "2"]


@pytest.fixture(autouse=True)
def own_temp_dir(tmp_path_factory, monkeypatch) -> Path:
    """Each test's temporary files (``tempfile`` here, ``TMPDIR`` in the processes it starts) in a folder of its
    own: what other processes do to the machine's temporary folder cannot change a test's outcome."""
    folder = tmp_path_factory.mktemp("tmp")
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    monkeypatch.setenv("TMPDIR", str(folder))
    return folder


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    """ESC-10 classes, 4 clips per class and fold (200 clips), the rest of the official list absent."""
    return make_synthetic_esc50(tmp_path_factory.mktemp("synth") / "ESC-50", per_class_per_fold=4)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def read_records(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(Path(folder).glob("*.json"))]


# A sweep run of a few seconds on the synth_sweep data (ESC-10 of the synthetic set, 1 epoch).
TINY_SWEEP_RUN = {"allow_missing": True, "esc10": True, "arch": "simple_cnn", "pretrained": False,
                  "sample_rate": 16000, "n_fft": 512, "win_length": 400, "hop_length": 320, "f_max": 8000,
                  "n_mels": 32, "n_epochs": 1, "batch_size": 16}


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> dict:
    """data_dir and cache_dir of a small synthetic ESC-50 (2 clips per class and fold), for sweep files."""
    from audiosweep.synthetic import make_synthetic_esc50

    root = tmp_path_factory.mktemp("synth")
    data = make_synthetic_esc50(root / "esc50", per_class_per_fold=2)
    return {"data_dir": str(data), "cache_dir": str(root / "cache")}


def write_sweep(path: Path, parameters: dict, **top) -> Path:
    """A grid sweep file of ``train.py`` maximising accuracy; plain values become ``{value: ...}``."""
    spec = {"program": "train.py", "method": "grid", "metric": {"name": "accuracy", "goal": "maximize"}, **top,
            "parameters": {k: (v if isinstance(v, dict) else {"value": v}) for k, v in parameters.items()}}
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def run_sweep_cli(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m audiosweep.sweep ARGS`` from the repository root."""
    return subprocess.run([sys.executable, "-m", "audiosweep.sweep", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, env=env)


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs mounted in ``tmp_path`` (a disk that fills up), or a skip where mounting is not allowed."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def fill(folder: Path) -> None:
    """Fill the file system holding ``folder`` to the last byte."""
    with open(folder / "filler", "wb") as f:
        try:
            while True:
                f.write(bytes(1 << 16))
                f.flush()
        except OSError:
            pass


TINY_AST = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}


def save_to_hf_cache(model, cache: Path, repo: str) -> Path:
    """Write ``model`` (``save_pretrained``) where the Hugging Face hub's cache keeps ``repo``'s main revision."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    snapshot = folder / "snapshots" / ("0" * 40)
    model.save_pretrained(snapshot)
    (folder / "refs").mkdir(exist_ok=True)
    (folder / "refs" / "main").write_text("0" * 40)
    return snapshot


@pytest.fixture(scope="session")
def ast_hub_cache(tmp_path_factory) -> Path:
    """A Hugging Face hub cache holding a two-layer AST (hidden size 32) as AudioSet AST's checkpoint: the real
    one's layout (ASTForAudioClassification, 527 AudioSet labels, 128 mel bins, 1024 frames), not its size."""
    import torch
    from transformers import ASTConfig, ASTForAudioClassification

    from audiosweep.models import AST_CHECKPOINT

    cache = tmp_path_factory.mktemp("hf") / "hub"
    torch.manual_seed(0)
    save_to_hf_cache(ASTForAudioClassification(ASTConfig(**TINY_AST, num_labels=527)), cache, AST_CHECKPOINT)
    return cache


@pytest.fixture
def hf_offline(ast_hub_cache, monkeypatch) -> Path:
    """The hub offline, its cache the one of :func:`ast_hub_cache` (constants that huggingface_hub reads on use)."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(ast_hub_cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return ast_hub_cache


def toy_learner(layer: dict, height: int, width: int, cbs: list):
    """A Learner of ``layer``'s config over 48 learnable inputs (the class shifts them) of 3 classes, 36 training
    and 12 validation, of shape (1, height, width); returns it and the config."""
    import torch

    from audiosweep.config import merge
    from audiosweep.loaders import make_dls
    from audiosweep.training import build_learner

    cfg = merge([{"mix_up": 0, "n_epochs": 3, "batch_size": 8, "trial_num": 1, **layer}])
    torch.manual_seed(0)
    y = torch.arange(48) % 3
    x = torch.randn(48, 1, height, width) + y.view(-1, 1, 1, 1).float()
    dls = make_dls(x, y, torch.arange(36), torch.arange(36, 48), cfg)
    return build_learner(cfg, dls, 1, 3, torch.device("cpu"), cbs), cfg
