"""bench/pipeline.py: it runs and prints its tables, it compares equal work (augmented too, and in DataLoader
workers), the augmented path is train.py's, and our loaders serve every clip."""

from __future__ import annotations

import importlib.util
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from fastai.callback.mixup import MixUp

from audiosweep import training
from audiosweep.augment import TrainingBatches
from audiosweep.config import merge
from audiosweep.data import fingerprint, load_waveforms
from audiosweep.features import compute_features, n_frames, normalize
from audiosweep.loaders import make_dls
from audiosweep.synthetic import make_synthetic_folder, make_synthetic_urbansound8k
from bench import augmented, fair, gpu_check, per_item
from bench.measure import PipelineTimes, cores
from bench.report import load_line

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


@pytest.mark.slow
def test_prints_tables_and_ratio_last(tmp_path):
    args = ["--n-clips", "24", "--baseline-clips", "6", "--aug-baseline-clips", "4", "--aug-train-clips", "8",
            "--epochs", "5", "--rates", "44100,16000", "--archs", "simple_cnn", "--train-bs", "2", "--train-batches",
            "1", "--workdir", str(tmp_path), *TINY, "--spec_time_masks", "2"]
    proc = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=REPO,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    text, w = "\n".join(lines), cores()
    for needle in ("Data pipeline at 44100 Hz", "Data pipeline at 16000 Hz", "per-item baseline, 1 process (scaled)",
                   f"per-item baseline, {w} workers (scaled)", f"ratio {w} workers / ours, cold",
                   "scaled x4.00 from 6 clips", f"DataLoader with {w} workers (= CPU cores",
                   "Augmented training batches at 44100 Hz (shift_p 0.5", "pitch_p 1", "spec_time_masks 2",
                   f"per-item augmented baseline, {w} workers (scaled)", "scaled x6.00 from 4 clips",
                   "training batches scaled from 8 clips", "Training throughput at input 1 x 32 x 501", "simple_cnn",
                   "Peak memory per stage", "augmented batches from resident waveforms"):
        assert needle in text, f"{needle!r} missing from:\n{text}"
    assert text.count("Augmented training batches") == 1  # at the config's rate only
    assert re.fullmatch(r"ratio: \d+(\.\d+)?x", lines[-1]), lines[-1]
    # The last line is the 5-epoch total of the fair baseline over ours (cold cache) at the config's rate.
    block = text[text.index("Data pipeline at 44100 Hz"):].splitlines()
    ours = next(ln for ln in block if ln.startswith("ours, cold cache"))
    fair = next(ln for ln in block if ln.startswith(f"fair baseline, {w} workers"))
    assert "against the fair baseline" in lines[-2]
    assert float(lines[-1][7:-1]) == pytest.approx(seconds(fair, 3) / seconds(ours, 3), rel=0.1)
    # The old headline stays, labelled as secondary: the single-process baseline that recomputes every epoch.
    old = next(ln for ln in block if ln.startswith("old: per-item baseline, 1 process"))
    (line,) = [ln for ln in lines if ln.startswith("old (secondary): 5-epoch ratio against the single-process")]
    assert float(re.search(r": (\d+(\.\d+)?)x \(steady", line).group(1)) == pytest.approx(
        seconds(old, 3) / seconds(ours, 3), rel=0.1)
    # Before it: the augmented ratio per steady epoch, the fair augmented baseline over ours; the load line.
    ours = next(ln for ln in block if ln.startswith("ours augmented, cold cache"))
    fair = next(ln for ln in block if ln.startswith(f"fair augmented baseline, {w} workers"))
    (aug,) = [ln for ln in lines if ln.startswith("augmented ratio: ")]
    assert lines.index(aug) == len(lines) - 4 and re.match(r"machine: (BUSY|quiet) \(1-min load", lines[-3])
    ratio = float(re.match(r"augmented ratio: (\d+(\.\d+)?)x per steady epoch", aug).group(1))
    assert ratio == pytest.approx(seconds(fair, 2) / seconds(ours, 2), rel=0.1, abs=0.06)
    assert any(ln.startswith("old (secondary): augmented ratio against the per-item PitchShift") for ln in lines)


