"""CNN + GPT-2's registry entry (``--arch cnn_gpt2``): conv blocks feeding GPT-2's first ``gpt2_layers`` blocks,
pretrained from GPT2_CHECKPOINT or a local checkpoint folder. The network is in ``cnn_gpt2_net.py``."""

from __future__ import annotations

from .base import Arch, register
from .hf_hub import checkpoint_weights

# GPT-2's smallest (124 M parameters; cnn_gpt2 keeps the first gpt2_layers of its 12 blocks).
GPT2_CHECKPOINT = "openai-community/gpt2"


@register("cnn_gpt2", pretrainable=True, takes_shape=True, blocks=True, local_weights=True,
          checkpoint=GPT2_CHECKPOINT, knobs=("gpt2_layers", "conv_channels"), weights=checkpoint_weights)
def cnn_gpt2(n_in: int, n_out: int, pretrained: bool = True, **kwargs) -> Arch:
    """Conv blocks, one token per time step, GPT-2 blocks, an MLP head: cnn_gpt2_net.py."""
    from .cnn_gpt2_net import build_cnn_gpt2

    return build_cnn_gpt2(n_in, n_out, pretrained, **kwargs)
