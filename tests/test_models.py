"""Model registry and the pretrained path (weights from the torch hub cache, adapted to n_in channels)."""

from __future__ import annotations

import pytest
import torch
import torchvision

from audiosweep.models import ARCHS, TORCHVISION_ARCHS, create_arch


def test_registry_names():
    assert set(TORCHVISION_ARCHS) <= set(ARCHS) and "simple_cnn" in ARCHS
    assert {"resnet18", "resnet152", "densenet121", "densenet201"} <= set(ARCHS)


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
