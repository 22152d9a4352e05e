"""Hugging Face checkpoints of the registry's transformer models (AST, GPT-2): their config and weights from a local
folder (``pretrained_path``), the hub cache or the hub, and the messages that say where to put a checkpoint on a
machine without internet."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from ..errors import UserError
from .base import MissingWeights

# The weights files from_pretrained (transformers) and timm's hub loader accept, safetensors first.
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def load_config(config_cls, kind: str, checkpoint: str, pretrained_path: str | None, default: bool):
    """``checkpoint``'s config.json (``config_cls``): from ``pretrained_path``, else the hub cache. When it is not
    cached, ``config_cls()`` if ``default`` (its defaults are that checkpoint's shape: no download needed), else
    downloaded. ``kind`` names the model family in messages ("AST")."""
    try:
        return config_cls.from_pretrained(pretrained_path or checkpoint, local_files_only=True)
    except OSError as e:
        if pretrained_path:
            raise UserError(f"pretrained_path: no {kind} config.json in {pretrained_path} ({e})") from e
        if default:
            return config_cls()
        try:
            return config_cls.from_pretrained(checkpoint)
        except OSError as e:
            raise missing_checkpoint(kind, checkpoint, "config.json", e) from e


def load_model(model_cls, kind: str, checkpoint: str, pretrained_path: str | None, **kwargs):
    """``model_cls.from_pretrained`` of ``pretrained_path`` (a folder) or ``checkpoint`` (the hub cache, else the
    hub), ``kwargs`` passed on. transformers' load report is silenced: the weights a body leaves out (a classifier,
    a language-model head, blocks cut off) are unused by design; pass ``output_loading_info=True`` to check the
    keys yourself."""
    from transformers.utils import logging

    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        return model_cls.from_pretrained(pretrained_path or checkpoint, **kwargs)
    except OSError as e:
        if pretrained_path:
            article = "an" if kind[0] in "AEIOU" else "a"
            raise UserError(f"pretrained_path: cannot load {article} {kind} checkpoint from {pretrained_path} "
                            f"({_short(e)}); give a folder with config.json and model.safetensors (what "
                            "save_pretrained writes)") from e
        raise missing_checkpoint(kind, checkpoint, "config.json and model.safetensors", e) from e
    finally:
        logging.set_verbosity(verbosity)


def missing_checkpoint(kind: str, checkpoint: str, files: str, e: Exception) -> UserError:
    """The error of a checkpoint neither cached nor downloadable: which files to fetch, where, and how."""
    import huggingface_hub.constants

    return UserError(f"could not load the {kind} checkpoint {checkpoint} ({_short(e)}). Fetch {files} of the Hugging "
                     f"Face hub's {checkpoint} into {huggingface_hub.constants.HF_HUB_CACHE} on a machine with "
                     f"internet (hf download {checkpoint}), give a local copy with --pretrained_path, or pass "
                     "--pretrained false")


def _short(e: Exception) -> str:
    return " ".join(str(e).split())[:200]


def cached_weights(repo: str, config: bool = True) -> MissingWeights | None:
    """None when the Hugging Face cache holds ``repo``'s weights (and its config.json when ``config``); else what to
    fetch, where, and whether the hub is switched off (HF_HUB_OFFLINE)."""
    import huggingface_hub.constants as hub
    from huggingface_hub import try_to_load_from_cache

    def cached(name: str) -> bool:  # a path when cached; None or a "known absent" marker otherwise
        return isinstance(try_to_load_from_cache(repo, name), str)

    if any(cached(f) for f in WEIGHT_FILES) and (not config or cached("config.json")):
        return None
    files = ("config.json and " if config else "") + WEIGHT_FILES[0]
    return MissingWeights(files, hub.HF_HUB_CACHE, f"the Hugging Face hub's {repo}: hf download {repo}",
                          urlsplit(hub.ENDPOINT).hostname, "HF_HUB_OFFLINE is set" if hub.HF_HUB_OFFLINE else None)


def local_path(path: str, what: str) -> MissingWeights | None:
    """None when ``pretrained_path`` exists; else it is missing, and no download replaces it."""
    if Path(path).exists():
        return None
    return MissingWeights(what, path, "--pretrained_path", "", blocked="pretrained_path does not exist")


def checkpoint_weights(cfg, checkpoint: str | None) -> MissingWeights | None:
    """The transformer checkpoints' weights (AST, GPT-2): a ``pretrained_path`` folder, else the hub cache."""
    if cfg.pretrained_path:
        return local_path(cfg.pretrained_path, "a checkpoint folder (config.json, model.safetensors)")
    return cached_weights(checkpoint)
