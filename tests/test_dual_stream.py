"""dual_stream: both fusions, any clip length, both streams training, the shapes it refuses, the MLP's frame
context, the paper's parameter counts (built from its recipes), and a whole run."""

from __future__ import annotations

import pytest
import torch

from audiosweep.config import load_yaml, merge
from audiosweep.errors import ConfigError, UserError
from audiosweep.memory import estimate_training
from audiosweep.models import build_model, create_arch
from audiosweep.preflight import check_model_input
from tests.conftest import REPO
from tests.test_train import check_record, run

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _build(fusion: str, shape=(2, 64, 101)):
    return create_arch("dual_stream", shape[0], 15, pretrained=False, input_shape=shape,
                       options={"mlp_widths": [64, 32], "conv_channels": [16, 24], "fusion": fusion})


@pytest.mark.parametrize("fusion", ["concat", "sum"])
def test_both_streams_shape_the_output_and_get_gradients(fusion):
    arch = _build(fusion)
    model = arch.model
    assert not arch.pretrained and arch.splitter is None and arch.blocks is None
    # the MLP takes each frame's 2 channels x 64 bands; the CNN ends in its last conv block's 24 channels
    assert model.mlp[0][0].in_features == 128 and model.mlp[-1][0].out_features == 32
    if fusion == "concat":
        assert model.head.in_features == 32 + 24
    else:
        assert (model.mlp_head.in_features, model.cnn_head.in_features) == (32, 24)
    torch.manual_seed(0)
    out = model(torch.randn(4, 2, 64, 101))
    assert out.shape == (4, 15)
    out.square().sum().backward()
    first_conv = model.cnn[0][0][0]
    for p in (model.mlp[0][0].weight, first_conv.weight):
        assert p.grad is not None and p.grad.abs().sum() > 0


@pytest.mark.parametrize("frames", [4, 37, 2000])
def test_any_clip_length_on_the_meta_device(frames):
    with torch.device("meta"):
        model = _build("concat", shape=(1, 40, frames)).model
        assert model(torch.zeros(3, 1, 40, frames)).shape == (3, 15)


def test_without_hidden_layers_or_conv_blocks_the_streams_are_band_means_and_the_input():
    model = create_arch("dual_stream", 1, 3, pretrained=False, input_shape=(1, 8, 20),
                        options={"mlp_widths": [], "conv_channels": [], "fusion": "concat"}).model
    x = torch.randn(2, 1, 8, 20)
    assert model.head.in_features == 8 + 1 and model(x).shape == (2, 3)
    assert torch.allclose(model.mlp(x.flatten(1, 2).transpose(1, 2)).mean(1), x.mean(-1).flatten(1))
    assert torch.allclose(model.cnn(x), x.mean((2, 3)))


@pytest.mark.parametrize(("fusion", "alone"), [("mlp", "mlp"), ("cnn", "cnn")])
def test_one_stream_alone_has_no_weights_of_the_other(fusion, alone):
    model = _build(fusion).model
    other = "cnn" if alone == "mlp" else "mlp"
    assert getattr(model, other) is None and getattr(model, f"{other}_head") is None
    assert getattr(model, f"{alone}_head").out_features == 15
    model(torch.randn(3, 2, 64, 101)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())  # every weight it has is used


def test_unknown_fusion_is_refused():
    with pytest.raises(UserError, match="fusion: one of concat, sum, mlp, cnn, got .max."):
        _build("max")


def test_shapes_too_small_for_the_pools_are_refused_and_the_memory_estimate_works():
    layer = {"arch": "dual_stream", "n_mels": 2, "conv_channels": [8, 16, 32]}
    with pytest.raises(ConfigError, match="dual_stream cannot take .* needs at least 8 mel bands .* and 8 frames"):
        check_model_input(merge([layer]), 100, 10)
    check_model_input(merge([{**layer, "n_mels": 8}]), 8, 10)
    est = estimate_training(merge([{**layer, "n_mels": 64}]), 101, 10, batch_size=4)
    assert est.parameters > 0 and est.activations > 4 * 64 * 101 * 4


