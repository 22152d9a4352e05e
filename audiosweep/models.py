"""Model registry: one name -> one builder (timm style).

A builder takes ``(n_in, n_out, pretrained)`` and returns an :class:`Arch`: the model and, for models with a
pretrained body, fastai's parameter-group splitter. Each entry also says whether pretrained weights exist for
it (``pretrainable``), which the config reads to record what a run really does.

Torchvision architectures are built exactly as fastai's ``vision_learner`` builds them (ImageNet weights, first
convolution adapted to ``n_in`` spectrogram channels, fastai head), minus its input ``Normalize``: our
spectrograms arrive normalised already.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import UserError

if TYPE_CHECKING:
    from torch import nn

TORCHVISION_ARCHS = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
                     "densenet121", "densenet161", "densenet169", "densenet201"]


@dataclass
class Arch:
    model: nn.Module
    splitter: Callable | None = None  # parameter groups for discriminative LRs; None = one group
    pretrained: bool = False  # True when the body holds pretrained weights (trained with fine_tune)


def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    from torch import nn  # imported by the builders: reading the registry (config, analysis) needs no torch

    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True), nn.MaxPool2d(2))


def simple_cnn(n_in: int, n_out: int, pretrained: bool = False) -> Arch:
    """A strided 5x5 stem and three conv blocks (16-32-64-128 channels), global average pooling, a linear
    head; about 45 M multiply-adds for a 64 x 716 spectrogram. Always trained from scratch."""
    from torch import nn

    stem = nn.Sequential(nn.Conv2d(n_in, 16, 5, stride=2, padding=2, bias=False), nn.BatchNorm2d(16),
                         nn.ReLU(inplace=True), nn.MaxPool2d(2))
    blocks = [_conv_block(a, b) for a, b in [(16, 32), (32, 64), (64, 128)]]
    return Arch(nn.Sequential(stem, *blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2),
                              nn.Linear(128, n_out)))


@dataclass(frozen=True)
class ArchEntry:
    build: Callable[..., Arch]
    pretrainable: bool  # pretrained weights exist for its body: ``pretrained`` has an effect


def _torchvision(name: str) -> Callable[..., Arch]:
    def build(n_in: int, n_out: int, pretrained: bool = True) -> Arch:
        import torchvision.models as tvm
        from fastai.vision.learner import create_vision_model, model_meta

        fn = getattr(tvm, name)
        try:
            model = create_vision_model(fn, n_out, pretrained=pretrained, n_in=n_in)
        except OSError as e:  # URLError included: no network, proxy, ...
            import torch.hub

            url = tvm.get_model_weights(name).DEFAULT.url
            raise UserError(
                f"could not fetch the ImageNet weights of {name} ({e}). Download {url} into "
                f"{torch.hub.get_dir()}/checkpoints/ on a machine with internet, or pass --pretrained false") from e
        return Arch(model, model_meta[fn]["split"], pretrained)

    build.__name__ = name
    build.__doc__ = f"torchvision {name} body + fastai head; ImageNet weights adapted to n_in channels."
    return build


def _timm(name: str) -> Callable[..., Arch]:
    def build(n_in: int, n_out: int, pretrained: bool = True, pretrained_path: str | None = None) -> Arch:
        import timm
        from fastai.vision.learner import create_timm_model, default_split

        overlay = {"pretrained_cfg_overlay": {"file": str(pretrained_path)}} if pretrained_path else {}
        try:
            model, _ = create_timm_model(name, n_out, pretrained=pretrained, n_in=n_in, **overlay)
        except OSError as e:  # not in the Hugging Face cache and no network, or a bad pretrained_path
            import huggingface_hub.constants

            cfg = timm.create_model(name, pretrained=False).pretrained_cfg
            where = (f"the Hugging Face hub's {cfg['hf_hub_id']} (model.safetensors) into "
                     f"{huggingface_hub.constants.HF_HUB_CACHE}" if cfg.get("hf_hub_id") else f"{cfg.get('url')}")
            raise UserError(f"could not load the pretrained weights of timm/{name} ({' '.join(str(e).split())[:200]})."
                            f" Fetch {where} on a machine with internet, give a local file with --pretrained_path, "
                            "or pass --pretrained false") from e
        # fastai's default_split, as vision_learner uses for timm models: timm's body, then our head.
        return Arch(model, default_split, pretrained)

    build.__name__ = name
    build.__doc__ = f"timm {name} body (in_chans adapted) + fastai head; default_split: body, head."
    return build


ARCHS: dict[str, ArchEntry] = {"simple_cnn": ArchEntry(simple_cnn, pretrainable=False)}
ARCHS.update({name: ArchEntry(_torchvision(name), pretrainable=True) for name in TORCHVISION_ARCHS})
TIMM_PREFIX = "timm/"
# Short names for the timm models our sweeps use; any other timm model is TIMM_PREFIX + its timm name.
TIMM_ALIASES = {"efficientnet_b0": "timm/efficientnet_b0", "inception_v3": "timm/inception_v3",
                "convnext_tiny": "timm/convnext_tiny"}


def arch_entry(name: str) -> ArchEntry | None:
    """The registry entry of ``name``: ours, an alias of a timm model, or ``timm/<any timm model>``."""
    name = TIMM_ALIASES.get(name, name)
    if name in ARCHS:
        return ARCHS[name]
    if name.startswith(TIMM_PREFIX):
        import timm  # only for timm names: reading the registry otherwise needs no torch

        if timm.is_model(name.removeprefix(TIMM_PREFIX)):
            return ArchEntry(_timm(name.removeprefix(TIMM_PREFIX)), pretrainable=True)
    return None


def is_timm(name: str) -> bool:
    return TIMM_ALIASES.get(name, name).startswith(TIMM_PREFIX)


def create_arch(name: str, n_in: int, n_out: int, pretrained: bool, pretrained_path: str | None = None) -> Arch:
    extra = {"pretrained_path": pretrained_path} if pretrained_path else {}
    return arch_entry(name).build(n_in, n_out, pretrained=pretrained, **extra)
