"""The model registry (timm style): one name -> one entry, which each family module adds with :func:`register`.

An entry is everything the toolkit knows about a family: its builder, whether pretrained weights exist, the front
end it was trained on (``preset``), its checkpoint, its own config knobs and checks. A builder takes
``(n_in, n_out, pretrained)`` and returns an :class:`Arch`: the model and, for models with a pretrained body,
fastai's parameter-group splitter. This module imports no family and no torch at import time: reading the registry
(config, analysis) needs neither.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from torch import nn


class RunConfig(Protocol):
    """What the registry reads of a run's config (``audiosweep.config.Config``, which imports the registry)."""

    arch: str
    pretrained: bool
    pretrained_path: str | None
    finetune: str
    n_mels: int


@dataclass
class Arch:
    """A built model and how training treats it."""

    model: nn.Module
    splitter: Callable | None = None  # parameter groups for discriminative LRs; None = one group
    pretrained: bool = False  # True when the body holds pretrained weights (trained with fine_tune)
    # The body's blocks from input to output, for unfreeze_schedule (training keeps the top N trainable and the
    # rest frozen; parameters outside them always train); None = the model does not expose them.
    blocks: list[nn.Module] | None = None


@dataclass(frozen=True)
class ArchEntry:
    """What the toolkit knows about one architecture: how to build it, and what the config may ask of it."""

    build: Callable[..., Arch]
    pretrainable: bool  # pretrained weights exist for its body: ``pretrained`` has an effect
    # Config values the model was trained with (its front end), used for the keys a user does not set.
    preset: dict = field(default_factory=dict)
    takes_shape: bool = False  # the builder sizes the model to the input: takes ``input_shape`` (C, H, W)
    blocks: bool = False  # its Arch lists the body's blocks (``Arch.blocks``): unfreeze_schedule applies
    local_weights: bool = False  # ``pretrained_path`` applies: the builder takes a local weights file or folder
    checkpoint: str | None = None  # the Hugging Face checkpoint of its pretrained weights, passed to the builder
    knobs: tuple[str, ...] = ()  # its own config keys, passed to the builder as keyword arguments
    # Its pretrained weights on this machine: ``weights(cfg, checkpoint)`` is None when the builder will find them
    # locally, else the :class:`MissingWeights` it would have to download (the family's cache: torch hub, HF hub).
    weights: Callable[[RunConfig, str | None], MissingWeights | None] | None = None
    # Its own config rules: each returns an error message (naming the keys) or None.
    rules: tuple[Callable[[RunConfig], str | None], ...] = ()

    def check(self, cfg: RunConfig) -> list[str]:
        """The messages of the rules ``cfg`` breaks."""
        return [message for rule in self.rules if (message := rule(cfg))]


@dataclass(frozen=True)
class MissingWeights:
    """Pretrained weights that are not on this machine: which files, the folder the builder looks in, where they
    come from, the host a download needs, and why no download will be tried (None: the host decides)."""

    files: str
    folder: str
    source: str
    host: str
    blocked: str | None = None  # e.g. "HF_HUB_OFFLINE is set", "huggingface.co cannot be reached"


def torch_hub_file(url: str) -> MissingWeights | None:
    """None when torch's hub cache (TORCH_HOME) holds the file of ``url``, where load_state_dict_from_url looks
    first; else what to fetch."""
    import torch.hub

    folder, file = Path(torch.hub.get_dir()) / "checkpoints", url.rsplit("/", 1)[1]
    return None if (folder / file).is_file() else MissingWeights(file, str(folder), url, urlsplit(url).hostname)


# Seconds a connection to a download host may take before the machine counts as offline.
PROBE_TIMEOUT_S = 3.0


def missing_weights(cfg: RunConfig, probe: Callable[[str], bool] | None = None) -> MissingWeights | None:
    """The pretrained weights ``cfg`` needs that are neither on this machine nor downloadable from it (their host,
    or the proxy, unreachable; ``probe(host)`` says whether a host answers: :func:`reachable` by default); None when
    the run needs none or will find or fetch them. Each family registers how its weights are found (``weights``)."""
    entry = arch_entry(cfg.arch)
    if entry is None or entry.weights is None or not (cfg.pretrained and cfg.finetune != "none"):
        return None
    missing = entry.weights(cfg, entry.checkpoint)
    if missing is None or missing.blocked:
        return missing
    return None if (probe or reachable)(missing.host) else replace(missing, blocked=f"{missing.host} cannot be "
                                                                                    "reached")


