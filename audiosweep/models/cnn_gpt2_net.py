"""CNN + GPT-2 (``--arch cnn_gpt2``; its entry is in ``cnn_gpt2.py``): the published ESC-50 system of conv blocks
whose output, one token per time step, feeds the transformer blocks of GPT-2 (pretrained, or from scratch),
mean-pooled into an MLP head. The paper's input: 16 kHz, 40 log-mel bands, about 100 frames, normalised per clip, as
two channels (the log-mel and an augmented view of it: ``view_channels``).

Shape: (B, C, n_mels, frames) -> conv blocks (``conv_channels``, each halving both axes) -> (B, C', H', W') ->
(B, W', C' x H') tokens -> Linear to GPT-2's width -> ``GPT2Model`` (``inputs_embeds``; causal attention, as GPT-2
was trained) -> mean over tokens -> Linear, GELU, dropout, Linear to the classes.

Pretrained: the first ``gpt2_layers`` blocks of the entry's checkpoint (GPT2_CHECKPOINT, or the checkpoint folder
``pretrained_path``) with its position embeddings and final LayerNorm. GPT-2's token embeddings (50257 x 768) are
dropped: the tokens are the projected CNN features.

Parameter groups (what fastai's ``freeze`` and discriminative learning rates act on): [GPT-2's blocks and final
LayerNorm], [everything else: convs, projection, position embeddings, head]. The position embeddings train with the
new layers because they are added to the new input tokens: as in the frozen pretrained transformer of Lu et al.
(2021, "Pretrained Transformers as Universal Computation Engines"), which trains GPT-2's input layer, position
embeddings, LayerNorms and output layer around frozen attention and MLP weights. fastai's ``train_bn`` keeps
LayerNorms trainable in a frozen group, so the frozen epochs of ``fine_tune`` train exactly that set.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import UserError
from .base import Arch, conv_stack
from .hf_hub import load_config, load_model

PAPER_SHAPE = (40, 100)  # (n_mels, frames) when the builder is given no input shape
# The two-layer head: hidden units and the dropout between its layers (our choice: the paper gives neither).
HEAD_WIDTH, HEAD_DROPOUT = 256, 0.2


def build_cnn_gpt2(n_in: int, n_out: int, pretrained: bool, checkpoint: str, pretrained_path: str | None = None,
                   input_shape: tuple[int, int, int] | None = None, gpt2_layers: int = 12,
                   conv_channels: list[int] = (32, 64)) -> Arch:
    """cnn_gpt2 for ``n_in`` channels of (n_mels, frames) = ``input_shape[1:]`` and ``n_out`` classes, GPT-2's
    first ``gpt2_layers`` blocks pretrained (``checkpoint`` from the Hugging Face cache, or ``pretrained_path``),
    or GPT-2's architecture (the checkpoint's config.json where there is one, else ``GPT2Config``'s defaults, which
    are GPT2_CHECKPOINT's) at random."""
    from transformers import GPT2Config, GPT2Model

    mels, frames = input_shape[1:] if input_shape else PAPER_SHAPE
    source = pretrained_path or checkpoint
    config = load_config(GPT2Config, "GPT-2", checkpoint, pretrained_path, default=True)
    blocks = len(conv_channels)
    tokens = frames >> blocks  # each block's max-pool halves (floors) the time axis
    if tokens > config.n_positions:
        raise UserError(f"hop_length or max_frames: cnn_gpt2 makes one GPT-2 token per {1 << blocks} frames, and "
                        f"{frames} frames give {tokens} tokens, more than GPT-2's {config.n_positions} positions; "
                        f"use a larger hop_length, or max_frames {config.n_positions << blocks} or less")
    if pretrained:
        if gpt2_layers > config.n_layer:
            raise UserError(f"gpt2_layers: {source} has {config.n_layer} blocks, got gpt2_layers={gpt2_layers}; use "
                            f"at most {config.n_layer}, or --pretrained false")
        gpt2, info = load_model(GPT2Model, "GPT-2", checkpoint, pretrained_path, n_layer=gpt2_layers,
                                output_loading_info=True)
        # blocks beyond gpt2_layers are unexpected keys by design; a missing one would be left at random
        if info["missing_keys"]:
            raise UserError(f"{'pretrained_path: ' * bool(pretrained_path)}{source} is not a GPT-2 checkpoint of "
                            f"{gpt2_layers} blocks: no weights for {', '.join(sorted(info['missing_keys'])[:5])}")
    else:
        config.n_layer = gpt2_layers
        gpt2 = GPT2Model(config)
    gpt2.wte = None  # inputs_embeds replace the token embeddings: 38 M parameters that would never train
    features = (conv_channels[-1] if conv_channels else n_in) * (mels >> blocks)
    # At least one input: a spectrogram too small for the pools fails in their forward, with PyTorch's message,
    # which training.check_model_input reports with the sizes it needs.
    width = gpt2.config.n_embd
    body = CNNGPT2Body(conv_stack(n_in, list(conv_channels)), nn.Linear(max(features, 1), width), gpt2)
    head = nn.Sequential(nn.Linear(width, HEAD_WIDTH), nn.GELU(), nn.Dropout(HEAD_DROPOUT),
                         nn.Linear(HEAD_WIDTH, n_out))
    return Arch(nn.Sequential(body, head), gpt2_split, pretrained, blocks=list(gpt2.h))


class CNNGPT2Body(nn.Module):
    """(B, C, n_mels, frames) -> (B, n_embd): conv blocks, one token per remaining time step, GPT-2, mean."""

    def __init__(self, convs: nn.Module, proj: nn.Linear, gpt2: nn.Module):
        super().__init__()
        self.convs, self.proj, self.gpt2 = convs, proj, gpt2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.convs(x)
        tokens = self.proj(x.flatten(1, 2).transpose(1, 2))  # (B, C', H', W') -> (B, W', C' x H') -> (B, W', n_embd)
        mask = None
        if tokens.is_meta:
            # transformers derives the causal mask from tensor values (``.all()``), which meta tensors (shape-only
            # checks) lack; a 4D mask it takes as given. Its values do not matter on the meta device.
            n = tokens.shape[1]
            mask = torch.ones(1, 1, n, n, dtype=torch.bool, device=tokens.device)
        return self.gpt2(inputs_embeds=tokens, attention_mask=mask, use_cache=False).last_hidden_state.mean(1)


def gpt2_split(model: nn.Sequential) -> list[list[nn.Parameter]]:
    """fastai parameter groups: [GPT-2's blocks and final LayerNorm], [the rest] (the module docstring says why)."""
    gpt2 = model[0].gpt2
    body = [*gpt2.h.parameters(), *gpt2.ln_f.parameters()]
    ids = {id(p) for p in body}
    return [body, [p for p in model.parameters() if id(p) not in ids]]