@pytest.mark.parametrize("fusion", ["concat", "sum"])
def test_a_run_trains_and_records(tmp_path, synth_root, cache_dir, fusion):
    code, rec, _ = run(tmp_path, synth_root, cache_dir, "--arch", "dual_stream", "--fusion", fusion, "--mlp_widths",
                       "[32, 32]", "--conv_channels", "[8, 16]", "--hop_length", "400", "--n_epochs", "1")
    assert code == 0
    check_record(rec)
    assert rec["config"]["fusion"] == fusion and rec["config"]["mlp_widths"] == [32, 32]
    assert rec["config"]["pretrained"] is False


def _recipe_model(name: str, frames: int = 501):
    """The model of sweeps/recipes/dual_stream_<name>.yaml for DCASE 2017's 15 scenes (10 s at its 882-sample hop:
    501 frames)."""
    cfg = merge([load_yaml(REPO / "sweeps" / "recipes" / f"dual_stream_{name}.yaml")])
    return build_model(cfg, 15, (1, cfg.n_mels, frames)).model


def _count(module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(("name", "count"), [
    ("mlp", 13_365),  # "13.4 thousand": (40*5*50+50) + (50*50+50) + (50*15+15)
    ("mlp64", 25_679),  # "25.7K": (64*5*64+64) + (64*64+64) + (64*15+15)
    ("cnn", 26_439),  # "26.4K": (9*16+32) + (9*16*44+88) + (9*44*48+96) + (48*15+15)
])
def test_the_papers_models_have_its_parameter_counts(name, count):
    assert _count(_recipe_model(name)) == count


def test_the_final_models_mlp_is_the_papers_24_7k_and_its_cnn_smaller():
    model = _recipe_model("final")
    assert _count(model.mlp) == 24_704  # "24.7K": the 64-mel MLP without its output layer, (320*64+64) + (64*64+64)
    assert _count(model.cnn) == 14_128 < _count(model.mlp)  # "the CNN is even smaller than the MLP"
    assert _count(model) == 24_704 + 14_128 + (64 + 32) * 15 + 15


def test_the_count_does_not_depend_on_the_clip_length():
    assert _count(_recipe_model("mlp", frames=5)) == _count(_recipe_model("mlp", frames=2000)) == 13_365


def test_the_mlp_sees_windows_of_consecutive_frames():
    model = create_arch("dual_stream", 2, 15, pretrained=False, input_shape=(2, 3, 9),
                        options={"mlp_widths": [4], "mlp_context": 5, "fusion": "mlp"}).model
    assert model.mlp[0][0].in_features == 2 * 3 * 5
    x = torch.arange(2 * 2 * 3 * 9, dtype=torch.float32).reshape(2, 2, 3, 9)
    w = model.windows(x)
    assert w.shape == (2, 9 - 5 + 1, 2 * 3 * 5)  # valid windows only: frames t..t+4 for t = 0..4
    for t in range(5):  # window t holds frames t..t+4, flattened channel, band, frame
        assert torch.equal(w[:, t], x[..., t:t + 5].flatten(1))
    assert model(x).shape == (2, 15)


def test_a_context_of_one_is_each_frame_as_before():
    model = _build("concat").model
    x = torch.randn(3, 2, 64, 11)
    assert torch.equal(model.windows(x), x.flatten(1, 2).transpose(1, 2))


def test_a_clip_shorter_than_the_context_is_refused_before_work():
    layer = {"arch": "dual_stream", "n_mels": 40, "mlp_context": 5, "conv_channels": [], "fusion": "mlp"}
    with pytest.raises(ConfigError, match="needs at least 1 mel bands .* and 5 frames"):
        check_model_input(merge([layer]), 4, 15)
    check_model_input(merge([layer]), 5, 15)
