"""ResNet bottlenecks in C2D form (2D convs applied to every frame) and the global-context block."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange


class C2DBottleneck(nn.Module):
    """1x1x1 -> 1x3x3 (spatial stride) -> 1x1x1, + identity, ReLU.

    Input ``(N, C_in, T, H, W)``, output ``(N, planes * 4, T, H / stride, W / stride)``.
    """

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1, spatial_mixer: nn.Module | None = None):
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv3d(in_channels, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        # the spatial mixer: a 1x3x3 conv, or an attention applied per frame (FrameAttention)
        self.conv2 = (nn.Conv3d(planes, planes, (1, 3, 3), (1, stride, stride), (0, 1, 1), bias=False)
                      if spatial_mixer is None else FrameAttention(spatial_mixer, stride))
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv3 = nn.Conv3d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm3d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_channels != out:
            self.downsample = nn.Sequential(
                nn.Conv3d(in_channels, out, 1, (1, stride, stride), bias=False), nn.BatchNorm3d(out))

    def mix(self, x: torch.Tensor) -> torch.Tensor:
        """Hook between conv2-BN-ReLU and conv3 (identity here; SIFA goes here)."""
        return x

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        return self.bn3(self.conv3(self.mix(y)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(self.residual(x) + identity)


class GCBottleneck(C2DBottleneck):
    """Bottleneck plus global context: ``ReLU(u + identity + fc2(ReLU(fc1(mean_{T,H,W} u))))`` with
    ``u`` the BN3 output (reduction 16, biases on), as in SIFA-Net."""

    def __init__(self, in_channels: int, planes: int, stride: int = 1, spatial_mixer: nn.Module | None = None,
                 reduction: int = 16):
        super().__init__(in_channels, planes, stride, spatial_mixer)
        out = planes * self.expansion
        self.fc1 = nn.Linear(out, out // reduction)
        self.fc2 = nn.Linear(out // reduction, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        u = self.residual(x)
        gc = self.fc2(self.relu(self.fc1(u.mean(dim=(2, 3, 4)))))
        return self.relu(u + identity + gc[:, :, None, None, None])


class FrameAttention(nn.Module):
    """A spatial attention used as a bottleneck's ``conv2``: applied to every frame of
    ``(N, C, T, H, W)`` (channels last inside), then, for ``stride`` 2, a 2x2 average pooling
    (BoTNet's choice for the strided block; ``ceil_mode`` matches the conv's output size)."""

    def __init__(self, attn: nn.Module, stride: int = 1):
        super().__init__()
        self.attn = attn
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T = x.shape[2]
        y = self.attn(rearrange(x, "n c t h w -> (n t) h w c"))
        y = rearrange(y, "(n t) h w c -> n c t h w", t=T)
        if self.stride > 1:
            y = F.avg_pool3d(y, (1, self.stride, self.stride), ceil_mode=True)
        return y
