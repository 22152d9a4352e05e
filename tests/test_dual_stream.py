"""dual_stream: both fusions, any clip length, both streams training, the shapes it refuses, and a whole run."""

from __future__ import annotations

import pytest
import torch

from audiosweep.config import merge
from audiosweep.errors import ConfigError, UserError
from audiosweep.memory import estimate_training
from audiosweep.models import create_arch
from audiosweep.preflight import check_model_input
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
