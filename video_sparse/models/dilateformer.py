"""DilateFormer image backbones (Jiao et al., IEEE TMM 2023) with the official configurations and
state_dict names (``patch_embed.proj``, ``stages.i.blocks.j``, ``stages.i.downsample``, ``norm``,
``head``), so the official ImageNet checkpoints load as they are.

Overlapping patch embedding (four 3x3 convs, stride 4 in all), then four stages of
:class:`~video_sparse.layers.block.MixerBlock` — multi-scale dilated attention in the first two,
global attention in the last two — each stage but the last ending in a stride-2 3x3 conv + BN
(``conv3_2`` merging). Unlike the official code, any input size works.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..layers.block import GlobalAttention, MixerBlock, Mlp
from ..layers.dilate import MultiScaleDilatedAttention
from .pyramid import PyramidBackbone, init_weights
from .specs import DilateFormerSpec


class DilateStage(nn.Module):
    """``blocks``, then ``downsample`` (identity for the last stage), named as the official ones."""

    def __init__(self, blocks: list[nn.Module], downsample: nn.Module):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.downsample = downsample


class DilateFormer(PyramidBackbone):
    """DilateFormer.

    The hyper-parameters are the fields of :class:`~video_sparse.models.specs.DilateFormerSpec`;
    ``num_classes`` 0 gives no classifier (``head`` is the identity).
    Input ``(B, 3, H, W)``; output logits ``(B, num_classes)``.
    """

    def __init__(self, spec: DilateFormerSpec, num_classes: int = 1000):
        super().__init__()
        embed_dim, depths = spec.embed_dim, spec.depths
        hidden = spec.stem_width
        layers = []
        for i, (c_in, c_out, stride) in enumerate([(3, hidden, 1), (hidden, 2 * hidden, 2),
                                                   (2 * hidden, 4 * hidden, 1), (4 * hidden, embed_dim, 2)]):
            layers.append(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False))
            if i < 3:
                layers += [nn.BatchNorm2d(c_out), nn.GELU()]
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Sequential(*layers)
        rates = torch.linspace(0, spec.drop_path_rate, sum(depths)).tolist()
        self.stages = nn.ModuleList()
        for i, (n, heads, dilate) in enumerate(zip(depths, spec.num_heads, spec.dilate_attention)):
            dim = embed_dim * 2 ** i

            def attention():
                if dilate:
                    return MultiScaleDilatedAttention(dim, heads, spec.dilations, spec.kernel_size, qkv_bias=True)
                return GlobalAttention(dim, heads, qkv_bias=True)
            first = sum(depths[:i])
            blocks = [MixerBlock(dim, attention(), Mlp(dim, int(dim * spec.mlp_ratio)), rates[first + j])
                      for j in range(n)]
            last = i == len(depths) - 1
            merge = nn.Identity() if last else nn.Module()
            if not last:
                merge.proj = nn.Sequential(nn.Conv2d(dim, 2 * dim, 3, spec.merge_strides[i], 1), nn.BatchNorm2d(2 * dim))
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
