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
from dataclasses import dataclass, field
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
    # The body's blocks from input to output, for unfreeze_schedule (training keeps the top N trainable and the
    # rest frozen; parameters outside them always train); None = the model does not expose them.
    blocks: list[nn.Module] | None = None


def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    from torch import nn  # imported by the builders: reading the registry (config, analysis) needs no torch

    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True), nn.MaxPool2d(2))


# Dropout after each block of conv_stack. Neither paper (cnn_gpt2, dual_stream) gives its rate: 0.2 is
# simple_cnn's, mid-range for small CNNs on a few hundred clips.
CONV_DROPOUT = 0.2


def conv_stack(c_in: int, channels: list[int]) -> nn.Sequential:
    """One conv block and dropout per entry of ``channels`` (the ``conv_channels`` of cnn_gpt2 and dual_stream):
    each halves the height and width."""
    from torch import nn

    widths = [c_in, *channels]
    return nn.Sequential(*[nn.Sequential(*_conv_block(a, b), nn.Dropout(CONV_DROPOUT))
                           for a, b in zip(widths, widths[1:])])


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
    # Config values the model was trained with (its front end), used for the keys a user does not set.
    preset: dict = field(default_factory=dict)
    takes_shape: bool = False  # the builder sizes the model to the input: takes ``input_shape`` (C, H, W)
    blocks: bool = False  # its Arch lists the body's blocks (``Arch.blocks``): unfreeze_schedule applies


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
        return Arch(model, model_meta[fn]["split"], pretrained, blocks=_body_blocks(model[0]))

    build.__name__ = name
    build.__doc__ = f"torchvision {name} body + fastai head; ImageNet weights adapted to n_in channels."
    return build


def _body_blocks(body: nn.Module) -> list[nn.Module]:
    """A torchvision body's layers that hold weights, input to output (ResNet: conv1, bn1, layer1..4; DenseNet: its
    features' conv0, norm0, dense blocks and transitions, norm5): what unfreeze_schedule counts from the top."""
    while len(children := list(body.children())) == 1:  # DenseNet's body is Sequential(features)
        body = children[0]
    return [m for m in children if any(True for _ in m.parameters())]


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
ARCHS.update({name: ArchEntry(_torchvision(name), pretrainable=True, blocks=True) for name in TORCHVISION_ARCHS})
# cnn_gpt2's GPT-2 (the smallest, 124 M parameters; the first gpt2_layers of its 12 blocks).
GPT2_CHECKPOINT = "openai-community/gpt2"


def cnn_gpt2(n_in: int, n_out: int, pretrained: bool = True, **kwargs) -> Arch:
    """Conv blocks, one token per time step, GPT-2 blocks (GPT2_CHECKPOINT's), an MLP head: cnn_gpt2.py."""
    from .cnn_gpt2 import build_cnn_gpt2

    return build_cnn_gpt2(n_in, n_out, pretrained, **kwargs)


def dual_stream(n_in: int, n_out: int, pretrained: bool = False, **kwargs) -> Arch:
    """A frame-wise MLP stream and a CNN stream, fused: dual_stream.py."""
    from .dual_stream import build_dual_stream

    return build_dual_stream(n_in, n_out, **kwargs)


ARCHS.update({"cnn_gpt2": ArchEntry(cnn_gpt2, pretrainable=True, takes_shape=True, blocks=True),
              "dual_stream": ArchEntry(dual_stream, pretrainable=False, takes_shape=True)})
TIMM_PREFIX = "timm/"
# Short names for the timm models our sweeps use; any other timm model is TIMM_PREFIX + its timm name.
TIMM_ALIASES = {"efficientnet_b0": "timm/efficientnet_b0", "inception_v3": "timm/inception_v3",
                "convnext_tiny": "timm/convnext_tiny"}
# The Audio Spectrogram Transformer (audio_transformer.py): ``ast`` is AST_CHECKPOINT, ``ast/<repo>`` any AST
# checkpoint on the Hugging Face hub.
AST_PREFIX, AST_CHECKPOINT = "ast/", "MIT/ast-finetuned-audioset-10-10-0.4593"
AST_MELS = 128  # num_mel_bins of the AudioSet checkpoints: the frequency axis of the patch grid
# What AST's checkpoints were trained on (the AST paper, section 2.1; ASTFeatureExtractor's defaults): 16 kHz
# audio, 128 Kaldi fbank bins (from 20 Hz, Kaldi's default) every 10 ms over 25 ms Hann windows, normalised
# with AudioSet's statistics. A user's own value of any of these keys wins.
AST_PRESET = {"frontend": "kaldi", "sample_rate": 16000, "n_mels": AST_MELS, "hop_length_ms": 10.0,
              "win_length_ms": 25.0, "f_min": 20.0, "f_max": None, "normalize": "audioset"}


def _ast(checkpoint: str) -> Callable[..., Arch]:
    def build(n_in: int, n_out: int, pretrained: bool = True, pretrained_path: str | None = None,
              input_shape: tuple[int, int, int] | None = None) -> Arch:
        from .audio_transformer import build_ast

        return build_ast(checkpoint, n_in, n_out, pretrained, pretrained_path, input_shape)

    build.__name__ = "ast"
    build.__doc__ = f"AST body from {checkpoint} (position embeddings fitted to the input) + a new head."
    return build


def arch_entry(name: str) -> ArchEntry | None:
    """The registry entry of ``name``: ours, an alias of a timm model, or ``timm/<any timm model>``."""
    name = TIMM_ALIASES.get(name, name)
    if name in ARCHS:
        return ARCHS[name]
    if name == "ast" or (name.startswith(AST_PREFIX) and name.count("/") == 2):
        checkpoint = AST_CHECKPOINT if name == "ast" else name.removeprefix(AST_PREFIX)
        return ArchEntry(_ast(checkpoint), pretrainable=True, preset=AST_PRESET, takes_shape=True)
    if name.startswith(TIMM_PREFIX):
        import timm  # only for timm names: reading the registry otherwise needs no torch

        if timm.is_model(name.removeprefix(TIMM_PREFIX)):
            return ArchEntry(_timm(name.removeprefix(TIMM_PREFIX)), pretrainable=True)
    return None


def is_timm(name: str) -> bool:
    return TIMM_ALIASES.get(name, name).startswith(TIMM_PREFIX)


def takes_local_weights(name: str) -> bool:
    """Whether ``pretrained_path`` applies: timm models (a weights file), AST and cnn_gpt2 (a checkpoint folder)."""
    return is_timm(name) or name in ("ast", "cnn_gpt2") or name.startswith(AST_PREFIX)


def create_arch(name: str, n_in: int, n_out: int, pretrained: bool, pretrained_path: str | None = None,
                input_shape: tuple[int, int, int] | None = None, options: dict | None = None) -> Arch:
    """Build ``name`` for ``n_in`` channels and ``n_out`` classes; ``input_shape`` (C, n_mels, frames) sizes the
    models that depend on it (AST's position embeddings); ``options`` are the model's own config keys
    (``Config.model_options``: e.g. gpt2_layers), passed to its builder as keyword arguments."""
    entry = arch_entry(name)
    extra = {"pretrained_path": pretrained_path} if pretrained_path else {}
    if entry.takes_shape:
        extra["input_shape"] = input_shape
    return entry.build(n_in, n_out, pretrained=pretrained, **extra, **(options or {}))
