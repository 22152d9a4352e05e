"""Checks before any work: pretrained weights missing offline, an input the architecture cannot take, clips too
short for the STFT."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys

import pytest
import torch
import torchvision

from audiosweep.config import merge
from audiosweep.data import ensure_dataset
from audiosweep.errors import ConfigError, DatasetError
from audiosweep.features import check_clip_length
from audiosweep.models import GPT2_CHECKPOINT
from audiosweep.models.base import missing_weights, reachable
from audiosweep.models.torchvision_models import TORCHVISION_ARCHS, TORCHVISION_NAMES
from audiosweep.preflight import check_before_work, check_model_input
from tests.conftest import REPO, run_sweep_cli


@pytest.mark.parametrize("layer, frames", [
    ({"arch": "simple_cnn", "n_mels": 1}, 716),
    ({"arch": "simple_cnn", "n_mels": 24}, 716),
    ({"arch": "simple_cnn", "n_mels": 64}, 2),  # hop_length 100000: 2 frames
    ({"arch": "densenet121", "n_mels": 16}, 716),
])
@pytest.mark.slow
def test_an_input_the_model_cannot_take_is_refused_naming_the_keys(layer, frames):
    cfg = merge([layer])
    with pytest.raises(ConfigError) as e:
        check_model_input(cfg, frames, 50)
    msg = str(e.value)
    assert "n_mels" in msg and "hop_length" in msg and cfg.arch in msg and "Output size is too small" in msg
    least = re.search(r"needs at least (\d+) mel bands \(n_mels\) and (\d+) frames", msg)
    bands, least_frames = int(least[1]), int(least[2])
    check_model_input(merge([{**layer, "n_mels": bands}]), least_frames, 50)  # the sizes it names do pass
    with pytest.raises(ConfigError):
        check_model_input(merge([{**layer, "n_mels": bands - 1}]), least_frames, 50)
    with pytest.raises(ConfigError):
        check_model_input(merge([{**layer, "n_mels": bands}]), least_frames - 1, 50)


def test_inception_v3_needs_75_by_75():
    """torchvision's Inception-v3 (the Palanisamy et al. third model) takes 75 x 75 and nothing smaller."""
    cfg = merge([{"arch": "inception_v3_tv", "n_mels": 75, "pretrained": False}])
    check_model_input(cfg, 75, 10)
    with pytest.raises(ConfigError, match="inception_v3_tv cannot take a 1 x 75 x 74 spectrogram .* It needs at "
                                          "least 75 mel bands \\(n_mels\\) and 75 frames"):
        check_model_input(cfg, 74, 10)


def test_inputs_the_model_takes_pass():
    check_model_input(merge([]), 716, 50)  # the report's ResNet-18 at 224 x 716
    check_model_input(merge([{"arch": "simple_cnn", "n_mels": 32}]), 32, 10)


def test_clips_must_be_longer_than_half_the_fft():
    check_clip_length(merge([]), 220500)
    with pytest.raises(ConfigError, match="n_fft=1048576 needs clips longer than n_fft/2 = 524288 samples"):
        check_clip_length(merge([{"n_fft": 2**20}]), 220500)


def test_the_resized_shape_is_what_the_model_is_checked_on():
    """resize_to sets the model's input, whatever n_mels and the hops give before it; a refusal names it."""
    stacked = {"arch": "simple_cnn", "stacked_win_lengths": [1024, 2048], "stacked_hop_lengths": [256, 512]}
    check_model_input(merge([{**stacked, "n_mels": 24, "resize_to": [64, 100]}]), 100, 50)  # 24 bands alone fail
    with pytest.raises(ConfigError) as e:
        check_model_input(merge([{**stacked, "n_mels": 64, "resize_to": [1, 100]}]), 100, 50)
    assert "resize_to" in str(e.value) and "2 x 1 x 100" in str(e.value) and "resized to 1 x 100" in str(e.value)


RESNET18_FILE = torchvision.models.ResNet18_Weights.DEFAULT.url.rsplit("/", 1)[1]


def offline_env(torch_home) -> dict:
    """This environment with an empty torch hub cache and every download sent to a closed local port: offline on
    any machine."""
    env = {**os.environ, "TORCH_HOME": str(torch_home), "PYTHONPATH": str(REPO), "HTTPS_PROXY": "http://127.0.0.1:9"}
    env.pop("NO_PROXY", None), env.pop("no_proxy", None)
    return env


def test_missing_weights_refuse_a_run_before_it_reads_data(tmp_path):
    """train.py with pretrained resnet18 and an empty cache: refused (exit 2) naming the file and the folder it goes
    in; its data_dir (empty) was never read, nothing was downloaded or cached, no record written."""
    data = tmp_path / "data"
    data.mkdir()
    args = ["--arch", "resnet18", "--pretrained", "true", "--data_dir", str(data), "--cache_dir",
            str(tmp_path / "cache"), "--results_dir", str(tmp_path / "results"), "--wandb_mode", "disabled"]
    out = subprocess.run([sys.executable, "train.py", *args], cwd=REPO, capture_output=True, text=True, timeout=300,
                         env=offline_env(tmp_path / "torch"))
    assert out.returncode == 2, out.stderr
    assert f"put {RESNET18_FILE}" in out.stderr and str(tmp_path / "torch" / "hub" / "checkpoints") in out.stderr
    assert "download.pytorch.org cannot be reached" in out.stderr and "--pretrained false" in out.stderr
    assert list(data.iterdir()) == [] and not (tmp_path / "cache").exists()
    assert not list((tmp_path / "results").glob("*.json"))


