"""C2D ResNets: 2D ResNets applied to every frame (Conv3d with temporal kernel 1).

Order-blind by construction when the stem's temporal kernel is 1: every frame is processed on its
own and the head averages over (T, H, W). Layer names follow torchvision's ResNet (``conv1``,
``bn1``, ``layer1``..``layer4``); the classifier lives in ``head`` (``head.fc``).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from ..layers.heads import PoolHead, TemporalMeanConvHead
from .registry import register_model


class C2DBottleneck(nn.Module):
    """ResNet bottleneck in C2D form: 1x1x1 -> 1x3x3 (spatial stride) -> 1x1x1, + identity.

    Input ``(N, C_in, T, H, W)``, output ``(N, planes * 4, T, H / stride, W / stride)``.
    """

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1):
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv3d(in_channels, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = nn.Conv3d(planes, planes, (1, 3, 3), (1, stride, stride), (0, 1, 1), bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv3 = nn.Conv3d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm3d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_channels != out:
            self.downsample = nn.Sequential(
                nn.Conv3d(in_channels, out, 1, (1, stride, stride), bias=False), nn.BatchNorm3d(out))

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        return self.bn3(self.conv3(y))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(self.residual(x) + identity)


class C2DResNet(nn.Module):
    """Stem ``Conv3d(3, w, (ts, 7, 7), stride (ts, 2, 2))`` -> BN -> ReLU -> 1x3x3 max-pool,
    four stages of bottlenecks, then an order-blind head.

    Args:
        layers: blocks per stage.
        widths: bottleneck widths (``planes``) per stage; stage outputs are 4x wider.
        stem_width: stem output channels.
        stem_temporal_kernel, stem_temporal_stride: the stem's ``ts`` (1: no temporal mixing).
        stem_pool: keep the stem's max-pool (total stride 4); off for small inputs (stride 2).
        strides: spatial stride of each stage's first block.
        head: ``"pool"`` (average over T, H, W -> linear; official) or ``"spatial"`` (average over
            T -> 3x3 convs on the map -> average over H, W -> linear), see ``layers/heads.py``.
        head_width: channels of the spatial head's convs.
        dropout: dropout before the classifier.
    Input ``(N, 3, T, H, W)``; output logits ``(N, num_classes)``.
    """

    def __init__(self, layers: Sequence[int] = (3, 4, 6, 3), widths: Sequence[int] = (64, 128, 256, 512),
                 stem_width: int = 64, stem_temporal_kernel: int = 1, stem_temporal_stride: int = 1,
                 stem_pool: bool = True, strides: Sequence[int] = (1, 2, 2, 2), head: str = "pool",
                 head_width: int = 128, num_classes: int = 400, dropout: float = 0.5):
        super().__init__()
        ts = stem_temporal_kernel
        self.conv1 = nn.Conv3d(3, stem_width, (ts, 7, 7), (stem_temporal_stride, 2, 2), (0, 3, 3), bias=False)
        self.bn1 = nn.BatchNorm3d(stem_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)) if stem_pool else nn.Identity()
        channels = stem_width
        stages = []
        for n, planes, stride in zip(layers, widths, strides):
            blocks = []
            for b in range(n):
                blocks.append(C2DBottleneck(channels, planes, stride=stride if b == 0 else 1))
                channels = planes * C2DBottleneck.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.num_features = channels
        if head == "pool":
            self.head = PoolHead(channels, num_classes, dropout)
        elif head == "spatial":
            self.head = TemporalMeanConvHead(channels, num_classes, head_width, dropout)
        else:
            raise ValueError(f"head must be 'pool' or 'spatial', got {head!r}")
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv3d, nn.Conv2d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm3d, nn.BatchNorm2d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for m in self.modules():  # each residual branch starts as identity
            if isinstance(m, C2DBottleneck):
                nn.init.zeros_(m.bn3.weight)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, T, H, W)`` -> ``(N, C, T', H', W')`` last-stage features."""
        if x.ndim != 5:
            raise ValueError(f"expected a clip batch (N, 3, T, H, W), got shape {tuple(x.shape)}")
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


@register_model
def c2d_small(num_classes: int = 10, **overrides) -> C2DResNet:
    """Small order-blind C2D baseline for the motion benchmark (CPU-friendly, 64x64 input).

    The last stage keeps stride 16 (a 4x4 map at 64 px) and the spatial head sees the
    time-averaged map, so the motion's trail is visible but its direction is not.
    """
    kwargs = dict(layers=(1, 1, 1, 1), widths=(8, 16, 32, 64), stem_width=16, strides=(1, 2, 2, 1),
                  head="spatial", head_width=128, dropout=0.0)
    return C2DResNet(num_classes=num_classes, **{**kwargs, **overrides})

