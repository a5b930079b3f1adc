"""Convolutional stems at stride 4."""
from __future__ import annotations

import torch.nn as nn


class ConvStem(nn.Sequential):
    """BiFormer's stem: 3x3 conv at stride 2 to ``dim // 2`` channels, BatchNorm, GELU, 3x3 conv at
    stride 2 to ``dim``, BatchNorm (indices ``.0 .1 .3 .4`` as in the official state_dict).

    A patch embedding is one linear map of each 4x4 (or 7x7) patch; this stem computes non-linear
    edge features before the stride-4 grid, which is what lets the small motion-benchmark
    transformers tell a rotation's direction (docs/benchmarks.md), as convolutional stems help
    ViTs in general (Xiao et al., "Early convolutions help transformers see better", 2021).
    Input ``(B, 3, H, W)``; output ``(B, dim, ceil(H / 4), ceil(W / 4))``.
    """

    def __init__(self, dim: int, in_chans: int = 3):
        super().__init__(nn.Conv2d(in_chans, dim // 2, 3, 2, 1), nn.BatchNorm2d(dim // 2), nn.GELU(),
                         nn.Conv2d(dim // 2, dim, 3, 2, 1), nn.BatchNorm2d(dim))
