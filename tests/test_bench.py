"""bench/pipeline.py: it runs and prints its table, it compares equal work, and our loaders serve every clip."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from fastai.callback.mixup import MixUp

from audiosweep import training
from audiosweep.config import merge
from audiosweep.data import fingerprint, load_waveforms
from audiosweep.features import compute_features, n_frames, normalize
from audiosweep.training import make_dls

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "bench" / "pipeline.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_pipeline", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


bench = load_bench()

TINY = ["--n_fft", "512", "--win_length", "400", "--hop_length", "441", "--n_mels", "32", "--batch_size", "8",
        "--num_workers", "2"]


def seconds(line: str, column: int) -> float:
    return float(re.split(r"\s{2,}", line.strip())[column].replace(",", ""))


def test_prints_table_and_ratio_last(tmp_path):
    args = ["--n-clips", "24", "--baseline-clips", "6", "--epochs", "5", "--rates", "44100,16000", "--archs",
            "simple_cnn", "--train-bs", "2", "--train-batches", "1", "--workdir", str(tmp_path), *TINY]
    proc = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=REPO,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    text = "\n".join(lines)
    for needle in ("Data pipeline at 44100 Hz", "Data pipeline at 16000 Hz", "per-item baseline (scaled)",
                   "scaled x4.00 from 6 clips", "Training throughput at input 1 x 32 x 501", "simple_cnn",
                   "Peak memory per stage"):
        assert needle in text, f"{needle!r} missing from:\n{text}"
    assert re.fullmatch(r"ratio: \d+(\.\d+)?x", lines[-1]), lines[-1]
    # The last line is the 5-epoch total of the baseline over ours (cold cache) at the config's rate.
    first = text.index("Data pipeline at 44100 Hz")
    block = text[first:].splitlines()
    ours = next(ln for ln in block if ln.startswith("ours, cold cache"))
    base = next(ln for ln in block if ln.startswith("per-item baseline"))
    assert float(lines[-1][7:-1]) == pytest.approx(seconds(base, 3) / seconds(ours, 3), rel=0.1)


def test_rejects_bad_options(capsys, tmp_path):
    assert bench.main(["--n-clips", "1", "--n_fftt", "512"]) == 2
    err = capsys.readouterr().err
    assert "n_fftt" in err and "n_fft" in err
    assert bench.main(["--n-clips", "1", "--archs", "resnet18,nonet"]) == 2
    err = capsys.readouterr().err
    assert "--n-clips must be >= 2" in err and "nonet" in err
    assert bench.main(["--n_fft", "1024", "--win_length", "2048"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bench/pipeline.py: ") and "window length 2048 must be in 1..n_fft=1024" in err
    (tmp_path / "bad.yaml").write_text("n_mel: 64\n")
    assert bench.main(["--config", str(tmp_path / "bad.yaml")]) == 2
    assert "unknown config key 'n_mel'; did you mean n_mels?" in capsys.readouterr().err


def test_resampled_config_keeps_durations():
    cfg = merge([{}])
    low = bench.at_rate(cfg, 22050)
    assert (low.sample_rate, low.n_fft, low.hop_samples, low.win_lengths, low.f_max) == (22050, 2048, 154, [1102],
                                                                                         11025)
    assert n_frames(low, 110250) == n_frames(cfg, 220500)
    assert bench.at_rate(cfg, 44100) is cfg


def test_training_throughput_goes_through_the_runs_learner(monkeypatch):
    learners, compiled = [], []

    def spy(*args):
        learners.append(training.build_learner(*args))
        return learners[-1]

    monkeypatch.setattr(bench, "build_learner", spy)
    # Real torch.compile takes about a minute on this CPU: check that the run's compile_model is what gets called.
    monkeypatch.setattr(training, "compile_model", lambda model: compiled.append(model) or model)
    cfg = merge([{"arch": "simple_cnn", "n_fft": 512, "win_length": 400, "hop_length": 441, "n_mels": 32,
                  "batch_size": 2, "compile": True, "mix_up": 0.4}])
    result = bench.measure_training(cfg, torch.device("cpu"), n_batches=2)
    (learn,) = learners
    assert compiled == [learn.model]
    assert any(isinstance(cb, MixUp) for cb in learn.cbs)
    assert learn.dls.train.x.shape[1:] == (1, 32, 501) and learn.dls.train.bs == 2 and learn.dls.valid.bs == 4
    assert all(p.requires_grad for p in learn.model.parameters())
    timer = next(cb for cb in learn.cbs if isinstance(cb, bench.BatchTimes))
    assert len(timer.times[True]) == len(timer.times[False]) == 2  # the warm-up batch of each phase left out
    assert result.train_sps > 0 and result.eval_sps > 0 and result.mem.host > 0


@pytest.fixture(scope="module")
def linked_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    tree, meta, _ = bench.make_tree(root, bench.SLICE, 6)
    assert len(meta) == 6 and all((tree / "audio" / f).is_file() for f in meta.filename)
    return tree, meta, root / "cache"


@pytest.mark.parametrize("rate", [44100, 16000])
def test_baseline_computes_what_our_path_computes(linked_tree, rate):
    tree, meta, cache = linked_tree
    cfg = bench.at_rate(merge([{"n_fft": 1024, "win_length": 1024, "hop_length": 441, "n_mels": 64}]), rate)
    wavs = load_waveforms(tree, meta, rate, cache, fingerprint(tree, meta))
    ours, stats = normalize(compute_features(wavs, cfg, torch.device("cpu")), "global", torch.arange(4))
    pipe = bench.PerItemPipeline(cfg, [tree / "audio" / f for f in meta.filename], torch.zeros(6, dtype=torch.long),
                                 stats, torch.device("cpu"))
    theirs = torch.stack([pipe.item(i) for i in range(len(meta))])
    assert ours.shape == theirs.shape == (6, 1, 64, 501)
    diff = (ours - theirs).abs()  # ours decodes through the float16 waveform cache
    assert diff.mean() < 2e-3 and diff.max() < 0.2


def test_loaders_serve_every_clip_once_with_its_label():
    feats = torch.arange(11, dtype=torch.float32).view(11, 1, 1, 1).expand(11, 1, 2, 3).contiguous()
    targets = torch.arange(11) + 100
    train_idx, valid_idx = torch.tensor([0, 2, 3, 5, 7, 8, 9, 10]), torch.tensor([1, 4, 6])
    dls = make_dls(feats, targets, train_idx, valid_idx, merge([{"batch_size": 3}]))
    for loader, idx in ((dls.train, train_idx), (dls.valid, valid_idx)):
        seen = []
        for xb, yb in loader:
            assert xb.dtype == torch.float32 and xb.shape[1:] == (1, 2, 3)
            assert torch.equal(xb[:, 0, 0, 0].long() + 100, yb)
            seen += yb.tolist()
        assert sorted(seen) == (idx + 100).tolist()
    first = [yb.tolist() for _, yb in dls.train]
    assert first != [yb.tolist() for _, yb in dls.train] or len(first) == 1  # reshuffled every epoch


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_pinned_host_features_reach_the_gpu():
    feats = torch.randn(20, 1, 4, 5).pin_memory()
    dls = make_dls(feats, torch.arange(20), torch.arange(16), torch.arange(16, 20), merge([{"batch_size": 4}]),
                   channels_last=True, device=torch.device("cuda"))
    for xb, yb in dls.valid:
        assert xb.is_cuda and yb.is_cuda and xb.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(xb.cpu(), feats[yb.cpu()])