def test_a_sweep_with_missing_weights_is_refused_once_per_file(tmp_path):
    """sweep check names each missing checkpoint once: its file, its architectures, its grid points."""
    sweep = tmp_path / "pre.yaml"
    sweep.write_text(f"name: pre\nprogram: {REPO / 'train.py'}\nmethod: grid\nparameters:\n"
                     "  arch: {values: [resnet18, resnet34, simple_cnn]}\n  n_mels: {values: [64, 128]}\n"
                     "  trial_num: {values: [1, 2]}\n")
    out = run_sweep_cli("check", str(sweep), env=offline_env(tmp_path / "torch"))
    assert out.returncode == 2
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 2 and all(line.endswith("(4 grid points)") for line in errors)
    assert "weights of resnet18 " in errors[0] and f"put {RESNET18_FILE} " in errors[0]
    assert "resnet34-" in errors[1] and "download.pytorch.org cannot be reached" in errors[1]
    assert run_sweep_cli("check", str(sweep), "--no-weights", env=offline_env(tmp_path / "torch")).returncode == 0


def test_weights_in_the_cache_pass(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr("audiosweep.models.base.reachable", lambda host: False)
    cfg = merge([{"arch": "resnet18", "pretrained": True, "results_dir": str(tmp_path / "results")}])
    missing = missing_weights(cfg)
    assert missing.files == RESNET18_FILE and missing.folder == str(tmp_path / "hub" / "checkpoints")
    with pytest.raises(ConfigError, match=f"put {RESNET18_FILE}"):
        check_before_work(cfg)
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "hub" / "checkpoints" / RESNET18_FILE)
    assert missing_weights(cfg) is None
    check_before_work(cfg)
    assert missing_weights(merge([{"arch": "resnet34"}])) is not None  # another file
    assert missing_weights(merge([{"arch": "resnet34", "pretrained": False}])) is None


def test_missing_weights_are_refused_only_when_no_download_can_fetch_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cfg = merge([{"arch": "resnet18"}])
    assert missing_weights(cfg, probe=lambda host: host == "download.pytorch.org") is None  # online: fetched later
    assert missing_weights(cfg, probe=lambda host: False).blocked == "download.pytorch.org cannot be reached"


def test_hub_checkpoints_are_looked_up_in_the_hugging_face_cache(hf_offline, tmp_path, monkeypatch):
    """AST's checkpoint is in the (test's) cache; GPT-2's is not in an empty cache and the hub is offline; a
    pretrained_path that does not exist is refused whatever the network."""
    import huggingface_hub.constants

    online = lambda host: True  # noqa: E731
    assert missing_weights(merge([{"arch": "ast"}]), online) is None
    empty = tmp_path / "hub"  # the session's cache may hold a GPT-2 another test saved
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(empty))
    assert missing_weights(merge([{"arch": "ast"}]), online) is not None
    gpt2 = missing_weights(merge([{"arch": "cnn_gpt2"}]), online)
    assert gpt2.blocked == "HF_HUB_OFFLINE is set" and gpt2.folder == str(empty)
    assert f"hf download {GPT2_CHECKPOINT}" in gpt2.source and "config.json and model.safetensors" == gpt2.files
    assert missing_weights(merge([{"arch": "cnn_gpt2", "pretrained": False}]), online) is None
    absent = merge([{"arch": "cnn_gpt2", "pretrained_path": str(tmp_path / "absent")}])
    assert missing_weights(absent, online).blocked == "pretrained_path does not exist"


def test_reachable_opens_a_connection_to_the_host_or_its_proxy(monkeypatch):
    assert not reachable("host.invalid")
    with socket.socket() as proxy:
        proxy.bind(("127.0.0.1", 0))
        proxy.listen()
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.getsockname()[1]}")
        assert reachable("host.invalid")  # downloads would go through the proxy, which answers


