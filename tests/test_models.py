"""Model registry (names, entries, the build_model funnel) and the pretrained path (weights from the torch hub
cache, adapted to n_in channels)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import torchvision

from audiosweep.config import FIELDS, merge
from audiosweep.features import input_shape
from audiosweep.models import ARCHS, TORCHVISION_ARCHS, arch_entry, arch_names, build_model, create_arch


def test_registry_names():
    assert set(TORCHVISION_ARCHS) <= set(ARCHS) and "simple_cnn" in ARCHS
    assert {"resnet18", "resnet152", "densenet121", "densenet201", "resnet50", "inception_v3_tv"} <= set(ARCHS)
    assert arch_entry("inception_v3").local_weights  # the older timm alias keeps its meaning
    names = arch_names(patterns=True)
    assert names[0] == "simple_cnn" and names[-3:] == ["timm/<name>", "ast", "ast/<hub repo>"]
    assert arch_names() == [n for n in names if "<" not in n] and arch_entry("timm/<name>") is None


def test_each_family_owns_its_knobs():
    """An entry's knobs are config keys; one set under an architecture that does not take it is recorded at its
    default (it has no effect there), and build_model passes an entry exactly its own."""
    assert all(k in FIELDS for name in arch_names() for k in arch_entry(name).knobs)
    assert arch_entry("cnn_gpt2").knobs == ("gpt2_layers", "conv_channels") and not arch_entry("resnet18").knobs
    layer = {"gpt2_layers": 3, "conv_channels": [5], "mlp_widths": [7], "fusion": "sum", "n_mels": 16}
    dual = merge([{**layer, "arch": "dual_stream"}])
    assert {k: dual.effective_dict()[k] for k in layer} == {**layer, "gpt2_layers": 12}
    assert {k: merge([{**layer, "arch": "resnet18"}]).effective_dict()[k] for k in layer} == {
        "gpt2_layers": 12, "conv_channels": [32, 64], "mlp_widths": [64, 64], "fusion": "concat", "n_mels": 16}
    with torch.device("meta"):
        model = build_model(dual, 4, input_shape(dual)).model
    assert (model.mlp[0][0].in_features, model.mlp[0][0].out_features, model.cnn[0][0][0].out_channels) == (16, 7, 5)
    assert model.cnn_head.out_features == 4 and not hasattr(model, "head")  # fusion sum: a head per stream


@pytest.mark.parametrize("name, n_in", [("simple_cnn", 1), ("simple_cnn", 3), ("resnet18", 1), ("densenet121", 3)])
def test_models_accept_spectrograms(name, n_in):
    arch = create_arch(name, n_in, 50, pretrained=False)
    out = arch.model.eval()(torch.randn(2, n_in, 64, 100))
    assert out.shape == (2, 50)


def test_pretrained_weights_come_from_hub_cache_and_are_adapted(tmp_path, monkeypatch):
    """No network: the test saves a weights file where torchvision looks for ImageNet weights."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    url = torchvision.models.ResNet18_Weights.DEFAULT.url
    ckpt = tmp_path / "hub" / "checkpoints" / url.rsplit("/", 1)[1]
    ckpt.parent.mkdir(parents=True)
    torch.manual_seed(123)
    reference = torchvision.models.resnet18().state_dict()
    torch.save(reference, ckpt)

    one = create_arch("resnet18", 1, 50, pretrained=True)
    conv1 = one.model[0][0].weight
    assert one.pretrained and one.splitter is not None
    assert torch.allclose(conv1, reference["conv1.weight"].sum(dim=1, keepdim=True))
    assert torch.equal(one.model[0][4][0].conv1.weight, reference["layer1.0.conv1.weight"])

    three = create_arch("resnet18", 3, 50, pretrained=True)
    assert torch.equal(three.model[0][0].weight, reference["conv1.weight"])
    scratch = create_arch("resnet18", 1, 50, pretrained=False)
    assert not scratch.pretrained
    assert not torch.equal(scratch.model[0][4][0].conv1.weight, reference["layer1.0.conv1.weight"])


@pytest.mark.parametrize("name", ["timm/efficientnet_b0", "efficientnet_b0", "timm/resnet10t"])
def test_timm_models_by_name_or_alias(name):
    arch = create_arch(name, 1, 10, pretrained=False)
    assert arch.model.eval()(torch.randn(2, 1, 64, 100)).shape == (2, 10)
    groups = arch.splitter(arch.model)
    assert len(groups) == 2 and groups[1] == list(arch.model[1].parameters())  # fastai's default_split: body, head


def test_timm_weights_from_a_local_file_are_adapted_to_our_channels(tmp_path):
    import timm

    torch.manual_seed(7)
    reference = timm.create_model("resnet10t", pretrained=False).state_dict()
    torch.save(reference, tmp_path / "resnet10t.pth")
    arch = create_arch("timm/resnet10t", 1, 10, pretrained=True, pretrained_path=str(tmp_path / "resnet10t.pth"))
    body = arch.model[0].model
    assert arch.pretrained and torch.allclose(body.conv1[0].weight, reference["conv1.0.weight"].sum(1, keepdim=True))
    assert torch.equal(body.layer1[0].conv1.weight, reference["layer1.0.conv1.weight"])


