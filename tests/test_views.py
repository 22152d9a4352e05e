"""Input recipes: every spectrogram at ``max_frames`` frames, and input channels made of views of the clip
(``view_channels``): the original features, and augmented ones drawn anew for training, once for validation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import predict
import train
from audiosweep.augment import TrainingBatches
from audiosweep.config import merge
from audiosweep.errors import ConfigError
from audiosweep.features import check_clip_length, compute_features, n_frames, normalize
from audiosweep.inference import load_predictor
from audiosweep.loaders import TensorLoader, make_dls
from audiosweep.results import RunFiles
from tests.conftest import TINY, read_records
from tests.test_augment import SMALL, waves

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
CPU = torch.device("cpu")
VIEWS = ["original", "augmented"]


@pytest.fixture(scope="module")
def wavs() -> torch.Tensor:
    return waves(12)


def features(wavs: torch.Tensor, **keys) -> torch.Tensor:
    return compute_features(wavs, merge([{**SMALL, **keys}]), CPU)


@pytest.mark.parametrize("keys", [{}, {"max_frames": 50}, {"max_frames": 600},
                                  {"frontend": "kaldi", "max_frames": 700}, {"frontend": "kaldi"}])
def test_n_frames_is_what_the_front_end_gives(wavs, keys):
    cfg = merge([{**SMALL, **keys}])
    assert compute_features(wavs[:2], cfg, CPU).shape == (2, 1, 40, n_frames(cfg, wavs.shape[1]))


def test_the_clip_length_check_is_on_the_computed_frames_not_max_frames():
    with pytest.raises(ConfigError, match="at least one window"):
        check_clip_length(merge([{**SMALL, "frontend": "kaldi", "max_frames": 100}]), 300)


@pytest.mark.parametrize("keys", [{"stacked_win_lengths": [256, 400]}, {"frontend": "kaldi"}])
def test_max_frames_crops_from_the_start_and_pads_with_each_clips_floor(wavs, keys):
    full = features(wavs[:3], **keys)
    assert_start_of(features(wavs[:3], max_frames=50, **keys), full)
    padded = features(wavs[:3], max_frames=full.shape[-1] + 40, **keys)
    assert torch.equal(padded[..., :full.shape[-1]], full)
    floor = full.amin(dim=(-2, -1), keepdim=True)  # per clip and channel: the channels' floors differ
    assert torch.equal(padded[..., full.shape[-1]:], floor.expand(-1, -1, full.shape[2], 40))
    assert not torch.equal(floor[:, 0], floor[:, -1]) or keys.get("frontend") == "kaldi"


def assert_start_of(cropped: torch.Tensor, full: torch.Tensor) -> None:
    """``cropped`` holds ``full``'s first frames, computed from the samples they read only: equal, except where
    the whole clip's 80 dB floor (``top_db``) is above the floor of the frames kept."""
    start = full[..., :cropped.shape[-1]]
    above = start > full.amin(dim=(-2, -1), keepdim=True)
    assert above.float().mean() > 0.9 and torch.equal(cropped[above], start[above])
    assert (cropped <= start).all()


def test_a_time_stretch_reads_the_frames_past_max_frames_it_needs(wavs):
    def stretched(**keys):
        torch.manual_seed(0)
        cfg = merge([{**SMALL, "stretch_p": 1, "stretch_max": 0.3, "normalize": "none", **keys}])
        return TrainingBatches(cfg, CPU, {})(wavs[:4])

    assert_start_of(stretched(max_frames=50), stretched())


@pytest.mark.parametrize("frames", [50, 600])
def test_augmented_and_cached_training_batches_have_max_frames(wavs, frames):
    for keys, source in [({"noise_p": 1, "stretch_p": 1}, wavs), ({"spec_time_masks": 1}, None)]:
        cfg = merge([{**SMALL, **keys, "max_frames": frames, "normalize": "sample"}])
        feats, stats = normalize(compute_features(wavs, cfg, CPU), cfg.normalize)
        x = TrainingBatches(cfg, CPU, stats)(feats[:4] if source is None else source[:4])
        assert x.shape == (4, 1, 40, frames)
        if frames > 501 and source is not None:  # the tail: the augmented clip's own floor, normalised with it
            assert torch.equal(x[..., 501:], x.amin(dim=(-2, -1), keepdim=True).expand(-1, -1, 40, frames - 501))