def reachable(host: str) -> bool:
    """Whether a TCP connection to ``host`` (or the HTTPS proxy the downloads would use) opens within
    PROBE_TIMEOUT_S: no DNS or no route fails at once, a firewall that drops packets at the timeout."""
    import socket
    import urllib.parse
    import urllib.request

    proxy = urllib.request.getproxies().get("https")
    if proxy and not urllib.request.proxy_bypass(host):
        parsed = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        host, port = parsed.hostname or host, parsed.port or 443
    else:
        port = 443
    try:
        socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S).close()
    except OSError:
        return False
    return True


ARCHS: dict[str, ArchEntry] = {}
# Name forms resolved on lookup: prefix -> the form as users read it ("timm/<name>") and its resolver.
PATTERNS: dict[str, tuple[str, Callable[[str], ArchEntry | None]]] = {}
_SHOWN: list[str] = []  # names and name forms in the order they were registered: how users read the list


def register(name: str, **fields: Any) -> Callable[[Callable[..., Arch]], Callable[..., Arch]]:
    """Decorator: register the builder under ``name``, with the :class:`ArchEntry` ``fields``."""
    def add(build: Callable[..., Arch]) -> Callable[..., Arch]:
        ARCHS[name] = ArchEntry(build, **fields)
        _SHOWN.append(name)
        return build

    return add


def register_pattern(prefix: str, shown: str, resolve: Callable[[str], ArchEntry | None]) -> None:
    """Names starting with ``prefix`` are ``resolve(name)``'s entry (None: no such model); ``shown`` is the form
    as users read it."""
    PATTERNS[prefix] = (shown, resolve)
    _SHOWN.append(shown)


def arch_entry(name: str) -> ArchEntry | None:
    """The registry entry of ``name``: a registered name, or one of a pattern's forms (``timm/<any timm model>``)."""
    if name in ARCHS:
        return ARCHS[name]
    for prefix, (_, resolve) in PATTERNS.items():
        if name.startswith(prefix):
            return resolve(name)
    return None


def arch_names(patterns: bool = False) -> list[str]:
    """The registered names; with ``patterns``, also the name forms resolved on lookup (as ``timm/<name>``)."""
    return [n for n in _SHOWN if patterns or n in ARCHS]


def create_arch(name: str, n_in: int, n_out: int, pretrained: bool, pretrained_path: str | None = None,
                input_shape: tuple[int, int, int] | None = None, options: dict | None = None) -> Arch:
    """Build ``name`` for ``n_in`` channels and ``n_out`` classes: :func:`build_model`'s step, without a config.
    ``input_shape`` (C, n_mels, frames) sizes the models that depend on it (AST's position embeddings);
    ``options`` are the entry's own knobs, passed to its builder as keyword arguments."""
    entry = arch_entry(name)
    extra = {"pretrained_path": pretrained_path} if pretrained_path else {}
    if entry.checkpoint:
        extra["checkpoint"] = entry.checkpoint
    if entry.takes_shape:
        extra["input_shape"] = input_shape
    return entry.build(n_in, n_out, pretrained=pretrained, **extra, **(options or {}))


def build_model(cfg: RunConfig, n_classes: int, input_shape: tuple[int, int, int],
                pretrained: bool | None = None) -> Arch:
    """``cfg.arch`` for inputs of ``input_shape`` (C, n_mels, frames) and ``n_classes``, with the config's
    pretrained weights (``pretrained`` False: none, for shape checks and a saved model's weights) and the entry's
    own knobs."""
    entry = arch_entry(cfg.arch)
    return create_arch(cfg.arch, input_shape[0], n_classes, cfg.pretrained if pretrained is None else pretrained,
                       cfg.pretrained_path, input_shape, {k: getattr(cfg, k) for k in entry.knobs})


def conv_block(c_in: int, c_out: int) -> nn.Sequential:
    """3x3 conv, BatchNorm, ReLU, 2x2 max-pool: halves the height and width."""
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
    return nn.Sequential(*[nn.Sequential(*conv_block(a, b), nn.Dropout(CONV_DROPOUT))
                           for a, b in zip(widths, widths[1:])])
