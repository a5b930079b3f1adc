"""Slide-Swin image backbones (Pan et al., Slide-Transformer, CVPR 2023) with the official
configurations and state_dict names (``patch_embed``, ``layers.s.blocks.b``, ``layers.s.downsample``,
``norm``, ``head``), so the official ImageNet checkpoints load as they are.

Swin's macro design: a 4x4 stride-4 patch embedding + LayerNorm, four stages of pre-norm blocks
(Slide attention over each pixel's 3x3 neighbourhood in stages 1-2, attention over the whole map
with Swin's relative position bias in stages 3-4), patch merging between them. The official code
asserts 224x224 inputs; any size runs here (odd maps are padded before merging, the position bias
is resized for maps other than the 224-px one, see :class:`~video_sparse.layers.swin.RelativePositionAttention`).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from ..layers.block import ConvPatchEmbed, MixerBlock, Mlp
from ..layers.slide import SlideAttention
from ..layers.swin import PatchMerging, RelativePositionAttention
from .pyramid import PyramidBackbone, init_weights
from .specs import SlideSwinSpec


class SlideSwinStage(nn.Module):
    """``blocks``, then ``downsample`` (patch merging; none in the last stage), official names."""

    def __init__(self, blocks: list[nn.Module], downsample: nn.Module | None):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.downsample = downsample


class SlideSwin(PyramidBackbone):
    """Slide-Swin Transformer. The hyper-parameters are the fields of
    :class:`~video_sparse.models.specs.SlideSwinSpec`; ``num_classes`` 0 gives no classifier.
    Input ``(B, 3, H, W)``, any H, W; output logits ``(B, num_classes)``.
    """

    def __init__(self, spec: SlideSwinSpec, num_classes: int = 1000):
        super().__init__()
        dims = [spec.embed_dim * 2 ** i for i in range(4)]
        self.patch_embed = ConvPatchEmbed(3, dims[0], spec.patch_size)
        rates = torch.linspace(0, spec.drop_path_rate, sum(spec.depths)).tolist()
        self.layers = nn.ModuleList()
        for i, (dim, heads) in enumerate(zip(dims, spec.num_heads)):
            stride = spec.patch_size * math.prod(spec.merge_strides[:i])
            window = max(spec.img_size // stride, 1)  # the map an img_size input gives here

            def attention():
                if i < spec.slide_stages:
                    return SlideAttention(dim, heads, spec.kernel_size)
                return RelativePositionAttention(dim, heads, window)
            first = sum(spec.depths[:i])
            blocks = [MixerBlock(dim, attention(), Mlp(dim, int(dim * spec.mlp_ratio)), rates[first + j],
                                 pos_embed=spec.cpe, norm_eps=1e-5) for j in range(spec.depths[i])]
            merge = PatchMerging(dim, spec.merge_strides[i]) if i < 3 else None
            self.layers.append(SlideSwinStage(blocks, merge))
        self.norm = nn.LayerNorm(dims[-1])
        self.num_features = dims[-1]
        self.head = nn.Linear(dims[-1], num_classes) if num_classes > 0 else nn.Identity()
        self.apply(init_weights)

    def stage_parts(self) -> list[tuple[nn.Module, nn.ModuleList]]:
        """Per stage: the patch embedding or the previous stage's merging, and the stage's blocks."""
        into = [self.patch_embed] + [stage.downsample for stage in self.layers[:-1]]
        return [(down, stage.blocks) for down, stage in zip(into, self.layers)]

    def reparameterize(self) -> None:
        """Fold every Slide attention's fixed shift path into its learnable one (inference)."""
        for m in self.modules():
            if isinstance(m, SlideAttention):
                m.reparameterize()
