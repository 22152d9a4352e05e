"""Dual stream's registry entry (``--arch dual_stream``): a frame-wise MLP and a small CNN over the same
spectrogram, fused; trained from scratch. The network is in ``dual_stream_net.py``."""

from __future__ import annotations

from .base import Arch, register


@register("dual_stream", pretrainable=False, takes_shape=True, knobs=("mlp_widths", "mlp_context", "conv_channels",
                                                                   "fusion"))
def dual_stream(n_in: int, n_out: int, pretrained: bool = False, **kwargs) -> Arch:
    """A frame-wise MLP stream and a CNN stream, fused: dual_stream_net.py."""
    from .dual_stream_net import build_dual_stream

    return build_dual_stream(n_in, n_out, **kwargs)