def test_augmented_config_is_the_reports_sweep_plus_the_users_keys():
    def aug(*argv):
        cfg, _, explicit = bench.parse(list(argv))
        return bench.augmentation_config(cfg, explicit)

    a = aug()
    assert (a.pitch_p, a.shift_p, a.noise_p, a.stretch_p, a.spec_time_masks) == (1.0, 0.5, 1.0, 0.0, 0)
    a = aug("--spec_time_masks", "2", "--stretch_p", "0.5")
    assert (a.pitch_p, a.shift_p, a.noise_p, a.stretch_p, a.spec_time_masks) == (1.0, 0.5, 1.0, 0.5, 2)
    a = aug("--pitch_shift")  # the user's augmentation, as given
    assert (a.pitch_p, a.shift_p, a.noise_p) == (1.0, 0.0, 0.0)
    a = aug("--noise_p", "0.3")
    assert (a.pitch_p, a.shift_p, a.noise_p) == (0.0, 0.0, 0.3)
    assert bench.parse(["--skip-augmented"])[1].skip_augmented


def test_rejects_bad_options(capsys, tmp_path):
    assert bench.main(["--n-clips", "1", "--n_fftt", "512"]) == 2
    err = capsys.readouterr().err
    assert "n_fftt" in err and "n_fft" in err
    assert bench.main(["--n-clips", "1", "--archs", "resnet18,nonet"]) == 2
    err = capsys.readouterr().err
    assert "--n_clips must be >= 2" in err and "nonet" in err
    assert bench.main(["--n_fft", "1024", "--win_length", "2048"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bench/pipeline.py: ") and "window length 2048 must be in 1..n_fft=1024" in err
    (tmp_path / "bad.yaml").write_text("n_mel: 64\n")
    assert bench.main(["--config", str(tmp_path / "bad.yaml")]) == 2
    assert "unknown config key 'n_mel'; did you mean n_mels?" in capsys.readouterr().err


def test_resampled_config_keeps_durations():
    cfg = merge([{}])
    low = bench.at_rate(cfg, 22050)
    assert (low.sample_rate, low.n_fft, low.hop_samples, low.win_lengths, low.mel_f_max) == (22050, 2048, 154, [1102],
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


def test_augmented_path_is_train_pys_and_baselines_use_workers(linked_tree, monkeypatch):
    """The augmented path goes through TrainingBatches and make_dls(train_source=waveforms); the multi-worker
    baselines run a DataLoader with as many workers as cores, one torch thread each."""
    tree, meta, _ = linked_tree
    batches, dls_calls, loaders = [], [], []

    class SpyBatches(TrainingBatches):
        def __call__(self, x):
            batches.append(x.shape)
            return super().__call__(x)

    def spy_dls(*args, **kwargs):
        dls_calls.append(kwargs)
        return make_dls(*args, **kwargs)

    class SpyLoader(per_item.DataLoader):
        def __init__(self, *args, **kwargs):
            loaders.append((kwargs["num_workers"], kwargs["worker_init_fn"], args[0].augmenting))
            super().__init__(*args, **kwargs)

    fair_loaders = []

    class SpyFair(fair.DataLoader):
        def __init__(self, data, **kwargs):
            fair_loaders.append((kwargs["batch_size"], kwargs["num_workers"], kwargs.get("persistent_workers", False)))
            super().__init__(data, **kwargs)

    monkeypatch.setattr(fair, "DataLoader", SpyFair)
    monkeypatch.setattr(augmented, "TrainingBatches", SpyBatches)
    monkeypatch.setattr(augmented, "make_dls", spy_dls)
    monkeypatch.setattr(per_item, "DataLoader", SpyLoader)
    cfg, opts, explicit = bench.parse([*TINY, "--sample_rate", "16000", "--baseline-clips", "4",
                                       "--aug-baseline-clips", "3", "--aug-train-clips", "4"])
    valid = (meta.fold == cfg.valid_fold).to_numpy()
    setup = bench.Setup(tree, meta, valid, tree.parent / "work", torch.device("cpu"), opts, {})
    r = bench.measure_rate(cfg, setup, bench.augmentation_config(cfg, explicit))
    w, one_thread = cores(), per_item.one_thread
    assert loaders == [(0, None, False)] * 2 + [(w, one_thread, False)] * 2 + [(w, one_thread, True)] * 2
    # Fair baselines: computed once in w workers (items one by one), then served by persistent workers, batch
    # batch_size (8 here) and twice that for validation; plain first, then augmented.
    assert fair_loaders == [(None, w, False), (8, w, True), (16, w, True)] * 2
    assert r.fair.workers == w and len(r.fair.epochs) == bench.OURS_MIN_EPOCHS and r.aug.fair.start > 0
    (kw,) = dls_calls
    assert isinstance(kw["train_transform"], SpyBatches) and kw["train_transform"].from_waveforms
    assert kw["train_source"].shape == (6, 80000) and kw["train_source"].dtype == torch.float16
    # 4 training clips timed per epoch, from the waveforms; the fair baseline's items one by one in workers
    assert batches == [(4, 80000)] * 2
    a = r.aug
    assert a.timed_clips == 4 and a.workers == w and len(a.train) == len(a.valid) == 2 and a.n_baseline == 3
    assert a.train[0] > 0 and a.baseline.steady > 0 and r.workers_baseline.steady > 0
    assert {"ours 16000 Hz, augmented batches from resident waveforms",
            f"augmented baseline 16000 Hz, 3 clips, {w} workers", f"baseline 16000 Hz, 4 clips, {w} workers",
            "baseline 16000 Hz, 4 clips, 1 process"} <= setup.peaks.keys()


def test_augmented_baseline_augments_training_items_only(linked_tree):
    tree, meta, _ = linked_tree
    cfg = merge([{"sample_rate": 16000, "n_fft": 512, "win_length": 400, "hop_length": 160, "n_mels": 32,
                  "pitch_p": 1.0, "noise_p": 1.0, "stretch_p": 1.0, "spec_time_masks": 1}])
    paths, targets = [tree / "audio" / f for f in meta.filename], torch.zeros(6, dtype=torch.long)
    args = (cfg, paths, targets, {"mean": [-40.0], "std": [20.0]}, torch.device("cpu"))
    plain, aug = bench.PerItemPipeline(*args, n_train=4), bench.PerItemPipeline(*args, n_train=4, augment=True)
    aug = pickle.loads(pickle.dumps(aug))  # what a spawned DataLoader worker would get
    torch.manual_seed(0)
    assert torch.equal(aug.item(5), plain.item(5))  # a validation clip
    assert aug.item(0).shape == plain.item(0).shape and not torch.equal(aug.item(0), plain.item(0))
    x = torch.randn(16000)
    assert per_item.time_stretch(x, 1.2).shape == x.shape


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


@pytest.fixture(scope="module")
def variable_datasets(tmp_path_factory):
    """A folder dataset and an UrbanSound8K tree of clips of several rates, channel counts and lengths."""
    root = tmp_path_factory.mktemp("datasets")
    return {"folder": (make_synthetic_folder(root / "folder", n_classes=2, per_class=6), ["--split", "stratified"]),
            "urbansound8k": (make_synthetic_urbansound8k(root / "us8k"), [])}


@pytest.mark.filterwarnings("ignore:.*downmixed to mono")
@pytest.mark.parametrize(("name", "n_clips", "title", "n", "split"), [  # folder: fewer clips than asked, all taken
    ("folder", 24, "dataset folder", 12, "10 train / 2 valid): 12 of the 12 listed clips"),
    ("urbansound8k", 10, "UrbanSound8K (dataset urbansound8k)", 10, "5 train / 5 valid): 10 of the 24 listed clips")])
def test_runs_on_any_dataset(variable_datasets, tmp_path, capsys, name, n_clips, title, n, split):
    data_dir, extra = variable_datasets[name]
    args = ["--dataset", name, "--data_dir", str(data_dir), *extra, "--n-clips", str(n_clips),
            "--baseline-clips", "6", "--epochs", "5", "--rates", "44100,16000", "--skip-training", "--skip-augmented",
            "--workdir", str(tmp_path), *TINY]
    assert bench.main(args) == 0
    text = capsys.readouterr().out
    (data,) = [ln for ln in text.splitlines() if ln.startswith("data: ")]
    assert data.startswith(f"data: {title}, {n} clips (of any rate and channels") and split in data, data
    assert "ESC-50" not in data and f"ours: measured on all {n} clips" in text
    for rate in (44100, 16000):
        block = text[text.index(f"Data pipeline at {rate} Hz"):].splitlines()
        for row in ("ours, cold cache", f"fair baseline, {cores()} workers", "old: per-item baseline, 1 process",
                    f"old: per-item baseline, {cores()} workers"):
            line = next(ln for ln in block if ln.startswith(row))
            assert seconds(line, 1) > 0 and seconds(line, 2) > 0 and seconds(line, 3) > 0, line


@pytest.mark.filterwarnings("ignore:.*downmixed to mono")
@pytest.mark.parametrize("rate", [44100, 16000])
def test_baseline_makes_variable_clips_as_our_cache(variable_datasets, tmp_path, rate):
    """Read, downmixed, cropped or padded and resampled per item, the clips equal our cached waveforms."""
    data_dir, extra = variable_datasets["urbansound8k"]
    cfg, _, explicit = bench.parse(["--dataset", "urbansound8k", "--data_dir", str(data_dir), "--sample_rate",
                                    str(rate), *extra])
    tree, meta, _, _, spec = bench.dataset_clips(cfg, explicit, tmp_path, 8)
    ours = load_waveforms(tree, meta, rate, tmp_path / "cache", fingerprint(tree, meta, spec), 2, spec)
    pipe = bench.PerItemPipeline(cfg, [tree / spec.audio_dir / f for f in meta.filename],
                                 torch.zeros(len(meta), dtype=torch.long), {}, torch.device("cpu"), spec=spec)
    assert ours.shape == (8, 4 * rate)
    for i in range(len(meta)):
        theirs = pipe.waveform(i)
        assert theirs.shape == ours[i].shape
        torch.testing.assert_close(theirs.half(), ours[i], atol=1e-3, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_pinned_host_features_reach_the_gpu():
    feats = torch.randn(20, 1, 4, 5).pin_memory()
    dls = make_dls(feats, torch.arange(20), torch.arange(16), torch.arange(16, 20), merge([{"batch_size": 4}]),
                   channels_last=True, device=torch.device("cuda"))
    for xb, yb in dls.valid:
        assert xb.is_cuda and yb.is_cuda and xb.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(xb.cpu(), feats[yb.cpu()])


def test_fair_baseline_serves_what_it_computed_once_and_counts_fixed_costs_once(linked_tree):
    tree, meta, _ = linked_tree
    cfg = merge([{"sample_rate": 16000, "n_fft": 512, "win_length": 400, "hop_length": 160, "n_mels": 32,
                  "batch_size": 4, "spec_time_masks": 1, "pitch_p": 1.0}])
    paths, targets = [tree / "audio" / f for f in meta.filename], torch.arange(6)
    pipe = bench.PerItemPipeline(cfg, paths, targets, {"mean": [-40.0], "std": [20.0]}, torch.device("cpu"),
                                 n_train=4)
    base = fair.fair_plain(pipe, 10, 3, 0, torch.device("cpu"))  # served over 10 + 3 items, the 6 in turn
    data = base.loaders[0][0].dataset.dataset
    assert len(data) == 13 and data.targets.tolist() == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 4, 5, 4]
    assert torch.equal(data.x[5], pipe.item(1)) and torch.equal(data.x[12], pipe.item(4))
    for _ in range(4):
        base.epoch()
    t = base.close()
    assert t.times.first == pytest.approx(t.compute + t.epochs[0]) and t.times.steady == sorted(t.epochs[1:])[1]
    assert t.times.total(80) == pytest.approx(t.compute + t.epochs[0] + 79 * t.times.steady)
    # Augmented: training items are the cached waveforms through TrainingBatches, one at a time.
    batches = augmented.TrainingBatches(cfg, torch.device("cpu"), {"mean": [-40.0], "std": [20.0]})
    aug = fair.fair_augmented(pipe, batches, 4, 2, 0, torch.device("cpu"))
    train, valid = (loader.dataset for loader, _ in aug.loaders)
    assert train.x.shape == (4, 80000) and train.augment is batches and valid.augment is None
    torch.testing.assert_close(train.x[2], pipe.waveform(2))
    assert train[0][0].shape == valid[0][0].shape == (1, 32, 501) and torch.equal(valid.x[1], pipe.item(5))
    assert [s for _, s in aug.loaders] == [1.0, 1.0] and aug.epoch() > 0


def test_steady_epoch_is_the_median():
    t = PipelineTimes.of([5.0, 1.0, 9.0, 2.0], scale=2.0, one_time=3.0)
    assert (t.first, t.steady) == (13.0, 4.0)


def test_load_line_says_quiet_or_busy():
    assert load_line((0.3, 1.9), 2).startswith("machine: quiet (1-min load average 0.30 at start, 1.90 at end, 2")
    assert load_line((1.5, 2.0), 2).startswith("machine: BUSY (1-min load average 1.50 at start")
    assert load_line((0.2, 3.5), 2).startswith("machine: BUSY")
    assert "unknown" in load_line(None, 2)


def test_gpu_check_finds_the_gpu_only_tests():
    ids = gpu_check.gpu_tests()
    assert "tests/test_bench.py::test_pinned_host_features_reach_the_gpu" in ids
    assert not any("test_fair_baseline" in i or "test_gpu_check" in i for i in ids)


@pytest.mark.slow
def test_gpu_check_dry_mode_writes_its_figures(tmp_path):
    """Without CUDA, bench/gpu_check.sh runs every step at tiny sizes on the CPU, skipping what needs CUDA."""
    out = tmp_path / "out"
    proc = subprocess.run(["bash", str(REPO / "bench" / "gpu_check.sh")], capture_output=True, text=True,
                          env={**os.environ, "OUT": str(out), "PYTHONPATH": str(REPO)}, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "mode: dry" in (out / "machine.txt").read_text()
    steps = dict(ln.split("\t")[:2] for ln in (out / "steps.tsv").read_text().splitlines()[1:])
    assert steps == {"install": "skipped", "gpu_tests": "skipped", "train": "0", "bench": "0", "sweep": "0",
                     "sync_debug": "0"}, steps
    assert "test_pinned_host_features_reach_the_gpu" in (out / "gpu_tests.txt").read_text()
    figures = {name: dict(ln.split(": ", 1) for ln in (out / name).read_text().splitlines())
               for name in ("train_epochs.txt", "train_memory.txt", "sweep.txt", "sync_debug.txt")}
    assert figures["train_epochs.txt"]["epochs"] == "1" and float(figures["train_epochs.txt"]["epoch_s"]) > 0
    assert figures["train_memory.txt"]["exit_status"] == "0"
    assert figures["sweep.txt"]["records"] == figures["sweep.txt"]["finished"] == "4"
    assert figures["sync_debug.txt"]["sync_warnings"].startswith("not counted: no CUDA")
    assert re.search(r"^ratio: \d", (out / "bench.txt").read_text(), re.M)
    assert "SKIP install" in proc.stdout and "SKIP gpu_tests" in proc.stdout
