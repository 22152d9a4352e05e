"""Memory: the training-batch estimate against hand counts and autograd, the CPU refusal before any work, and
out-of-memory errors recorded as "out of memory" with what to change."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from fastai.callback.core import Callback

from audiosweep import memory, results, training
from audiosweep.config import parse_args
from audiosweep.errors import ConfigError, OutOfMemory
from audiosweep.models import create_arch
from audiosweep.preflight import N_CLASSES, check_before_work
from tests import test_train
from tests.conftest import TINY

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def resnet18_hub(tmp_path_factory) -> Path:
    """A torch hub folder holding resnet18's ImageNet file (random values): preflight checks weights first."""
    import torchvision

    home = tmp_path_factory.mktemp("torch")
    (home / "hub" / "checkpoints").mkdir(parents=True)
    name = torchvision.models.ResNet18_Weights.DEFAULT.url.rsplit("/", 1)[1]
    torch.save(torchvision.models.resnet18().state_dict(), home / "hub" / "checkpoints" / name)
    return home


@pytest.fixture
def weights_cached(resnet18_hub, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(resnet18_hub))


def config(*argv: str, results_dir: Path | None = None):
    extra = ["--results_dir", str(results_dir)] if results_dir else []
    return parse_args([*argv, *extra])[0]


# --- the estimate -------------------------------------------------------------------------------------------------


def test_estimate_grows_linearly_with_the_batch():
    cfg = config("--arch", "resnet18", "--n_mels", "64")
    a, b = memory.estimate_training(cfg, 200, N_CLASSES, 8), memory.estimate_training(cfg, 200, N_CLASSES, 24)
    assert b.activations == 3 * a.activations and b.parameters == a.parameters > 0
    assert b.total - a.total == 2 * a.activations
    assert a.largest_batch(a.total) == 8 and a.largest_batch(b.total) == 24


def test_the_estimate_is_of_the_resized_input():
    resized = config("--arch", "resnet18", "--n_mels", "64", "--stacked_win_lengths_ms", "[25,50,100]",
                     "--stacked_hop_lengths_ms", "[10,25,50]", "--n_fft", "4410", "--resize_to", "[128,250]")
    plain = config("--arch", "resnet18", "--n_mels", "128", "--stacked_win_lengths", "[1024,2048,4096]")
    a, b = memory.estimate_training(resized, 250, N_CLASSES, 4), memory.estimate_training(plain, 250, N_CLASSES, 4)
    assert a.activations == b.activations and a.parameters == b.parameters


def test_resnet18_estimate_matches_a_hand_count():
    """resnet18 on 64 x 1 x 224 x 716: the stem's conv and BN outputs, the max-pool, then 4 tensors per basic block
    (conv, BN, conv, BN: the residual add and ReLUs are in place) and a downsample conv + BN in layers 2-4."""
    def half(n):  # every stride-2 layer of resnet18: floor((n + 2p - k) / 2) + 1
        return (n - 1) // 2 + 1

    h, w = half(224), half(716)  # conv1: 112 x 358
    floats = 2 * 64 * h * w
    h, w = half(h), half(w)  # max-pool: 56 x 179
    floats += 64 * h * w + 8 * 64 * h * w  # layer1
    for c in (128, 256, 512):
        h, w = half(h), half(w)
        floats += 10 * c * h * w
    floats += 224 * 716  # the input batch
    cfg = config("--arch", "resnet18", "--batch_size", "64", "--n_mels", "224")
    est = memory.estimate_training(cfg, 716, N_CLASSES)
    hand = 64 * 4 * floats
    assert hand <= est.activations <= 1.01 * hand  # the fastai head adds a little
    assert 3.5 * 2**30 < est.total < 4.5 * 2**30
    assert est.parameters == 4 * sum(p.numel() for p in create_arch("resnet18", 1, N_CLASSES, False).model.parameters())


def saved_for_backward(model: torch.nn.Module, x: torch.Tensor) -> int:
    """Bytes of the distinct tensors autograd saves in a real forward pass, weights excluded."""
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved = {}

    def pack(t):
        if t.untyped_storage().data_ptr() not in weights:
            saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x)
    return sum(saved.values())


@pytest.mark.parametrize("arch, h, w, lo, hi", [
    ("resnet18", 112, 358, 0.85, 1.2),
    ("simple_cnn", 40, 101, 0.75, 1.2),  # its max-pools also save int64 indices
    ("densenet121", 64, 96, 0.5, 1.0),  # its concatenations are no module's output: the estimate errs low
])
def test_estimate_is_close_to_what_autograd_saves(arch, h, w, lo, hi):
    cfg = config("--arch", arch, "--n_mels", str(h), "--batch_size", "2")
    est = memory.estimate_training(cfg, w, N_CLASSES)
    torch.manual_seed(0)
    model = create_arch(arch, 1, N_CLASSES, pretrained=False).model.train()
    measured = saved_for_backward(model, torch.randn(2, 1, h, w))
    assert lo * measured <= est.activations <= hi * measured, (est.activations, measured)


# --- the CPU refusal before any work ------------------------------------------------------------------------------


