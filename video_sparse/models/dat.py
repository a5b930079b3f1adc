"""DAT image backbones (Xia et al., Vision Transformer with Deformable Attention, CVPR 2022; the
CVPR version of the official code) with the official configurations and state_dict names
(``patch_proj``, ``stages.s.{layer_norms, attns, mlps}``, ``down_projs``, ``cls_norm``,
``cls_head``), so the official ImageNet checkpoints load as they are.

A 4x4 stride-4 patch embedding, four stages of pre-norm blocks whose attention is Swin's local
(L) or shifted (S) window attention or DAT's deformable attention (D; DAT-T: L, S in stages 1-2,
alternating L and D in stages 3-4), 2x2 stride-2 convolutions between them. The official model
runs only at 224 px (its windows need maps divisible by 7, its position tables the 224-px maps);
any size runs here (see :mod:`video_sparse.layers.dat`).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..layers.dat import DATStage, DeformableAttention, LayerNorm2d, WindowAttention
from .pyramid import PyramidBackbone, init_weights
from .specs import DATSpec


class ConvNorm(nn.Sequential):
    """Convolutions with :class:`LayerNorm2d` (official ``patch_proj`` / ``down_projs``: ``0`` a
    convolution, ``1`` its norm, more layers after them with ``conv_patches``); the map is
    zero-padded at the bottom / right so that the first convolution covers all of it
    (``ceil(H / stride)`` outputs)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self[0]
        (k, _), (s, _), (p, _) = conv.kernel_size, conv.stride, conv.padding
        pad = [max((math.ceil(n / s) - 1) * s + k - 2 * p - n, 0) for n in (x.shape[-1], x.shape[-2])]
        return super().forward(F.pad(x, (0, pad[0], 0, pad[1])))


class DAT(PyramidBackbone):
    """DAT. The hyper-parameters are the fields of :class:`~video_sparse.models.specs.DATSpec`;
    ``num_classes`` 0 gives no classifier. Input ``(B, 3, H, W)``, any H, W; output logits
    ``(B, num_classes)``."""

    def __init__(self, spec: DATSpec, num_classes: int = 1000):
        super().__init__()
        kinds = "".join(spec.stage_spec)
        if len(spec.stage_spec) != 4 or not kinds or set(kinds) - set("LSD"):
            raise ValueError(f"stage_spec must give 4 stages of blocks L, S or D, got {list(spec.stage_spec)}")
        dims = [spec.embed_dim * 2 ** i for i in range(4)]
        if spec.conv_patches:  # two overlapping 3x3 convs of half the patch's stride each
            half = dims[0] // 2
            self.patch_proj = ConvNorm(nn.Conv2d(3, half, 3, spec.patch_size // 2, 1), LayerNorm2d(half), nn.GELU(),
                                       nn.Conv2d(half, dims[0], 3, spec.patch_size // 2, 1), LayerNorm2d(dims[0]))
        else:
            self.patch_proj = ConvNorm(nn.Conv2d(3, dims[0], spec.patch_size, spec.patch_size), LayerNorm2d(dims[0]))
        rates = torch.linspace(0, spec.drop_path_rate, len(kinds)).tolist()
        self.stages = nn.ModuleList()
        for i, (dim, heads, blocks) in enumerate(zip(dims, spec.num_heads, spec.stage_spec)):
            stride = spec.patch_size * math.prod(spec.merge_strides[:i])
            map_size = max(spec.img_size // stride, 1)  # the map an img_size input gives here

            def attention(kind: str) -> nn.Module:
                if kind == "D":
                    return DeformableAttention(dim, heads, spec.groups[i], map_size, spec.offset_range_factor,
                                               spec.offset_kernel[i])
                shift = math.ceil(spec.window_size / 2) if kind == "S" else 0
                return WindowAttention(dim, heads, spec.window_size, shift, map_size)
            first = len("".join(spec.stage_spec[:i]))
            self.stages.append(DATStage(dim, [attention(k) for k in blocks], spec.mlp_ratio,
                                        rates[first:first + len(blocks)], spec.lpu))
        kernel, padding = (3, 1) if spec.conv_patches else (2, 0)
        self.down_projs = nn.ModuleList(
            ConvNorm(nn.Conv2d(dims[i], dims[i + 1], kernel, spec.merge_strides[i], padding, bias=False),
                     LayerNorm2d(dims[i + 1]))
            for i in range(3))
        self.cls_norm = LayerNorm2d(dims[-1])
        self.num_features = dims[-1]
        self.cls_head = nn.Linear(dims[-1], num_classes) if num_classes > 0 else nn.Identity()
        self.apply(init_weights)

    @property
    def norm(self) -> nn.Module:
        """The final norm (official name ``cls_norm``)."""
        return self.cls_norm

    @property
    def head(self) -> nn.Module:
        """The classifier (official name ``cls_head``)."""
        return self.cls_head

    def stage_parts(self) -> list[tuple[nn.Module, nn.Module]]:
        """Per stage: the patch embedding or the down-projection into it, and its blocks."""
        return list(zip([self.patch_proj, *self.down_projs], self.stages))
