"""DilateFormer image backbones (Jiao et al., IEEE TMM 2023) with the official configurations and
state_dict names (``patch_embed.proj``, ``stages.i.blocks.j``, ``stages.i.downsample``, ``norm``,
``head``), so the official ImageNet checkpoints load as they are.

Overlapping patch embedding (four 3x3 convs, stride 4 in all), then four stages of
:class:`~video_sparse.layers.block.MixerBlock` — multi-scale dilated attention in the first two,
global attention in the last two — each stage but the last ending in a stride-2 3x3 conv + BN
(``conv3_2`` merging). Unlike the official code, any input size works.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from ..layers.block import GlobalAttention, MixerBlock, Mlp
from ..layers.dilate import MultiScaleDilatedAttention
from .pyramid import PyramidBackbone, init_weights
from .registry import register_model


class DilateStage(nn.Module):
    """``blocks``, then ``downsample`` (identity for the last stage), named as the official ones."""

    def __init__(self, blocks: list[nn.Module], downsample: nn.Module):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.downsample = downsample


class DilateFormer(PyramidBackbone):
    """DilateFormer.

    Args:
        embed_dim: channels of stage 1 (doubled per stage). depths: blocks per stage.
        num_heads: per stage. dilations, kernel_size: of MSDA. dilate_attention: per stage, MSDA
            (True) or global attention (False). mlp_ratio: MLP width / channels.
        merge_strides: of the merging convs after stages 1-3 (official: 2, 2, 2).
        stem_width: of the first patch-embedding conv (then 2x, 4x; official: 16).
        drop_path_rate: stochastic depth, linear from 0 over all blocks.
        num_classes: 0 gives no classifier (``head`` is the identity).
    Input ``(B, 3, H, W)``; output logits ``(B, num_classes)``.
    """

    def __init__(self, embed_dim: int = 72, depths: Sequence[int] = (2, 2, 6, 2),
                 num_heads: Sequence[int] = (3, 6, 12, 24), dilations: Sequence[int] = (1, 2, 3), kernel_size: int = 3,
                 dilate_attention: Sequence[bool] = (True, True, False, False), mlp_ratio: float = 4.0,
                 merge_strides: Sequence[int] = (2, 2, 2), stem_width: int = 16, drop_path_rate: float = 0.1,
                 num_classes: int = 1000):
        super().__init__()
        hidden = stem_width
        layers = []
        for i, (c_in, c_out, stride) in enumerate([(3, hidden, 1), (hidden, 2 * hidden, 2),
                                                   (2 * hidden, 4 * hidden, 1), (4 * hidden, embed_dim, 2)]):
            layers.append(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False))
            if i < 3:
                layers += [nn.BatchNorm2d(c_out), nn.GELU()]
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Sequential(*layers)
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        self.stages = nn.ModuleList()
        for i, (n, heads, dilate) in enumerate(zip(depths, num_heads, dilate_attention)):
            dim = embed_dim * 2 ** i

            def attention():
                if dilate:
                    return MultiScaleDilatedAttention(dim, heads, dilations, kernel_size, qkv_bias=True)
                return GlobalAttention(dim, heads, qkv_bias=True)
            first = sum(depths[:i])
            blocks = [MixerBlock(dim, attention(), Mlp(dim, int(dim * mlp_ratio)), rates[first + j]) for j in range(n)]
            last = i == len(depths) - 1
            merge = nn.Identity() if last else nn.Module()
            if not last:
                merge.proj = nn.Sequential(nn.Conv2d(dim, 2 * dim, 3, merge_strides[i], 1), nn.BatchNorm2d(2 * dim))
            self.stages.append(DilateStage(blocks, merge))
        self.num_features = embed_dim * 2 ** (len(depths) - 1)
        self.norm = nn.LayerNorm(self.num_features, eps=1e-6)
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self.apply(init_weights)

    def stage_parts(self) -> list[tuple[nn.Module, nn.ModuleList]]:
        """Per stage: the module that brings the map to its resolution (patch embedding, then the
        previous stage's merging), and the stage's blocks."""
        into = [self.patch_embed.proj] + [stage.downsample.proj for stage in self.stages[:-1]]
        return [(down, stage.blocks) for down, stage in zip(into, self.stages)]

    def final_norm(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


DILATEFORMER_CONFIGS = {
    "tiny": dict(embed_dim=72, depths=(2, 2, 6, 2)),
    "small": dict(embed_dim=72, depths=(3, 5, 8, 3)),
    "base": dict(embed_dim=96, depths=(4, 8, 10, 3)),
}


@register_model
def dilateformer_tiny(num_classes: int = 1000, **overrides) -> DilateFormer:
    """DilateFormer-T (17.24 M parameters at 1000 classes)."""
    return DilateFormer(**{**DILATEFORMER_CONFIGS["tiny"], **overrides}, num_classes=num_classes)


@register_model
def dilateformer_small(num_classes: int = 1000, **overrides) -> DilateFormer:
    """DilateFormer-S (24.06 M parameters at 1000 classes)."""
    return DilateFormer(**{**DILATEFORMER_CONFIGS["small"], **overrides}, num_classes=num_classes)


@register_model
def dilateformer_base(num_classes: int = 1000, **overrides) -> DilateFormer:
    """DilateFormer-B (47.43 M parameters at 1000 classes)."""
    return DilateFormer(**{**DILATEFORMER_CONFIGS["base"], **overrides}, num_classes=num_classes)
