"""After training: test-time augmentation, the saved model, and prediction on new clips with it."""

from __future__ import annotations

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
    for args, says in [([str(runs["plain"][0].record), str(clips[0])], "saved no model"),
                       ([str(files.record), str(short)], "3.00 s long"),
                       ([str(files.record), str(stereo)], "2 channels"),
                       ([str(files.record), str(tmp_path / "bad.wav")], "cannot read the clip")]:
        assert predict.main(args) == 2
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
