"""Torchvision ResNets, DenseNets and Inception-v3, built exactly as fastai's ``vision_learner`` builds them (ImageNet
weights, first convolution adapted to ``n_in`` spectrogram channels, fastai head), minus its input ``Normalize``: our
spectrograms arrive normalised already.

Inception-v3 is ``inception_v3_tv`` (``inception_v3`` is timm's port, a timm alias older than this one): built
without its auxiliary classifier (``aux_logits=False``, as the Palanisamy et al. code), it takes inputs of at least
75 x 75 (preflight refuses smaller spectrograms). fastai cuts its body into a Sequential of its layers, so
torchvision's ``transform_input`` (a fixed per-channel affine map for ImageNet-normalised inputs) is not applied."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import UserError
from .base import Arch, MissingWeights, register, torch_hub_file

if TYPE_CHECKING:
    from torch import nn

TORCHVISION_ARCHS = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
                     "densenet121", "densenet161", "densenet169", "densenet201", "inception_v3_tv"]
# Our names that are not torchvision's function names.
TORCHVISION_NAMES = {"inception_v3_tv": "inception_v3"}


def _inception_v3(pretrained: bool = False):
    """torchvision's Inception-v3 without the auxiliary classifier; from scratch with torchvision's own
    initialisation (``init_weights`` True, its former default, which it warns about when left out)."""
    import torchvision.models as tvm

    if not pretrained:
        return tvm.inception_v3(weights=None, aux_logits=False, init_weights=True)
    # torchvision refuses aux_logits=False with weights (its file holds the auxiliary classifier): load, then drop it
    # as torchvision's own builder does for aux_logits left False
    model = tvm.inception_v3(weights=tvm.Inception_V3_Weights.DEFAULT)
    model.aux_logits, model.AuxLogits = False, None
    return model


def _torchvision(name: str) -> Callable[..., Arch]:
    def build(n_in: int, n_out: int, pretrained: bool = True) -> Arch:
        import torchvision.models as tvm  # imported by the builders: reading the registry needs no torch
        from fastai.vision.learner import _default_meta, create_vision_model, model_meta

        tv_name = TORCHVISION_NAMES.get(name, name)
        fn = _inception_v3 if tv_name == "inception_v3" else getattr(tvm, tv_name)
        try:
            model = create_vision_model(fn, n_out, pretrained=pretrained, n_in=n_in)
        except OSError as e:  # URLError included: no network, proxy, ...
            import torch.hub

            url = tvm.get_model_weights(tv_name).DEFAULT.url
            raise UserError(
                f"could not fetch the ImageNet weights of {name} ({e}). Download {url} into "
                f"{torch.hub.get_dir()}/checkpoints/ on a machine with internet, or pass --pretrained false") from e
        split = model_meta.get(fn, _default_meta)["split"]  # Inception-v3: body / head, fastai's default
        return Arch(model, split, pretrained, blocks=_body_blocks(model[0]))

    build.__name__ = name
    build.__doc__ = f"torchvision {name} body + fastai head; ImageNet weights adapted to n_in channels."
    return build


def _torchvision_weights(name: str) -> Callable[..., MissingWeights | None]:
    def find(cfg, checkpoint: str | None) -> MissingWeights | None:
        """The ImageNet weights file torchvision loads from its hub cache (TORCH_HOME), or fetches."""
        import torchvision.models as tvm

        return torch_hub_file(tvm.get_model_weights(TORCHVISION_NAMES.get(name, name)).DEFAULT.url)

    return find


def _body_blocks(body: nn.Module) -> list[nn.Module]:
    """A torchvision body's layers that hold weights, input to output (ResNet: conv1, bn1, layer1..4; DenseNet: its
    features' conv0, norm0, dense blocks and transitions, norm5; Inception-v3: its convolutions and Inception
    blocks): what unfreeze_schedule counts from the top."""
    while len(children := list(body.children())) == 1:  # DenseNet's body is Sequential(features)
        body = children[0]
    return [m for m in children if any(True for _ in m.parameters())]


for _name in TORCHVISION_ARCHS:
    register(_name, pretrainable=True, blocks=True, weights=_torchvision_weights(_name))(_torchvision(_name))
