"""The Audio Spectrogram Transformer (Gong et al. 2021) through Hugging Face ``transformers``: the network of the
registry entries in ``ast.py``.

``--arch ast`` is AST fine-tuned on AudioSet (``MIT/ast-finetuned-audioset-10-10-0.4593``); ``--arch ast/<repo>``
is any AST checkpoint on the Hugging Face hub. The body is ``ASTModel`` (patch embedding, position embeddings,
12 transformer layers, the mean of its two class tokens); the head is new, shaped like ``ASTMLPHead`` (LayerNorm,
Linear). It takes our (B, 1, n_mels, frames) kaldi fbanks, which the entry's ``AST_PRESET`` selects.

The checkpoint's position embeddings cover 1024 frames (10.24 s); ESC-50's 5 s clips give 498. As AST's own code
does for AudioSet-pretrained models (``ast_models.py``), the grid of position embeddings is cut to its middle
patches when the input has fewer, and interpolated bilinearly when it has more.
"""

from __future__ import annotations

import torch
from fastai.vision.learner import default_split
from torch import nn

from ..errors import UserError
from .base import Arch
from .hf_hub import load_config, load_model


def build_ast(checkpoint: str, n_in: int, n_out: int, pretrained: bool, pretrained_path: str | None,
              input_shape: tuple[int, int, int], default_config: bool) -> Arch:
    """AST body (pretrained from ``checkpoint``, or a local ``pretrained_path`` folder) + a new head for ``n_out``
    classes, its position embeddings fitted to ``input_shape`` = (channels, n_mels, frames). ``default_config``:
    transformers' ``ASTConfig`` defaults are the checkpoint's shape (stand-ins when its config.json is not cached)."""
    if n_in != 1:
        raise UserError(f"ast takes one spectrogram channel, got {n_in} (stacked_win_lengths): use one window")
    mels, frames = input_shape[1], input_shape[2]
    if pretrained:
        body = _pretrained_body(checkpoint, pretrained_path)
        if body.config.num_mel_bins != mels:
            raise UserError(f"n_mels: {checkpoint} was trained on {body.config.num_mel_bins} mel bins, got "
                            f"n_mels={mels}; use n_mels {body.config.num_mel_bins} or --pretrained false")
        _fit_position_embeddings(body, frames)
    else:
        from transformers import ASTConfig, ASTModel

        shape = _architecture(checkpoint, pretrained_path, default_config)
        body = ASTModel(ASTConfig(**shape, num_mel_bins=mels, max_length=frames))
    hidden = body.config.hidden_size
    head = nn.Sequential(nn.LayerNorm(hidden, eps=body.config.layer_norm_eps), nn.Linear(hidden, n_out))
    with torch.no_grad():
        nn.init.trunc_normal_(head[1].weight, std=body.config.initializer_range)
        head[1].bias.zero_()
    # fastai's default_split: the body, then the head (the groups fine_tune freezes and gives discriminative LRs).
    return Arch(nn.Sequential(ASTBody(body), head), default_split, pretrained)


class ASTBody(nn.Module):
    """(B, 1, n_mels, frames) -> (B, hidden): ``ASTModel`` takes (B, frames, n_mels) and pools its two class
    tokens."""

    def __init__(self, ast: nn.Module):
        super().__init__()
        self.ast = ast

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ast(input_values=x[:, 0].transpose(1, 2)).pooler_output


def _architecture(checkpoint: str, pretrained_path: str | None, default_config: bool) -> dict:
    """The transformer's shape, from the checkpoint's ``config.json``: in ``pretrained_path``, in the Hugging Face
    cache, or downloaded; ``ASTConfig``'s defaults when they are the checkpoint's and it is not cached."""
    from transformers import ASTConfig

    keys = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "patch_size",
            "frequency_stride", "time_stride", "layer_norm_eps", "qkv_bias", "hidden_act")
    config = load_config(ASTConfig, "AST", checkpoint, pretrained_path, default=default_config)
    return {k: getattr(config, k) for k in keys}


def _pretrained_body(checkpoint: str, pretrained_path: str | None):
    from transformers import ASTModel

    # the AudioSet classifier's weights are unused by design: load_model reports nothing about them
    return load_model(ASTModel, "AST", checkpoint, pretrained_path)


def _fit_position_embeddings(body, frames: int) -> None:
    """Resize the body's position embeddings from the checkpoint's frame count to ``frames``."""
    emb, config = body.embeddings, body.config
    f_dim, t_old = emb.get_shape(config)
    config.max_length = frames
    _, t_new = emb.get_shape(config)
    if t_new == t_old:
        return
    pos = emb.position_embeddings.data
    tokens, grid = pos[:, :2], pos[:, 2:].reshape(1, f_dim, t_old, -1).permute(0, 3, 1, 2)  # (1, D, f, t)
    if t_new < t_old:
        start = t_old // 2 - t_new // 2
        grid = grid[..., start:start + t_new]
    else:
        grid = nn.functional.interpolate(grid, size=(f_dim, t_new), mode="bilinear")
    grid = grid.permute(0, 2, 3, 1).reshape(1, f_dim * t_new, -1)
    emb.position_embeddings = nn.Parameter(torch.cat([tokens, grid], dim=1).contiguous())
