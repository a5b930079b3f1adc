"""C2D ResNets: 2D ResNets applied to every frame, optionally with SIFA and global-context blocks
and SIFA-Net's dual frame-skipping branch.

Layer names follow torchvision's ResNet and the official SIFA-Net (``conv1``, ``bn1``,
``layer1``..``layer4``, ``layer4_dual``, per-block ``conv_offset``, ``fc1``/``fc2``); classifiers
live in ``head`` / ``head_dual`` (``head.fc``), see ``models/weights.py`` for the key mapping. The
named configurations (``c2d_small``, ``sifa_small``, ``c2d_sifa_r50``, ...) are in ``models/zoo.py``.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..layers.biformer import BiLevelRoutingAttention
from ..layers.bottleneck import C2DBottleneck, GCBottleneck
from ..layers.cswin import CrossShapedWindowAttention
from ..layers.dilate import MultiScaleDilatedAttention
from ..layers.frame_skip import skip_frames
from ..layers.heads import build_head
from ..layers.sifa import SIFABottleneck
from ..layers.slide import SlideAttention
from ..layers.temporal_msdeform import MSDeformBottleneck
from .contract import VideoModel
from .specs import C2DResNetSpec

# Block codes in a stage pattern, cycled over the stage's blocks ("GS": G, S, G, S, ...); S is the
# MSDeformBottleneck instead with temporal_mixer=msdeform.
BLOCKS = {"P": C2DBottleneck, "G": GCBottleneck, "S": SIFABottleneck}


class C2DResNet(VideoModel):
    """Stem ``Conv3d(3, w, (ts, 7, 7), stride (ts, 2, 2))`` -> BN -> ReLU -> 1x3x3 max-pool, four
    stages of bottlenecks, an order-blind head; with ``dual``, a frame-skipping branch
    (layer3 -> max-pool over pairs of frames -> ``layer4_dual`` -> its own head).

    The hyper-parameters are the fields of :class:`~video_sparse.models.specs.C2DResNetSpec`
    (block patterns, stem, strides, the inter-frame operator of the S blocks, the spatial mixer of
    the GC blocks, head).
    A GC block of ``mixer_stages`` with ``spatial_mixer`` bra or msda attends per frame; a strided
    one pools 2x2 after it.
    Input ``(N, 3, T, H, W)``; output logits ``(N, num_classes)``, or ``(main, dual)`` with ``dual``.
    """

    def __init__(self, spec: C2DResNetSpec, num_classes: int = 400):
        super().__init__()
        unknown = set("".join(spec.patterns)) - set(BLOCKS)
        if unknown:
            raise ValueError(f"unknown block codes {sorted(unknown)} in patterns; use {sorted(BLOCKS)}")
        for key in ("layers", "widths", "patterns", "strides"):
            if len(getattr(spec, key)) != 4:
                raise ValueError(f"{key} needs one entry per stage (4), got {list(getattr(spec, key))}")
        ts = spec.stem_temporal_kernel
        self.conv1 = nn.Conv3d(3, spec.stem_width, (ts, 7, 7), (spec.stem_temporal_stride, 2, 2), (0, 3, 3),
                               bias=False)
        self.bn1 = nn.BatchNorm3d(spec.stem_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)) if spec.stem_pool else nn.Identity()
        sifa_args = dict(kernel_size=spec.sifa_kernel, dilation=spec.sifa_dilation, groups=spec.sifa_groups,
                         normalize=spec.sifa_normalize, sifa=spec.temporal)
        msdeform_args = dict(head_dim=spec.msdeform_head_dim, n_points=spec.msdeform_points,
                             window=spec.temporal_window, offsets_from=spec.msdeform_offsets, enabled=spec.temporal)

        def mixer(planes):
            heads = max(planes // spec.mixer_head_dim, 1)
            if spec.spatial_mixer == "bra":
                return BiLevelRoutingAttention(planes, heads, spec.bra_n_win, planes, spec.bra_topk)
            if spec.spatial_mixer == "cswin":
                return CrossShapedWindowAttention(planes, heads, spec.cswin_split)
            if spec.spatial_mixer == "slide":
                return SlideAttention(planes, heads)
            return MultiScaleDilatedAttention(planes, heads, spec.msda_dilations)

        def stage(in_channels, number, stride):
            blocks, pattern = [], spec.patterns[number - 1]
            planes = spec.widths[number - 1]
            for b in range(spec.layers[number - 1]):
                code = pattern[b % len(pattern)]
                block = BLOCKS[code]
                extra = sifa_args if code == "S" else {}
                if code == "S" and spec.temporal_mixer == "msdeform":
                    block, extra = MSDeformBottleneck, msdeform_args
                if code == "G" and spec.spatial_mixer != "conv" and number in spec.mixer_stages:
                    extra = {"spatial_mixer": mixer(planes)}
                blocks.append(block(in_channels, planes, stride if b == 0 else 1, **extra))
                in_channels = planes * C2DBottleneck.expansion
            return nn.Sequential(*blocks), in_channels

        channels = spec.stem_width
        self.layer1, channels = stage(channels, 1, spec.strides[0])
        self.layer2, channels = stage(channels, 2, spec.strides[1])
        self.layer3, channels = stage(channels, 3, spec.strides[2])
        self.layer4, out_channels = stage(channels, 4, spec.strides[3])
        self.num_features = out_channels
        self.head = build_head(spec.head, out_channels, num_classes, spec.head_width, spec.dropout)
        self.dual = spec.dual
        if spec.dual:
            self.layer4_dual, _ = stage(channels, 4, spec.dual_stride)
            self.head_dual = build_head(spec.head, out_channels, num_classes, spec.head_width, spec.dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-normal (fan_out) convs, BN 1/0, zero last BN of every residual branch, zero
        offset convs (SIFA starts from the plain neighbourhood), Deformable DETR's initialisation for
        MSDeformAttn; other linear layers keep their default."""
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
            if isinstance(m, MSDeformBottleneck):
                m.temporal.reset_parameters()

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
        return main, self.layer4_dual(skip_frames(x)) if self.dual else None

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        main, dual = self.forward_features(x)
        if dual is None:
            return self.head(main)
        return self.head(main), self.head_dual(dual)
