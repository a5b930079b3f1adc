"""SIFA as layers: the SIFA bottleneck of C2D ResNets and the frame mixer of per-frame transformers."""
from __future__ import annotations

import torch
import torch.nn as nn

from ..ops.sifa import motion_map, sifa_aggregate, sifa_attention
from .block import per_clip
from .bottleneck import C2DBottleneck


class SIFABottleneck(C2DBottleneck):
    """conv1-BN-ReLU, conv2-BN-ReLU, **SIFA**, conv3-BN, + identity, ReLU.

    SIFA: offsets ``Conv3d(planes -> 2 K^2, (1, 3, 3))`` of the motion map
    ``sigmoid(F - F_prev) * F + F`` (zero-initialised, so training starts from the plain K x K
    neighbourhood), then :func:`~video_sparse.ops.sifa.sifa_attention` with the next frame.

    Args:
        kernel_size, dilation, groups, normalize: of the attention (official: 3, 1, 1, "none").
        sifa: False switches the motion map, offsets and attention off (the block becomes a plain
            bottleneck with the same parameters), to measure what SIFA costs.
    """

    def __init__(self, in_channels: int, planes: int, stride: int = 1, kernel_size: int = 3, dilation: int = 1,
                 groups: int = 1, normalize: str = "none", sifa: bool = True):
        super().__init__(in_channels, planes, stride)
        self.kernel_size, self.dilation, self.groups, self.normalize = kernel_size, dilation, groups, normalize
        self.sifa = sifa
        self.conv_offset = nn.Conv3d(planes, 2 * kernel_size ** 2, (1, 3, 3), padding=(0, 1, 1), bias=False)
        nn.init.zeros_(self.conv_offset.weight)

    def mix(self, x: torch.Tensor) -> torch.Tensor:
        if not self.sifa:
            return x
        offsets = self.conv_offset(motion_map(x))
        return sifa_attention(x, offsets, self.kernel_size, self.dilation, self.groups, self.normalize)


class FrameSIFA(nn.Module):
    """SIFA as a pre-norm residual sub-block of per-frame transformers: ``x + gamma * A(LN(x))``.

    ``x`` is the residual stream ``(N * T, H, W, C)`` (frames of a clip consecutive) and
    ``frames = T``. ``A`` is SIFA's aggregation (:func:`~video_sparse.ops.sifa.sifa_aggregate`: the
    stream already carries ``F``) on the layer-normalised maps viewed as ``(N, C, T, H, W)``, with offsets from
    ``conv_offset`` (zero-initialised) on their motion map. The normalisation plays the part of
    SIFA-Net's BN-ReLU before SIFA (``A`` is cubic in its input's scale: on raw transformer
    features, ~0.1 at initialisation, it would start near zero), and ``gamma`` (per channel,
    zero-initialised, like SIFA-Net's zero-initialised last BN) makes the block start as the
    identity, so an ImageNet-initialised backbone starts as it was trained.

    Args:
        dim: channels. kernel_size, dilation, groups, normalize: of the attention.
        sifa: False makes the module the identity (same parameters), to measure what SIFA adds.
    """

    def __init__(self, dim: int, kernel_size: int = 3, dilation: int = 1, groups: int = 1, normalize: str = "none",
                 sifa: bool = True):
        super().__init__()
        self.kernel_size, self.dilation, self.groups, self.normalize = kernel_size, dilation, groups, normalize
        self.sifa = sifa
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.conv_offset = nn.Conv3d(dim, 2 * kernel_size ** 2, (1, 3, 3), padding=(0, 1, 1), bias=False)
        nn.init.zeros_(self.conv_offset.weight)
        self.gamma = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        if not self.sifa:
            return x
        return x + self.gamma * per_clip(self.norm(x), frames, self.aggregate)

    def aggregate(self, clips: torch.Tensor) -> torch.Tensor:
        """``A`` on the normalised clips ``(N, C, T, H, W)``."""
        offsets = self.conv_offset(motion_map(clips))
        return sifa_aggregate(clips, offsets, self.kernel_size, self.dilation, self.groups, self.normalize)
