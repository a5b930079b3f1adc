"""Classification heads for video backbones with features ``(N, C, T, H, W)``.

Both heads are blind to frame order: they average over time before anything else looks at the
features, so any permutation of the frames gives the same logits. :func:`build_head` makes the one
a model's ``head`` option names; both model families (C2D ResNets, per-frame transformers) use it
for their main and dual heads.
"""
from __future__ import annotations

import torch
import torch.nn as nn


class PoolHead(nn.Module):
    """Average over (T, H, W) -> dropout -> linear (the official C2D / SIFA-Net head)."""

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.0):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(x.mean(dim=(2, 3, 4))))


class TemporalMeanConvHead(nn.Module):
    """Average over T -> two 3x3 conv-BN-ReLU on the ``(C, H, W)`` map -> average over (H, W) ->
    dropout -> linear.

    Keeping the spatial layout after the temporal average lets the head see *where* things were
    during the clip (the trail of a moving object) while staying order-blind; a plain
    (T, H, W) average followed by a linear layer can only count per-frame appearances.
    """

    def __init__(self, in_channels: int, num_classes: int, width: int = 128, dropout: float = 0.0):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x.mean(dim=2))
        return self.fc(self.dropout(x.mean(dim=(2, 3))))


def build_head(kind: str, in_channels: int, num_classes: int, width: int, dropout: float) -> nn.Module:
    """``kind`` ``"pool"`` (:class:`PoolHead`) or ``"spatial"`` (:class:`TemporalMeanConvHead` of
    ``width``)."""
    if kind == "pool":
        return PoolHead(in_channels, num_classes, dropout)
    if kind == "spatial":
        return TemporalMeanConvHead(in_channels, num_classes, width, dropout)
    raise ValueError(f"head must be 'pool' or 'spatial', got {kind!r}")
