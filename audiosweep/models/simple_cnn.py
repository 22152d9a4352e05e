"""simple_cnn: a small CNN trained from scratch, the registry's cheapest model."""

from __future__ import annotations

from .base import Arch, conv_block, register


@register("simple_cnn", pretrainable=False)
def simple_cnn(n_in: int, n_out: int, pretrained: bool = False) -> Arch:
    """A strided 5x5 stem and three conv blocks (16-32-64-128 channels), global average pooling, a linear
    head; about 45 M multiply-adds for a 64 x 716 spectrogram. Always trained from scratch."""
    from torch import nn  # imported by the builders: reading the registry (config, analysis) needs no torch

    stem = nn.Sequential(nn.Conv2d(n_in, 16, 5, stride=2, padding=2, bias=False), nn.BatchNorm2d(16),
                         nn.ReLU(inplace=True), nn.MaxPool2d(2))
    blocks = [conv_block(a, b) for a, b in [(16, 32), (32, 64), (64, 128)]]
    return Arch(nn.Sequential(stem, *blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2),
                              nn.Linear(128, n_out)))