def test_cpu_run_that_cannot_fit_is_refused_with_a_batch_that_fits(tmp_path, monkeypatch, weights_cached):
    cfg = config("--arch", "resnet18", "--device", "cpu", "--batch_size", "64", results_dir=tmp_path)
    monkeypatch.setattr(memory, "machine_memory", lambda: 2 * 2**30)
    with pytest.raises(ConfigError) as e:
        check_before_work(cfg)
    msg = str(e.value)
    assert msg.startswith("batch_size and arch:") and "batch_size=64" in msg and "resnet18" in msg
    assert "more than this machine's 2.0 GiB" in msg and re.search(r"needs about \d+\.\d GiB", msg), msg
    b, k = map(int, re.search(r"--batch_size (\d+) --accumulate (\d+)", msg).groups())
    assert b * k == 64 and 2 <= b < 64
    suggested = memory.estimate_training(config("--arch", "resnet18", "--batch_size", str(b)), 716, N_CLASSES)
    assert suggested.total <= 2**30  # within half the memory


def test_nothing_fits_says_so(tmp_path, monkeypatch, weights_cached):
    cfg = config("--arch", "resnet18", "--device", "cpu", results_dir=tmp_path)
    monkeypatch.setattr(memory, "machine_memory", lambda: 2**20)
    with pytest.raises(ConfigError, match="even batch_size=2 does not fit"):
        check_before_work(cfg)


def test_runs_that_fit_or_are_not_on_the_cpu_are_accepted(tmp_path, monkeypatch, weights_cached):
    check_before_work(config("--arch", "resnet18", "--device", "cpu", results_dir=tmp_path))  # this machine
    check_before_work(config(*TINY, "--device", "cpu", results_dir=tmp_path))
    monkeypatch.setattr(memory, "machine_memory", lambda: 2**20)
    check_before_work(config("--arch", "resnet18", "--device", "cuda", results_dir=tmp_path))  # GPU: not checked
    check_before_work(config("--arch", "resnet18", "--device", "cpu", "--finetune", "head", results_dir=tmp_path))
    with pytest.raises(ConfigError, match="batch_size and arch"):  # not pretrained: the body trains after all
        check_before_work(config("--arch", "resnet18", "--device", "cpu", "--finetune", "head", "--pretrained",
                                 "false", results_dir=tmp_path))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    check_before_work(config("--arch", "resnet18", "--device", "auto", results_dir=tmp_path))
    monkeypatch.setattr(memory, "machine_memory", lambda: None)  # unknown memory: nothing refused
    check_before_work(config("--arch", "resnet18", "--device", "cpu", results_dir=tmp_path))


def test_train_refuses_before_any_work(tmp_path, capsys, monkeypatch):
    est = memory.estimate_training(config(*TINY), 501, N_CLASSES)
    monkeypatch.setattr(memory, "machine_memory", lambda: est.total // 2)
    err = test_train.refused(tmp_path, capsys, "--results_dir", str(tmp_path / "res"), "--device", "cpu")
    assert "batch_size=16" in err and "simple_cnn" in err and "--accumulate" in err


# --- out-of-memory errors during a run ----------------------------------------------------------------------------


CUDA_OOM = "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 7.79 GiB"
CPU_OOM = ("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you tried to "
           "allocate 8589934592 bytes. Error code 12 (Cannot allocate memory)")


@pytest.mark.parametrize("error, message", [(torch.OutOfMemoryError, CUDA_OOM), (RuntimeError, CPU_OOM)])
def test_out_of_memory_during_training_is_recorded_with_what_to_change(tmp_path, synth_root, cache_dir, capsys,
                                                                       monkeypatch, error, message):
    class RunOutOfMemory(Callback):  # fastai re-raises it with a first line naming the callback
        def before_batch(self):
            if self.training and self.iter == 1:
                raise error(message)

    real_fit = training.fit
    monkeypatch.setattr(training, "fit", lambda learn, cfg: real_fit(learn.add_cb(RunOutOfMemory()), cfg))
    code, rec, out = test_train.run(tmp_path, synth_root, cache_dir, "--n_epochs", "1", "--accumulate", "2")
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err, err[-2000:]
    assert rec["status"] == "failed" and rec["reason"] == "out of memory"
    assert rec["error"].startswith("out of memory with batch_size=16, accumulate=2, arch=simple_cnn")  # no class
    assert "--batch_size 8 --accumulate 4" in rec["error"] and f"({message})" in rec["error"]
    assert "--precision" not in rec["error"]  # the CPU trains in fp32 whatever precision says
    assert results.Record.parse(rec, out / f"{rec['run_id']}.json").to_dict() is rec
    assert rec["error"] in err


def test_explain_oom_leaves_other_errors_alone_and_suggests_precision_on_gpu(monkeypatch):
    cfg = config("--arch", "resnet50", "--batch_size", "64", "--device", "cpu")
    for e in (ValueError("out of memory"), RuntimeError("mat1 and mat2 shapes cannot be multiplied"),
              KeyboardInterrupt(), OutOfMemory("already explained")):
        assert memory.explain_oom(e, cfg) is e
    wrapped = RuntimeError("DataLoader worker failed")
    wrapped.__cause__ = MemoryError()
    assert isinstance(memory.explain_oom(wrapped, cfg), OutOfMemory)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    fp32 = str(memory.explain_oom(torch.OutOfMemoryError(CUDA_OOM), config("--device", "cuda", "--precision", "fp32")))
    bf16 = str(memory.explain_oom(torch.OutOfMemoryError(CUDA_OOM), config("--device", "cuda", "--precision", "bf16")))
    assert "--precision bf16" in fp32 and "fp32 on cuda" in fp32
    assert "--precision" not in bf16 and "bf16 on cuda" in bf16 and "--batch_size 32 --accumulate 2" in bf16
    small = str(memory.explain_oom(torch.OutOfMemoryError(CUDA_OOM), config("--batch_size", "2", "--device", "cpu")))
    assert "batch_size=2" in small and "--accumulate" not in small and "smaller arch" in small
