"""Dual stream (``--arch dual_stream``; its entry is in ``dual_stream.py``): the published DCASE 2017 scene
classifier of an MLP stream and a small CNN stream over the same log-mel spectrogram (64 mels), fused (70 % accuracy
against 65 % for the MLP alone).

The MLP stream works on frame windows, as the paper's MLP (the DCASE 2017 baseline's) does: each window of
``mlp_context`` consecutive frames (the baseline: 5, its 0.1 s "flatten" aggregation at a 20 ms hop), flattened to
C x n_mels x context values, goes through the same hidden layers (``mlp_widths``; Linear, ReLU, dropout), and the
clip's MLP features are their mean over the windows. Windows are the valid ones only (frames t..t+context-1 for
t = 0..T-context: no padding, so no window holds invented frames). The DCASE 2017 baseline instead trains on
windows as samples and decides a clip by a majority vote of its windows' decisions; the paper does not say how its
clip decision is made, so we keep the mean of the hidden features, which one Linear head (or the fusion) turns
into the clip's logits. So it takes a clip of any length, has a few thousand weights, and keeps the frame-level
non-linearity that summary statistics of the clip (per-band mean or std) would average away first; flattening the
whole spectrogram into one vector would instead tie the model to one clip length with a first layer of
C x n_mels x frames inputs per unit.

The CNN stream: conv blocks (``conv_channels``; conv, BatchNorm, ReLU, max-pool, dropout), then global average
pooling. ``fusion``: concat (both streams' features, concatenated, into one Linear to the classes), sum (a Linear
to class logits per stream, added), or one stream alone (mlp, the paper's baseline; cnn). Trained from scratch.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import UserError
from .base import Arch, conv_stack

MLP_DROPOUT = 0.2  # after each hidden layer of the MLP stream: the DCASE 2017 baseline MLP's rate
FUSIONS = ("concat", "sum", "mlp", "cnn")
PAPER_MELS = 64  # n_mels when the builder is given no input shape


def build_dual_stream(n_in: int, n_out: int, input_shape: tuple[int, int, int] | None = None,
                      mlp_widths: list[int] = (64, 64), conv_channels: list[int] = (32, 64),
                      fusion: str = "concat", mlp_context: int = 1) -> Arch:
    """dual_stream for ``n_in`` channels of ``input_shape[1]`` mel bands (frames: at least ``mlp_context``) and
    ``n_out`` classes."""
    if fusion not in FUSIONS:
        raise UserError(f"fusion: one of {', '.join(FUSIONS)}, got {fusion!r}")
    mels = input_shape[1] if input_shape else PAPER_MELS
    widths = [n_in * mels * mlp_context, *mlp_widths]
    mlp = nn.Sequential(*[nn.Sequential(nn.Linear(a, b), nn.ReLU(inplace=True), nn.Dropout(MLP_DROPOUT))
                          for a, b in zip(widths, widths[1:])])
    cnn = nn.Sequential(conv_stack(n_in, list(conv_channels)), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return Arch(DualStream(None if fusion == "cnn" else mlp, None if fusion == "mlp" else cnn, widths[-1],
                           conv_channels[-1] if conv_channels else n_in, n_out, fusion, mlp_context))


class DualStream(nn.Module):
    """(B, C, n_mels, frames) -> (B, n_out): the frame-wise MLP stream and the CNN stream, fused (either may be
    None: the other alone)."""

    def __init__(self, mlp: nn.Module | None, cnn: nn.Module | None, mlp_features: int, cnn_features: int,
                 n_out: int, fusion: str, context: int = 1):
        super().__init__()
        self.mlp, self.cnn, self.fusion, self.context = mlp, cnn, fusion, context
        if fusion == "concat":
            self.head = nn.Linear(mlp_features + cnn_features, n_out)
        else:
            self.mlp_head = nn.Linear(mlp_features, n_out) if mlp is not None else None
            self.cnn_head = nn.Linear(cnn_features, n_out) if cnn is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.mlp(self.windows(x)).mean(1) if self.mlp is not None else None
        b = self.cnn(x) if self.cnn is not None else None
        if self.fusion == "concat":
            return self.head(torch.cat([a, b], dim=1))
        logits = [head(f) for head, f in ((self.mlp_head, a), (self.cnn_head, b)) if head is not None]
        return logits[0] if len(logits) == 1 else logits[0] + logits[1]

    def windows(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, n_mels, T) -> (B, T - context + 1, C x n_mels x context): window t holds frames t..t+context-1,
        flattened channel, then band, then frame (context 1: each frame's C x n_mels values)."""
        return x.unfold(3, self.context, 1).permute(0, 3, 1, 2, 4).flatten(2)
