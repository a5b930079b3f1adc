"""C2D ResNets: 2D ResNets applied to every frame, optionally with SIFA and global-context blocks
and SIFA-Net's dual frame-skipping branch.

Layer names follow torchvision's ResNet and the official SIFA-Net (``conv1``, ``bn1``,
``layer1``..``layer4``, ``layer4_dual``, per-block ``conv_offset``, ``fc1``/``fc2``); classifiers
live in ``head`` / ``head_dual`` (``head.fc``), see ``models/weights.py`` for the key mapping.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..layers.biformer import BiLevelRoutingAttention
from ..layers.bottleneck import C2DBottleneck, GCBottleneck
from ..layers.dilate import MultiScaleDilatedAttention
from ..layers.heads import PoolHead, TemporalMeanConvHead
from ..layers.sifa import SIFABottleneck
from .registry import register_model

# Block codes in a stage pattern, cycled over the stage's blocks ("GS": G, S, G, S, ...).
BLOCKS = {"P": C2DBottleneck, "G": GCBottleneck, "S": SIFABottleneck}


class C2DResNet(nn.Module):
    """Stem ``Conv3d(3, w, (ts, 7, 7), stride (ts, 2, 2))`` -> BN -> ReLU -> 1x3x3 max-pool, four
    stages of bottlenecks, an order-blind head; with ``dual``, a frame-skipping branch
    (layer3 -> max-pool over pairs of frames -> ``layer4_dual`` -> its own head).

    Args:
        layers: blocks per stage. widths: bottleneck widths per stage (outputs are 4x wider).
        patterns: per stage, block codes cycled over its blocks: P plain, G global context,
            S SIFA (SIFA-Net: ``("P", "GS", "GS", "GS")``).
        stem_width, stem_temporal_kernel, stem_temporal_stride: the stem (``ts`` = 1: no temporal
            mixing). stem_pool: keep the stem's max-pool (total stride 4).
        strides: spatial stride of each stage's first block. dual_stride: of ``layer4_dual``.
        sifa_kernel, sifa_dilation, sifa_groups, sifa_normalize: the SIFA blocks' attention.
        sifa: False switches every SIFA operator off (same parameters), to measure its cost.
        spatial_mixer: ``"conv"`` (the 1x3x3 conv), ``"bra"`` (BiFormer's routing attention) or
            ``"msda"`` (DilateFormer's dilated attention) as the spatial mixer (``conv2``) of the GC
            blocks of ``mixer_stages`` (1-based: 3, 4 = layer3, layer4 and layer4_dual), applied per
            frame; a strided block pools 2x2 after it. mixer_head_dim: channels per head.
            bra_n_win, bra_topk: BRA's regions per side and regions kept. msda_dilations: one
            channel group per dilation (the heads must split evenly).
        head: ``"pool"`` (average over T, H, W -> linear; official) or ``"spatial"`` (average over
            T -> 3x3 convs -> average over H, W -> linear). head_width: the spatial head's width.
        dropout: before the classifiers.
    Input ``(N, 3, T, H, W)``; output logits ``(N, num_classes)``, or ``(main, dual)`` with ``dual``.
    """

    def __init__(self, layers: Sequence[int] = (3, 4, 6, 3), widths: Sequence[int] = (64, 128, 256, 512),
                 patterns: Sequence[str] = ("P", "P", "P", "P"), stem_width: int = 64,
                 stem_temporal_kernel: int = 1, stem_temporal_stride: int = 1, stem_pool: bool = True,
                 strides: Sequence[int] = (1, 2, 2, 2), dual: bool = False, dual_stride: int = 1,
                 sifa_kernel: int = 3, sifa_dilation: int = 1, sifa_groups: int = 1, sifa_normalize: str = "none",
                 sifa: bool = True, spatial_mixer: str = "conv", mixer_stages: Sequence[int] = (3, 4),
                 mixer_head_dim: int = 32, bra_n_win: int = 7, bra_topk: int = 16,
                 msda_dilations: Sequence[int] = (1, 2, 3, 4), head: str = "pool", head_width: int = 128,
                 num_classes: int = 400, dropout: float = 0.5):
        super().__init__()
        if head not in ("pool", "spatial"):
            raise ValueError(f"head must be 'pool' or 'spatial', got {head!r}")
        if spatial_mixer not in ("conv", "bra", "msda"):
            raise ValueError(f"spatial_mixer must be 'conv', 'bra' or 'msda', got {spatial_mixer!r}")
        unknown = set("".join(patterns)) - set(BLOCKS)
        if unknown:
            raise ValueError(f"unknown block codes {sorted(unknown)} in patterns; use {sorted(BLOCKS)}")
        ts = stem_temporal_kernel
        self.conv1 = nn.Conv3d(3, stem_width, (ts, 7, 7), (stem_temporal_stride, 2, 2), (0, 3, 3), bias=False)
        self.bn1 = nn.BatchNorm3d(stem_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)) if stem_pool else nn.Identity()
        sifa_args = dict(kernel_size=sifa_kernel, dilation=sifa_dilation, groups=sifa_groups,
                         normalize=sifa_normalize, sifa=sifa)

        def mixer(planes):
            heads = max(planes // mixer_head_dim, 1)
            if spatial_mixer == "bra":
                return BiLevelRoutingAttention(planes, heads, bra_n_win, planes, bra_topk)
            return MultiScaleDilatedAttention(planes, heads, msda_dilations)

        def stage(in_channels, n, planes, stride, pattern, number):
            blocks = []
            for b in range(n):
                code = pattern[b % len(pattern)]
                extra = sifa_args if code == "S" else {}
                if code == "G" and spatial_mixer != "conv" and number in mixer_stages:
                    extra = {"spatial_mixer": mixer(planes)}
                blocks.append(BLOCKS[code](in_channels, planes, stride if b == 0 else 1, **extra))
                in_channels = planes * C2DBottleneck.expansion
            return nn.Sequential(*blocks), in_channels

        channels = stem_width
        self.layer1, channels = stage(channels, layers[0], widths[0], strides[0], patterns[0], 1)
        self.layer2, channels = stage(channels, layers[1], widths[1], strides[1], patterns[1], 2)
        self.layer3, channels = stage(channels, layers[2], widths[2], strides[2], patterns[2], 3)
        self.layer4, out_channels = stage(channels, layers[3], widths[3], strides[3], patterns[3], 4)
        self.num_features = out_channels

        def make_head():
            if head == "pool":
                return PoolHead(out_channels, num_classes, dropout)
            return TemporalMeanConvHead(out_channels, num_classes, head_width, dropout)

        self.head = make_head()
        self.dual = dual
        if dual:
            self.layer4_dual, _ = stage(channels, layers[3], widths[3], dual_stride, patterns[3], 4)
            self.head_dual = make_head()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-normal (fan_out) convs, BN 1/0, zero last BN of every residual branch, zero
        offset convs (SIFA starts from the plain neighbourhood); linear layers keep their default."""
        for m in self.modules():
            if isinstance(m, (nn.Conv3d, nn.Conv2d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm3d, nn.BatchNorm2d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for m in self.modules():
            if isinstance(m, C2DBottleneck):
                nn.init.zeros_(m.bn3.weight)
            if isinstance(m, SIFABottleneck):
                nn.init.zeros_(m.conv_offset.weight)

    num_lr_layers = 6  # stem, four stages, heads: the depth scale of layer-wise lr decay

    def layer_id(self, param_name: str) -> int:
        """Depth of a parameter for layer-wise lr decay: 0 stem, 1-4 stages (``layer4_dual`` with
        layer4), 5 heads."""
        root = param_name.split(".")[0]
        if root.startswith("layer"):
            return int(root[len("layer")])
        return 5 if root.startswith("head") else 0

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(N, 3, T, H, W)`` -> last-stage features of the main and (or None) dual branch."""
        if x.ndim != 5:
            raise ValueError(f"expected a clip batch (N, 3, T, H, W), got shape {tuple(x.shape)}")
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer3(self.layer2(self.layer1(x)))
        main = self.layer4(x)
        if not self.dual:
            return main, None
        # Frame skipping: max over pairs of frames (a single frame is kept as it is).
        skipped = F.max_pool3d(x, (2, 1, 1), (2, 1, 1), ceil_mode=x.shape[2] < 2)
        return main, self.layer4_dual(skipped)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        main, dual = self.forward_features(x)
        if dual is None:
            return self.head(main)
        return self.head(main), self.head_dual(dual)


def _build(defaults: dict, num_classes: int, overrides: dict) -> C2DResNet:
    return C2DResNet(num_classes=num_classes, **{**defaults, **overrides})


# Stages at strides 4, 4, 8, 8 of a 64 px clip: SIFA runs on 16x16 and 8x8 maps, where a step of the
# motion benchmark's actor spans a cell or two (at strides 8/16 it is a fraction of one, and
# sifa_small does not learn direction in a few epochs).
SMALL = dict(layers=(1, 1, 1, 1), widths=(8, 16, 32, 64), stem_width=16, strides=(1, 1, 2, 1),
             head="spatial", head_width=64, dropout=0.0)
SIFA_NET = dict(patterns=("P", "GS", "GS", "GS"), dual=True, stem_temporal_kernel=4, stem_temporal_stride=4)


@register_model
def c2d_small(num_classes: int = 10, **overrides) -> C2DResNet:
    """Small order-blind C2D baseline for the motion benchmark (CPU-friendly, 64x64 input).

    The last stage has stride 8 (an 8x8 map at 64 px) and the spatial head sees the
    time-averaged map, so the motion's trail is visible but its direction is not.
    """
    return _build(SMALL, num_classes, overrides)


@register_model
def sifa_small(num_classes: int = 10, **overrides) -> C2DResNet:
    """``c2d_small`` plus SIFA blocks (layers 2 and 3), a global-context block (layer 4) and the
    dual frame-skipping branch. SIFA dilation 2: the attended 3x3 neighbourhood spans +-2 cells, the
    benchmark's per-step displacement at stride 4 (dilation 1 learns direction several epochs later)."""
    return _build({**SMALL, "patterns": ("P", "S", "S", "G"), "dual": True, "sifa_dilation": 2,
                   # model.spatial_mixer=bra|msda: layer4's GC block attends on its 8x8 map
                   "mixer_head_dim": 16, "bra_n_win": 4, "bra_topk": 4}, num_classes, overrides)


@register_model
def c2d_r50(num_classes: int = 400, **overrides) -> C2DResNet:
    """C2D ResNet-50 with SIFA-Net's stem (ts = 4): the baseline without SIFA/GC or dual branch."""
    return _build(dict(layers=(3, 4, 6, 3), stem_temporal_kernel=4, stem_temporal_stride=4), num_classes, overrides)


@register_model
def c2d_sifa_r50(num_classes: int = 400, **overrides) -> C2DResNet:
    """SIFA-Net ResNet-50 (official configuration: 43,040,928 trainable parameters at 400 classes)."""
    return _build({**SIFA_NET, "layers": (3, 4, 6, 3)}, num_classes, overrides)


@register_model
def c2d_sifa_r101(num_classes: int = 400, **overrides) -> C2DResNet:
    """SIFA-Net ResNet-101 (official configuration: 63,554,272 trainable parameters at 400 classes)."""
    return _build({**SIFA_NET, "layers": (3, 4, 23, 3)}, num_classes, overrides)
