"""BiFormer image backbones (Zhu et al., CVPR 2023) with the official configurations and
state_dict names (``downsample_layers``, ``stages.i.j``, ``norm``, ``head``), so the official
ImageNet checkpoints load as they are.

Stage ``i`` = ``downsample_layers[i]`` (stem: two stride-2 3x3 convs; then a stride-2 3x3 conv,
each with BN) followed by ``stages[i]`` of :class:`~video_sparse.layers.block.MixerBlock` whose
attention is BRA (``topk > 0``) or, for ``topk = -2`` (the last stage), global attention with
8 heads and LePE on its input.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from ..layers.biformer import BiLevelRoutingAttention
from ..layers.block import GlobalAttention, MixerBlock
from .pyramid import PyramidBackbone, init_weights
from .registry import register_model

# Official ImageNet-1k checkpoints (models/biformer.py of rayleizhu/BiFormer); load with
# model.pretrained=<downloaded file> (torch.hub file names: <key>.pth).
PRETRAINED_URLS = {
    "biformer_tiny": "https://matix.li/e36fe9fb086c",
    "biformer_small": "https://matix.li/5bb436318902",
    "biformer_base": "https://matix.li/995db75f585d",
}


class BiFormer(PyramidBackbone):
    """BiFormer: four stages of pre-norm blocks with bi-level routing attention.

    Args:
        depth: blocks per stage. embed_dim: channels per stage. mlp_ratio: MLP width / channels.
        n_win: routing regions per side. topks: regions kept per stage (-2: global attention).
        head_dim: channels per head of BRA (heads = qk_dim / head_dim). side_dwconv: LePE kernel.
        downsample_strides: of the convs into stages 2-4 (official: 2, 2, 2).
        drop_path_rate: stochastic depth, linear from 0 over all blocks.
        num_classes: 0 gives no classifier (``head`` is the identity).
    Input ``(B, 3, H, W)``, any H, W; output logits ``(B, num_classes)``.
    """

    def __init__(self, depth: Sequence[int] = (2, 2, 8, 2), embed_dim: Sequence[int] = (64, 128, 256, 512),
                 mlp_ratio: float = 3, n_win: int = 7, topks: Sequence[int] = (1, 4, 16, -2), head_dim: int = 32,
                 side_dwconv: int = 5, downsample_strides: Sequence[int] = (2, 2, 2), drop_path_rate: float = 0.0,
                 num_classes: int = 1000):
        super().__init__()
        stem = nn.Sequential(
            nn.Conv2d(3, embed_dim[0] // 2, 3, 2, 1), nn.BatchNorm2d(embed_dim[0] // 2), nn.GELU(),
            nn.Conv2d(embed_dim[0] // 2, embed_dim[0], 3, 2, 1), nn.BatchNorm2d(embed_dim[0]))
        self.downsample_layers = nn.ModuleList([stem] + [
            nn.Sequential(nn.Conv2d(embed_dim[i], embed_dim[i + 1], 3, downsample_strides[i], 1),
                          nn.BatchNorm2d(embed_dim[i + 1]))
            for i in range(3)])
        rates = torch.linspace(0, drop_path_rate, sum(depth)).tolist()
        self.stages = nn.ModuleList()
        for i, (n, dim, topk) in enumerate(zip(depth, embed_dim, topks)):
            def attention():
                if topk > 0:
                    return BiLevelRoutingAttention(dim, dim // head_dim, n_win, dim, topk, side_dwconv)
                if topk == -2:
                    return GlobalAttention(dim, num_heads=8, side_dwconv=side_dwconv)
                raise ValueError(f"topks[{i}] = {topk}: use a positive number of regions or -2 (global attention)")
            hidden = int(mlp_ratio * dim)
            mlp = lambda: nn.Sequential(nn.Linear(dim, hidden), nn.Identity(), nn.GELU(), nn.Linear(hidden, dim))  # noqa: E731
            first = sum(depth[:i])
            self.stages.append(nn.Sequential(*[MixerBlock(dim, attention(), mlp(), rates[first + j]) for j in range(n)]))
        self.norm = nn.BatchNorm2d(embed_dim[-1])
        self.num_features = embed_dim[-1]
        self.head = nn.Linear(embed_dim[-1], num_classes) if num_classes > 0 else nn.Identity()
        self.apply(init_weights)

    def stage_parts(self) -> list[tuple[nn.Module, nn.Sequential]]:
        """Per stage: the module that brings the map to its resolution, and the stage's blocks."""
        return list(zip(self.downsample_layers, self.stages))

    def final_norm(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x)


BIFORMER_CONFIGS = {
    "tiny": dict(depth=(2, 2, 8, 2), embed_dim=(64, 128, 256, 512)),
    "small": dict(depth=(4, 4, 18, 4), embed_dim=(64, 128, 256, 512)),
    "base": dict(depth=(4, 4, 18, 4), embed_dim=(96, 192, 384, 768)),
}


@register_model
def biformer_tiny(num_classes: int = 1000, **overrides) -> BiFormer:
    """BiFormer-T (13.14 M parameters at 1000 classes)."""
    return BiFormer(**{**BIFORMER_CONFIGS["tiny"], **overrides}, num_classes=num_classes)


@register_model
def biformer_small(num_classes: int = 1000, **overrides) -> BiFormer:
    """BiFormer-S (25.54 M parameters at 1000 classes)."""
    return BiFormer(**{**BIFORMER_CONFIGS["small"], **overrides}, num_classes=num_classes)


@register_model
def biformer_base(num_classes: int = 1000, **overrides) -> BiFormer:
    """BiFormer-B (56.80 M parameters at 1000 classes)."""
    return BiFormer(**{**BIFORMER_CONFIGS["base"], **overrides}, num_classes=num_classes)