@pytest.mark.slow
def test_missing_timm_weights_say_where_to_put_them(tmp_path):
    code = ("from audiosweep.models import create_arch\n"
            "create_arch('timm/efficientnet_b0', 1, 10, pretrained=True)\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 1
    last = out.stderr.strip().splitlines()[-1]
    assert "could not load the pretrained weights of timm/efficientnet_b0" in last
    assert "timm/efficientnet_b0.ra_in1k" in last and str(tmp_path / "hf" / "hub") in last
    assert "--pretrained_path" in last and "--pretrained false" in last


def test_unknown_timm_names_and_misplaced_weights_files_are_config_errors():
    from audiosweep.config import ConfigError, merge

    with pytest.raises(ConfigError, match="timm/<name>"):
        merge([{"arch": "timm/not_a_model"}])
    with pytest.raises(ConfigError, match="pretrained_path: only for timm models"):
        merge([{"arch": "resnet18", "pretrained_path": "/x.pth"}])


@pytest.mark.parametrize(("arch", "names"), [
    ("resnet18", ["Conv2d", "BatchNorm2d", "Sequential", "Sequential", "Sequential", "Sequential"]),
    ("densenet121", ["Conv2d", "BatchNorm2d", *["_DenseBlock", "_Transition"] * 3, "_DenseBlock", "BatchNorm2d"]),
])
def test_torchvision_bodies_expose_their_layers_with_weights_as_blocks(arch, names):
    built = create_arch(arch, 1, 10, pretrained=False)
    assert [type(b).__name__ for b in built.blocks] == names
    body = {id(p) for p in built.model[0].parameters()}
    assert {id(p) for b in built.blocks for p in b.parameters()} == body  # every weight of the body is in a block


@pytest.mark.parametrize("name, features", [("resnet50", 2048), ("densenet201", 1920), ("inception_v3_tv", 2048)])
def test_the_palanisamy_architectures_take_three_channel_spectrograms(name, features):
    """Its three models (torchvision's, ImageNet-shaped body; Inception-v3 without the auxiliary classifier) on its
    3 x 128 x 250 input: the body's features, fastai's concat-pool head (2 x features in) and 50 classes out."""
    arch = create_arch(name, 3, 50, pretrained=False)
    with torch.device("meta"):
        out = arch.model.to("meta").eval()(torch.zeros(2, 3, 128, 250))
    assert out.shape == (2, 50)
    head_in = next(m for m in arch.model[1].modules() if isinstance(m, torch.nn.BatchNorm1d))
    assert head_in.num_features == 2 * features
    assert not any("AuxLogits" in n for n, _ in arch.model.named_modules())
    assert arch.splitter is not None and len(arch.blocks) >= 6


def test_inception_v3_weights_come_from_the_hub_cache_without_the_auxiliary_classifier(tmp_path, monkeypatch):
    """No network: the test saves a weights file (with the auxiliary classifier's weights, as torchvision's file
    has them) where torchvision looks for Inception-v3's ImageNet weights."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    url = torchvision.models.Inception_V3_Weights.DEFAULT.url
    assert url.rsplit("/", 1)[1] == "inception_v3_google-0cc3c7bd.pth"
    ckpt = tmp_path / "hub" / "checkpoints" / url.rsplit("/", 1)[1]
    ckpt.parent.mkdir(parents=True)
    torch.manual_seed(123)
    reference = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False).state_dict()
    assert any(k.startswith("AuxLogits.") for k in reference)
    torch.save(reference, ckpt)

    arch = create_arch("inception_v3_tv", 3, 10, pretrained=True)
    assert arch.pretrained
    body = arch.model[0]
    assert torch.equal(body[0].conv.weight, reference["Conv2d_1a_3x3.conv.weight"])
    assert torch.equal(body[-1].branch_pool.conv.weight, reference["Mixed_7c.branch_pool.conv.weight"])
    one = create_arch("inception_v3_tv", 1, 10, pretrained=True)  # fastai's adaptation: the channels summed
    assert torch.allclose(one.model[0][0].conv.weight, reference["Conv2d_1a_3x3.conv.weight"].sum(1, keepdim=True))


def test_missing_torchvision_weights_name_the_file_and_the_cache(tmp_path, monkeypatch):
    from urllib.error import URLError

    from audiosweep.errors import UserError

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise URLError("no network")

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)  # where Weights looks it up
    with pytest.raises(UserError, match=r"weights of inception_v3_tv \(<urlopen error no network>\)\. Download "
                                        r"https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth into "
                                        f"{tmp_path}/hub/checkpoints/"):
        create_arch("inception_v3_tv", 3, 10, pretrained=True)