@pytest.mark.parametrize("arch", TORCHVISION_ARCHS)
def test_every_torchvision_arch_names_its_own_weights_file(arch, tmp_path, monkeypatch):
    """Our names that are not torchvision's (inception_v3_tv) still find torchvision's file."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    missing = missing_weights(merge([{"arch": arch}]), lambda host: False)
    tv_name = TORCHVISION_NAMES.get(arch, arch)
    assert missing.files == torchvision.models.get_model_weights(tv_name).DEFAULT.url.rsplit("/", 1)[1]


def test_model_checks_are_kept_per_model_and_input(tmp_path, monkeypatch):
    """The meta-device passes (input check, memory estimate) run once per model and input: a second run of the
    same shape reads their results from cache_dir, another shape, class count or model knob is checked again,
    and a refusal is never kept."""
    from audiosweep import memory, preflight

    calls = []
    forward, estimate = preflight._forward_error, memory.estimate_training
    monkeypatch.setattr(preflight, "_forward_error", lambda *a: calls.append("input") or forward(*a))
    monkeypatch.setattr(preflight, "estimate_training", lambda *a: calls.append("memory") or estimate(*a))
    base = {"arch": "simple_cnn", "pretrained": False, "n_mels": 32, "device": "cpu", "cache_dir": str(tmp_path / "c"),
            "results_dir": str(tmp_path / "r")}
    check_before_work(merge([base]))
    assert calls == ["input", "memory"]
    check_before_work(merge([base]))
    assert calls == ["input", "memory"]  # kept
    check_before_work(merge([{**base, "batch_size": 8}]))
    assert calls == ["input", "memory", "memory"]  # the estimate is per batch size, the input check is not
    check_before_work(merge([{**base, "n_mels": 40}]))
    assert calls[3:] == ["input", "memory"]
    cfg = merge([{**base, "n_mels": 40}])
    frames = preflight.n_frames(cfg, preflight.clip_samples(cfg))
    del calls[:]
    preflight.check_model_input_once(cfg, frames, 10)  # another class count
    assert calls == ["input"]
    gpt = {**base, "arch": "cnn_gpt2", "n_mels": 64}
    keys = {preflight.model_key(merge([{**gpt, "gpt2_layers": n}]), frames, 50) for n in (1, 2)}
    assert len(keys) == 2  # the entry's own knobs are part of the key
    bad = merge([{**base, "n_mels": 1}])
    for _ in range(2):
        with pytest.raises(ConfigError, match="simple_cnn cannot take"):
            check_before_work(bad)
    assert len(list((tmp_path / "c" / preflight.MODEL_CHECKS).glob("*.json"))) == 6  # the refusal not kept


def test_wandb_online_without_credentials_is_refused_before_any_work(tmp_path):
    """The 23-line `UsageError: No API key configured` after the data was read is now one line, before it."""
    data = tmp_path / "data"
    data.mkdir()
    (tmp_path / "netrc").write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(NETRC=str(tmp_path / "netrc"), PYTHONPATH=str(REPO))
    args = ["--arch", "simple_cnn", "--wandb_mode", "online", "--data_dir", str(data), "--results_dir",
            str(tmp_path / "results"), "--cache_dir", str(tmp_path / "cache")]
    out = subprocess.run([sys.executable, "train.py", *args], cwd=REPO, capture_output=True, text=True, timeout=300,
                         env=env)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert "wandb_mode online: no W&B API key" in out.stderr and "--wandb_mode offline" in out.stderr
    assert list(data.iterdir()) == [] and not (tmp_path / "cache").exists()


def test_wandb_online_with_an_api_key_passes_that_check(tmp_path, monkeypatch):
    cfg = merge([{"arch": "simple_cnn", "wandb_mode": "online", "results_dir": str(tmp_path / "results"),
                  "cache_dir": str(tmp_path / "cache")}])
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "absent"))
    with pytest.raises(ConfigError, match="no W&B API key"):
        check_before_work(cfg)
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    check_before_work(cfg)


def test_an_explicit_data_dir_that_does_not_exist_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    """Before: a typo in data_dir (esc50-slcie) started a 600 MB download into the typo."""
    import train

    typo = tmp_path / "shared" / "esc50-slcie"
    args = ["--data_dir", str(typo), "--download_url", "http://127.0.0.1:9/x.zip", "--arch", "simple_cnn",
            "--pretrained", "false", "--n_mels", "32", "--results_dir", str(tmp_path / "res"), "--wandb_mode",
            "disabled"]
    assert train.main(args) == 2
    err = capsys.readouterr().err
    assert err == (f"train.py: data_dir {typo} does not exist: check the path, or pass --download true to fetch the "
                   "dataset (ESC-50) there\n")
    assert not (tmp_path / "shared").exists() and not list(tmp_path.rglob("*.json"))
    base = {"data_dir": str(typo), "arch": "simple_cnn", "pretrained": False, "n_mels": 32,
            "results_dir": str(tmp_path / "res"), "cache_dir": str(tmp_path / "cache")}
    check_before_work(merge([{**base, "download": True}]))  # asked for: the run downloads it there
    monkeypatch.chdir(tmp_path)
    check_before_work(merge([{**base, "data_dir": None}]))  # the dataset's own folder: downloaded as always
    with pytest.raises(ConfigError, match="download false: ESC-50 is not .* pass --download true"):
        check_before_work(merge([{**base, "data_dir": None, "download": False}]))
    # the user's own clips: never downloaded, their own error as before
    own = merge([{**base, "dataset": "folder", "split": "stratified"}])
    check_before_work(own)
    with pytest.raises(DatasetError, match="no such folder"):
        ensure_dataset(own)
