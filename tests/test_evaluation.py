"""After training: test-time augmentation, the saved model, and prediction on new clips with it."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import torch

import predict
import train
from audiosweep.inference import PredictError, load_predictor
from audiosweep.results import RunFiles
from audiosweep.synthetic import class_clip
from tests.conftest import TINY, read_records

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, synth_root, cache_dir):
    """Two runs of the same config and seed with a saved model and 3-view TTA, and one without a model."""
    out = tmp_path_factory.mktemp("eval")

    def run(name, *extra):
        argv = ["--data_dir", str(synth_root), "--allow_missing", "true", "--esc10", "true", "--cache_dir",
                str(cache_dir), "--results_dir", str(out / name), *TINY, "--n_epochs", "2", "--split", "stratified",
                *extra]
        assert train.main(argv) == 0
        (rec,) = read_records(out / name)
        return RunFiles.of(out / name, rec["run_id"]), rec

    return {"a": run("a", "--save_model", "final", "--tta", "3"), "b": run("b", "--save_model", "best", "--tta", "3"),
            "plain": run("plain")}


@pytest.mark.slow
def test_tta_is_recorded_beside_the_plain_accuracy_and_repeats(runs):
    (files_a, a), files_b = runs["a"], runs["b"][0]
    assert set(a["files"]) == {"preds", "tta_preds", "model"} and a["files"]["model"] == files_a.model.name
    with np.load(files_a.tta_preds) as f:
        assert np.isclose((f["probs"].argmax(1) == f["targets"]).mean(), a["summary"]["tta_accuracy"])
    with np.load(files_a.tta_preds) as fa, np.load(files_b.tta_preds) as fb:
        assert np.array_equal(fa["probs"], fb["probs"])  # same config and trial_num: the same views (CPU)
    with np.load(files_a.preds) as plain, np.load(files_a.tta_preds) as tta:
        assert not np.allclose(plain["probs"], tta["probs"])
    assert runs["plain"][1]["summary"]["tta_accuracy"] is None and set(runs["plain"][1]["files"]) == {"preds"}


def test_the_saved_model_predicts_what_the_run_predicted(runs, synth_root):
    files, rec = runs["a"]
    predictor = load_predictor(files.record)
    with np.load(files.preds) as f:
        names, saved = list(f["filenames"][:6]), f["probs"][:6]
    probs = predictor.probabilities([synth_root / "audio" / n for n in names]).numpy()
    # the run read float16 waveforms from its cache; prediction reads the files: close, not bit-identical
    assert np.allclose(probs, saved, atol=0.02) and (probs.argmax(1) == saved.argmax(1)).all()
    assert predictor.classes == rec["classes"]
    assert torch.load(runs["b"][0].model, weights_only=True)["weights"] == "best"


def test_predict_cli_prints_classes_and_names_bad_input(runs, synth_root, tmp_path, capsys):
    files, rec = runs["a"]
    clips = sorted((synth_root / "audio").iterdir())[:2]
    assert predict.main([str(files.record), *map(str, clips), "--top-k", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all(line.split(": ")[1].split()[0] in rec["classes"] for line in lines)
    short = tmp_path / "short.wav"
    sf.write(short, class_clip(0, np.random.default_rng(0))[:44100 * 3], 44100)
    stereo = tmp_path / "stereo.wav"
    sf.write(stereo, np.stack([class_clip(0, np.random.default_rng(0))] * 2, axis=1), 44100)
    (tmp_path / "bad.wav").write_bytes(b"not audio")
    for args, status, says in [([str(runs["plain"][0].record), str(clips[0])], 2, "saved no model"),
                               ([str(files.record), str(short)], 0, "1 shorter than 5 s padded (zeros)"),
                               ([str(files.record), str(stereo)], 0, "1 downmixed to mono"),
                               ([str(files.record), str(tmp_path / "bad.wav")], 1, "cannot read the clip")]:
        assert predict.main(args) == status
        err = capsys.readouterr().err
        assert says in err and "Traceback" not in err
    with pytest.raises(PredictError, match="no finished run with a saved model"):
        load_predictor(tmp_path)


@pytest.mark.slow
def test_an_ensemble_of_trained_trials_matches_its_saved_predictions(tmp_path, synth_root, cache_dir, capsys):
    """Three trials on one validation fold, then analysis.ensemble; the number is recomputed from the files."""
    from analysis import ensemble

    out = tmp_path / "trials"
    for trial in (1, 2, 3):
        assert train.main(["--data_dir", str(synth_root), "--allow_missing", "true", "--esc10", "true", "--cache_dir",
                           str(cache_dir), "--results_dir", str(out), *TINY, "--n_epochs", "1", "--fold", "2",
                           "--trial_num", str(trial), "--save_model", "final", "--tta", "4"]) == 0
    capsys.readouterr()  # the runs' own output
    assert ensemble.main([str(out), "--over", "trial_num", "--format", "csv"]) == 0
    table = capsys.readouterr().out
    printed = float(table.splitlines()[1].split(",")[table.splitlines()[0].split(",").index("ensemble")])
    files = [RunFiles(p) for p in sorted(out.glob("2*.json"))]
    loaded = [np.load(f.preds) for f in files]
    assert all(list(f["filenames"]) == list(loaded[0]["filenames"]) for f in loaded)  # one validation set
    mean = np.mean([f["probs"] for f in loaded], axis=0)
    assert np.isclose(printed, (mean.argmax(1) == loaded[0]["targets"]).mean())


def test_a_model_of_a_variable_dataset_takes_clips_as_its_training_clips_were_made(tmp_path):
    """Stereo, other rates, shorter and longer clips: downmixed, padded or cropped and resampled exactly as the
    dataset loader made the training clips, so the model sees the waveforms it was trained on."""
    from audiosweep.data import prepare_data
    from audiosweep.synthetic import make_synthetic_folder

    root = make_synthetic_folder(tmp_path / "clips", n_classes=2, per_class=6)
    args = ["--dataset", "folder", "--data_dir", str(root), "--split", "stratified", "--cache_dir",
            str(tmp_path / "cache"), *TINY, "--n_epochs", "1", "--clip_seconds", "4", "--pad_mode", "repeat"]
    assert train.main([*args, "--results_dir", str(tmp_path / "res"), "--save_model", "final"]) == 0
    predictor = load_predictor(tmp_path / "res")
    data = prepare_data(train.parse_args(args)[0])
    for row in range(len(data.meta)):
        path = root / data.meta.filename[row]
        assert torch.allclose(predictor.clip(path), data.waveforms[row].float(), atol=2e-3), path
    infos = [sf.info(str(root / f)) for f in data.meta.filename]
    assert {i.channels for i in infos} == {1, 2} and len({i.samplerate for i in infos}) > 1
    assert min(i.duration for i in infos) < 4 < max(i.duration for i in infos)
    assert predictor.probabilities([path]).shape == (1, 2)


@pytest.mark.slow
def test_a_saved_model_of_per_channel_hops_predicts_with_its_resized_front_end(tmp_path, synth_root, cache_dir):
    """predict rebuilds the front end from the saved config: each channel's window and hop, the ln scale and the
    resize to the shape the model was trained on."""
    argv = ["--data_dir", str(synth_root), "--allow_missing", "true", "--esc10", "true", "--cache_dir",
            str(cache_dir), "--results_dir", str(tmp_path), *TINY, "--n_epochs", "1", "--split", "stratified",
            "--stacked_win_lengths_ms", "[16, 32]", "--stacked_hop_lengths_ms", "[10, 20]", "--resize_to",
            "[48, 120]", "--log_scale", "ln", "--save_model", "final"]
    assert train.main(argv) == 0
    (rec,) = read_records(tmp_path)
    assert rec["config"]["hop_length"] is None and rec["config"]["resize_to"] == [48, 120]
    files = RunFiles.of(tmp_path, rec["run_id"])
    predictor = load_predictor(files.record)
    assert predictor.cfg.hop_lengths == [160, 320] and predictor.cfg.win_lengths == [256, 512]
    with np.load(files.preds) as f:
        names, saved = list(f["filenames"][:6]), f["probs"][:6]
    paths = [synth_root / "audio" / n for n in names]
    assert predictor.features(torch.stack([predictor.clip(p) for p in paths])).shape == (6, 2, 48, 120)
    probs = predictor.probabilities(paths).numpy()
    assert np.allclose(probs, saved, atol=0.02) and (probs.argmax(1) == saved.argmax(1)).all()


def test_a_stratified_test_share_is_evaluated_plain_and_with_tta(tmp_path, synth_root, cache_dir):
    out = tmp_path / "res"
    argv = ["--data_dir", str(synth_root), "--allow_missing", "true", "--esc10", "true", "--cache_dir",
            str(cache_dir), "--results_dir", str(out), *TINY, "--n_epochs", "1", "--split", "stratified",
            "--test_pct", "0.25", "--tta", "3"]
    assert train.main(argv) == 0
    (rec,) = read_records(out)
    files, s = RunFiles.of(out, rec["run_id"]), rec["summary"]
    assert set(rec["files"]) == {"preds", "tta_preds", "test_preds", "test_tta_preds"}
    # 20 clips per class, recordings of one clip each in the synthetic set: 5 per class held out
    assert s["n_test"] == 50 and s["n_train"] + s["n_valid"] + s["n_test"] == 200
    plain, tta = files.predictions(test=True), files.predictions(tta=True, test=True)
    with np.load(plain) as plain, np.load(tta) as tta, np.load(files.preds) as valid:
        assert list(plain["filenames"]) == list(tta["filenames"]) and len(plain["filenames"]) == 50
        assert not set(plain["filenames"]) & set(valid["filenames"])
        assert np.isclose((plain["probs"].argmax(1) == plain["targets"]).mean(), s["test_accuracy"])
        assert np.isclose((tta["probs"].argmax(1) == tta["targets"]).mean(), s["test_tta_accuracy"])
        assert not np.allclose(plain["probs"], tta["probs"])


def _tampered(model: Path, out: Path, change) -> Path:
    saved = torch.load(model, weights_only=True)
    path = out / "tampered.model.pt"
    torch.save(change(saved), path)
    return path


def _config(**changes):
    return lambda saved: {**saved, "config": {**saved["config"], **changes}}


def _without(key):
    return lambda saved: {k: v for k, v in saved.items() if k != key}


@pytest.mark.parametrize(("change", "says"), [
    (lambda saved: saved["state_dict"]["0.0.weight"], "holds a Tensor, not a saved model"),
    (lambda saved: {"weights": saved["state_dict"]}, "no state_dict, config, classes, norm_stats"),
    (_without("classes"), "(no classes)"),
    (lambda saved: {**saved, "classes": []}, "classes is not a non-empty list of distinct names"),
    (_without("norm_stats"), "(no norm_stats)"),
    (lambda saved: {**saved, "norm_stats": {"mean": [float("nan")], "std": [1.0]}}, "norm_stats.mean is [nan]"),
    (lambda saved: {**saved, "state_dict": torch.nn.Linear(3, 2).state_dict()}, "weight(s) of simple_cnn missing"),
    (_config(arch="resnet18"), "weight(s) of another shape"),
    (_config(n_mels=64), "trained on inputs of shape (1, 40, "),
    (_config(n_mels="many"), "its config is invalid"),
])
def test_a_model_file_that_does_not_fit_is_refused_in_one_line(runs, synth_root, tmp_path, capsys, change, says):
    path = _tampered(runs["a"][0].model, tmp_path, change)
    clip = sorted((synth_root / "audio").iterdir())[0]
    assert predict.main([str(path), str(clip)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"predict.py: {path}: ") and says in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("content", [b"", b"\x80\x04K\x05.", pickle.dumps(SimpleNamespace(a=1)), b"PK\x03\x04"])
def test_files_that_are_no_model_are_refused_unread(synth_root, tmp_path, capsys, content):
    path = tmp_path / "odd.model.pt"
    path.write_bytes(content)
    assert predict.main([str(path), str(sorted((synth_root / "audio").iterdir())[0])]) == 2
    err = capsys.readouterr().err
    assert f"{path}: " in err and ("not a model file saved by train.py" in err or "holds a int" in err)
    assert len(err.splitlines()) == 1


def test_clips_without_finite_samples_are_skipped_and_bad_top_k_refused(runs, synth_root, tmp_path, capsys):
    record = str(runs["a"][0].record)
    good = sorted((synth_root / "audio").iterdir())[0]
    wav, rate = sf.read(good, dtype="float32")
    empty, with_inf, with_nan, loud = (tmp_path / f"{n}.wav" for n in ("empty", "inf", "nan", "loud"))
    sf.write(empty, np.zeros(0, np.float32), rate)
    sf.write(with_inf, np.where(np.arange(len(wav)) == 1000, np.inf, wav).astype(np.float32), rate, subtype="FLOAT")
    sf.write(with_nan, np.where(np.arange(len(wav)) == 7, np.nan, wav), rate, subtype="DOUBLE")
    sf.write(loud, wav * 1e30, rate, subtype="FLOAT")  # finite samples whose power overflows float32
    os.mkfifo(tmp_path / "pipe.wav")
    for clip, says in [(empty, "the clip has no samples"), (with_inf, "1 of the clip's"), (with_nan, "1 of the clip's"),
                       (loud, "no finite probabilities"), (tmp_path / "pipe.wav", "not a regular file")]:
        assert predict.main([record, str(good), str(clip)]) == 1  # the bad clip named and skipped
        out, err = capsys.readouterr()
        assert out.startswith(f"{good}: ") and len(out.splitlines()) == 1
        assert err.startswith(f"predict.py: {clip}: ") and says in err and len(err.splitlines()) == 2
    for k in ("0", "-3"):
        assert predict.main([record, str(good), "--top-k", k]) == 2
        assert f"--top_k: give the number of classes to show per clip, at least 1 (got {k})" in \
            capsys.readouterr().err


class Probe:
    """A stand-in Learner whose "model" gives each clip (its input's mean, 0, ...): the inputs TTA averaged can
    be read back from its output, and every batch it saw is kept."""

    def __init__(self, device: torch.device, train_transform=None, train_x=None):
        from types import SimpleNamespace

        self.seen: list[torch.Tensor] = []
        self.dls = SimpleNamespace(device=device, train=SimpleNamespace(transform=train_transform, x=train_x))

    def get_preds(self, dl):
        xs = torch.cat([x for x, _ in dl])
        self.seen.append(xs)
        return probe_probs(xs), None


def probe_probs(xs: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.pad(xs.flatten(1).mean(1, keepdim=True), (0, 2))


@pytest.mark.parametrize("views", ["plain+augmented", "augmented"])
def test_tta_averages_the_plain_view_only_with_plain_augmented(views):
    """tta_views augmented (the ResNet-34 + TTA post): the mean over tta augmented views, none of them the plain
    one; plain+augmented: the plain view and tta-1 augmented ones."""
    from audiosweep.config import merge
    from audiosweep.evaluation import tta_probs
    from audiosweep.features import compute_features, normalize
    from tests.test_augment import SMALL, waves

    cfg = merge([{**SMALL, "noise_p": 1, "noise_snr_min": 3, "noise_snr_max": 6, "tta": 5, "tta_views": views}])
    cpu, wavs = torch.device("cpu"), waves(6)
    feats, stats = normalize(compute_features(wavs, cfg, cpu), cfg.normalize)
    valid = torch.arange(3, 6)
    plain = probe_probs(feats[valid])
    probe = Probe(cpu)
    out = tta_probs(probe, cfg, wavs, torch.zeros(6, dtype=torch.long), valid, stats, plain)
    n_augmented = 5 if views == "augmented" else 4
    assert len(probe.seen) == n_augmented
    assert all(not torch.allclose(x, feats[valid], atol=1e-3) for x in probe.seen)  # each one augmented
    averaged = [probe_probs(x) for x in probe.seen] + ([plain] if views == "plain+augmented" else [])
    assert torch.allclose(out, torch.stack(averaged).mean(0), atol=1e-6)
    poisoned = tta_probs(Probe(cpu), cfg, wavs, torch.zeros(6, dtype=torch.long), valid, stats, plain * torch.nan)
    assert poisoned.isnan().all() if views == "plain+augmented" else torch.equal(poisoned, out)


@pytest.mark.parametrize("checkpoint", ["last", "best"])
def test_the_last_epochs_validation_predictions_are_evaluated_without_predicting_again(
        tmp_path, synth_root, cache_dir, monkeypatch, checkpoint):
    """With the last epoch's weights evaluated (checkpoint last, or best when the last epoch was the best), its
    validation predictions are the evaluated ones: one prediction pass fewer, the same probabilities bit for bit
    and the same accuracy as predicting again."""
    from fastai.learner import Learner

    from audiosweep.training import LastValidation

    calls, get_preds = [], Learner.get_preds
    monkeypatch.setattr(Learner, "get_preds", lambda self, *a, **k: calls.append(1) or get_preds(self, *a, **k))

    def run(name):
        del calls[:]
        argv = ["--data_dir", str(synth_root), "--allow_missing", "true", "--esc10", "true", "--cache_dir",
                str(cache_dir), "--results_dir", str(tmp_path / name), *TINY, "--n_epochs", "1", "--split",
                "stratified", "--checkpoint", checkpoint]
        assert train.main(argv) == 0
        (rec,) = read_records(tmp_path / name)
        return rec, np.load(RunFiles.of(tmp_path / name, rec["run_id"]).predictions())["probs"], len(calls)

    reused, reused_probs, n_reused = run("reused")
    monkeypatch.setattr(LastValidation, "predictions", lambda self: None)  # as before: predicted again
    again, again_probs, n_again = run("again")
    assert (n_reused, n_again) == (0, 1)  # one epoch: the best is the last, with either checkpoint
    reused, again = reused["summary"], again["summary"]
    assert reused["accuracy"] == again["accuracy"] and reused["evaluated_epoch"] == again["evaluated_epoch"] == 1
    assert np.array_equal(reused_probs, again_probs) and reused_probs.shape == (len(reused_probs), 10)


def test_validation_predictions_are_reused_only_for_the_weights_and_clips_that_made_them():
    from audiosweep.training import LastValidation

    model, valid = object(), object()
    learn = SimpleNamespace(model=model, dls=SimpleNamespace(valid=valid), loss_func=SimpleNamespace(),
                            best_epoch=SimpleNamespace(epochs_trained=3, evaluated=3))
    last = LastValidation()
    last.learn = learn
    last.batches = [(torch.tensor([[2.0, 1.0]]), torch.tensor([0])), (torch.tensor([[0.0, 3.0]]), torch.tensor([1]))]
    last.at_epoch, last.made_by = 3, (model, valid)
    probs, targets = last.predictions()
    assert torch.equal(probs, torch.tensor([[2.0, 1.0], [0.0, 3.0]])) and targets.tolist() == [0, 1]
    learn.best_epoch.evaluated = 2  # checkpoint best, the best epoch earlier: its weights were not validated last
    assert last.predictions() is None
    learn.best_epoch.evaluated = 3
    for changed in ({"model": object()}, {"dls": SimpleNamespace(valid=object())}):  # finetune: head's head alone
        assert LastValidation.predictions(SimpleNamespace(**{**vars(last), "learn": SimpleNamespace(
            **{**vars(learn), **changed})})) is None
    last.at_epoch = 2  # made before the last epoch
    assert last.predictions() is None