def epoch(loader) -> torch.Tensor:
    return torch.cat([x for x, _ in loader])


@pytest.mark.parametrize("keys,views", [({"noise_p": 1, "pitch_p": 1}, VIEWS),
                                        ({"spec_time_masks": 2, "spec_freq_masks": 1}, ["augmented", "original"])])
def test_original_channel_is_the_plain_features_and_augmented_ones_are_drawn_anew(wavs, keys, views):
    cfg = merge([{**SMALL, **keys, "view_channels": views, "max_frames": 120}])
    assert cfg.n_channels == 2
    orig, aug = views.index("original"), views.index("augmented")
    plain, stats = normalize(compute_features(wavs, cfg, CPU), cfg.normalize, torch.arange(8))
    plain = plain.clone()
    batches = TrainingBatches(cfg, CPU, stats)
    rng = torch.get_rng_state()
    feats, rows = batches.with_views(plain.clone(), wavs if batches.from_waveforms else None)
    assert torch.equal(torch.get_rng_state(), rng)  # drawn from their own seed: training's stream goes on as before
    targets = torch.zeros(12, dtype=torch.long)
    dls = make_dls(feats, targets, torch.arange(8), torch.arange(8, 12), cfg, train_source=rows,
                   train_transform=batches)
    ordered = TensorLoader(rows, targets, 8, idx=torch.arange(8), transform=batches)
    first, second = epoch(ordered), epoch(ordered)
    assert first.shape == (8, 2, 40, 120) and len(epoch(dls.train)) == 8
    assert torch.equal(first[:, orig], plain[:8, 0]) and torch.equal(second[:, orig], plain[:8, 0])
    assert not torch.allclose(first[:, aug], plain[:8, 0]) and not torch.allclose(first[:, aug], second[:, aug])
    valid = epoch(dls.valid)
    assert torch.equal(valid, epoch(dls.valid)) and torch.equal(valid[:, orig], plain[8:, 0])
    assert not torch.allclose(valid[:, aug], plain[8:, 0])
    torch.manual_seed(123)  # another run: its own global stream, the same validation views
    again, _ = TrainingBatches(cfg, CPU, stats).with_views(plain.clone(), wavs)
    assert torch.equal(again, feats)


def test_one_view_keeps_the_plain_inputs(wavs):
    cfg = merge([{**SMALL, "noise_p": 1}])
    feats = features(wavs)
    kept, source = TrainingBatches(cfg, CPU, {}).with_views(feats, wavs)
    assert kept is feats and source is wavs


@pytest.fixture(scope="module")
def run(tmp_path_factory, synth_root, cache_dir):
    out = tmp_path_factory.mktemp("views")
    argv = ["--data_dir", str(synth_root), "--allow_missing", "true", "--esc10", "true", "--cache_dir",
            str(cache_dir), "--results_dir", str(out), *TINY, "--n_epochs", "1", "--split", "stratified",
            "--view_channels", "[original, augmented]", "--noise_p", "1", "--max_frames", "50", "--normalize",
            "sample", "--save_model", "final", "--tta", "2", "--mix_up", "0"]
    assert train.main(argv) == 0
    (rec,) = read_records(out)
    return RunFiles.of(out, rec["run_id"]), rec


def test_a_run_with_views_trains_a_two_channel_model(run):
    files, rec = run
    assert rec["status"] == "finished" and len(rec["history"]) == 1 and rec["summary"]["tta_accuracy"] is not None
    assert rec["config"]["view_channels"] == VIEWS and rec["config"]["max_frames"] == 50
    saved = torch.load(files.model, weights_only=True)
    assert saved["state_dict"]["0.0.weight"].shape[1] == 2  # simple_cnn's stem took both views


