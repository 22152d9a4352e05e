"""Any timm model as ``timm/<name>`` (ImageNet weights from the Hugging Face cache, or a local weights file), with
fastai's timm head; short names for the ones our sweeps use."""

from __future__ import annotations

from collections.abc import Callable

from ..errors import UserError
from .base import Arch, ArchEntry, MissingWeights, register, register_pattern, torch_hub_file
from .hf_hub import cached_weights, local_path

TIMM_PREFIX = "timm/"
# Short names for the timm models our sweeps use; any other timm model is TIMM_PREFIX + its timm name.
TIMM_ALIASES = {"efficientnet_b0": "timm/efficientnet_b0", "inception_v3": "timm/inception_v3",
                "convnext_tiny": "timm/convnext_tiny"}
TIMM_FIELDS = {"pretrainable": True, "local_weights": True}  # pretrained_path: a weights file


def _timm(name: str) -> Callable[..., Arch]:
    def build(n_in: int, n_out: int, pretrained: bool = True, pretrained_path: str | None = None) -> Arch:
        import timm  # imported by the builders: reading the registry needs no torch
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


def _timm_weights(name: str) -> Callable[..., MissingWeights | None]:
    def find(cfg, checkpoint: str | None) -> MissingWeights | None:
        """A ``pretrained_path`` file, else the model's default weights: in the Hugging Face cache (its hub
        repo) or torch's hub cache (a URL), where timm loads them from."""
        from timm.models import get_pretrained_cfg

        if cfg.pretrained_path:
            return local_path(cfg.pretrained_path, "a weights file")
        pretrained = get_pretrained_cfg(name)
        if pretrained is None:  # timm has no weights for it: its builder says so
            return None
        if pretrained.hf_hub_id:
            return cached_weights(pretrained.hf_hub_id.split("@")[0], config=False)
        return torch_hub_file(pretrained.url)

    return find


def _resolve(name: str) -> ArchEntry | None:
    """The entry of ``timm/<name>`` when timm has a model of that name."""
    import timm  # only for timm names: reading the registry otherwise needs no torch

    model = name.removeprefix(TIMM_PREFIX)
    return ArchEntry(_timm(model), weights=_timm_weights(model), **TIMM_FIELDS) if timm.is_model(model) else None


for _alias, _name in TIMM_ALIASES.items():
    register(_alias, weights=_timm_weights(_name.removeprefix(TIMM_PREFIX)), **TIMM_FIELDS)(
        _timm(_name.removeprefix(TIMM_PREFIX)))
register_pattern(TIMM_PREFIX, "timm/<name>", _resolve)