def test_predict_rebuilds_the_views_of_a_saved_model(run, synth_root, capsys):
    files, rec = run
    predictor = load_predictor(files.record)
    clips = sorted((synth_root / "audio").glob("*.wav"))[:3]
    wavs = torch.stack([predictor.clip(p) for p in clips])
    x = predictor.features(wavs)
    plain, _ = normalize(compute_features(wavs, predictor.cfg, CPU), "sample")
    assert x.shape == (3, 2, 40, 50) and torch.equal(x[:, :1], plain)
    assert not torch.allclose(x[:, 1:], plain) and torch.equal(predictor.features(wavs), x)  # drawn once
    padded = dataclasses.replace(predictor, cfg=dataclasses.replace(predictor.cfg, max_frames=540)).features(wavs)
    assert padded.shape == (3, 2, 40, 540) and torch.equal(padded[..., 501:], padded[..., -1:].expand(-1, -1, -1, 39))
    floor = padded[..., :501].amin(dim=(-2, -1))  # each clip's and channel's own floor, normalised with it
    assert torch.equal(padded[..., -1], floor[..., None].expand(-1, -1, 40)) and not torch.equal(*floor[0])
    probs = predictor.probabilities(clips)
    assert probs.shape == (3, 10) and np.allclose(probs.sum(1).numpy(), 1, atol=1e-5)
    assert torch.equal(predictor.probabilities(clips), probs)
    assert predict.main([str(files.record), *map(str, clips), "--top-k", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all(line.split(": ")[1].split()[0] in rec["classes"] for line in lines)


def fixed_views_of(wavs: torch.Tensor, trial: int) -> tuple[torch.Tensor, TrainingBatches, torch.Tensor, dict]:
    cfg = merge([{**SMALL, "noise_p": 1, "pitch_p": 1, "view_channels": VIEWS, "max_frames": 120,
                  "augmented_view": "fixed", "trial_num": trial}])
    plain, stats = normalize(compute_features(wavs, cfg, CPU), cfg.normalize, torch.arange(8))
    batches = TrainingBatches(cfg, CPU, stats)
    torch.manual_seed(trial * 7)  # the run's own stream: it must not change the fixed views
    return batches.with_views(plain.clone(), wavs)[0], batches, plain, cfg


def test_a_fixed_augmented_view_is_drawn_once_from_trial_num_and_training_never_redraws_it(wavs):
    """augmented_view fixed (the CNN + GPT-2 paper's preprocessing): each clip's augmented channel is drawn once,
    the same for the same trial_num, another for another; training batches gather it and draw nothing."""
    feats, batches, plain, cfg = fixed_views_of(wavs, 1)
    again, _, _, _ = fixed_views_of(wavs, 1)
    other, _, _, _ = fixed_views_of(wavs, 2)
    assert torch.equal(feats, again)
    assert torch.equal(other[:, 0], feats[:, 0]) and torch.equal(feats[:, 0], plain[:, 0])
    assert not torch.allclose(feats[:, 1], plain[:, 0])
    assert all(not torch.allclose(other[i, 1], feats[i, 1]) for i in range(12))  # every clip's view differs
    targets = torch.zeros(12, dtype=torch.long)
    ordered = TensorLoader(torch.arange(12), targets, 8, idx=torch.arange(8), transform=batches)
    rng = torch.get_rng_state()
    first, second = epoch(ordered), epoch(ordered)
    assert torch.equal(torch.get_rng_state(), rng)  # nothing drawn during training
    assert torch.equal(first, feats[:8]) and torch.equal(second, feats[:8])
    per_batch = TrainingBatches(dataclasses.replace(cfg, augmented_view="per_batch"), CPU, batches.stats)
    assert torch.equal(per_batch.with_views(plain.clone(), wavs)[0], feats)  # validation: the same views as today


def test_augmented_view_and_tta_views_have_no_effect_without_an_augmented_channel_or_tta():
    cfg = merge([{**SMALL, "noise_p": 1, "augmented_view": "fixed", "tta_views": "augmented", "tta": 1}])
    assert cfg.effective_dict()["augmented_view"] == "per_batch"
    assert cfg.effective_dict()["tta_views"] == "plain+augmented"
    cfg = merge([{**SMALL, "noise_p": 1, "augmented_view": "fixed", "view_channels": VIEWS, "tta_views": "augmented",
                  "tta": 2}])
    assert cfg.effective_dict()["augmented_view"] == "fixed" and cfg.effective_dict()["tta_views"] == "augmented"
