"""DilateFormer's multi-scale dilated attention (MSDA) module."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from ..ops.dilated_attention import dilated_attention


class MultiScaleDilatedAttention(nn.Module):
    """Multi-scale dilated attention (Jiao et al., IEEE TMM 2023), official semantics.

    ``qkv`` is a 1x1 conv ``C -> 3C`` ([q | k | v]); the channels (and heads) of each are split into
    ``len(dilations)`` contiguous groups, group ``i`` attending to the ``kernel_size^2``
    neighbourhood at dilation ``dilations[i]`` (zero-padded neighbours keep logit 0, see
    :func:`~video_sparse.ops.dilated_attention.dilated_attention`); the groups are concatenated in
    order and projected by ``proj``. Input/output ``(B, H, W, C)``.
    """

    def __init__(self, dim: int, num_heads: int = 8, dilations: Sequence[int] = (1, 2, 3), kernel_size: int = 3,
                 qkv_bias: bool = True):
        super().__init__()
        groups = len(dilations)
        if num_heads % groups or dim % num_heads:
            raise ValueError(f"num_heads {num_heads} must be a multiple of the {groups} dilations and divide "
                             f"dim {dim}")
        self.num_heads, self.dilations, self.kernel_size = num_heads, tuple(dilations), kernel_size
        self.qkv = nn.Conv2d(dim, 3 * dim, 1, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        groups, heads = len(self.dilations), self.num_heads // len(self.dilations)
        # the 1x1 conv as one GEMM over channels-last tokens (faster than the conv, same numbers)
        qkv = F.linear(x, self.qkv.weight.flatten(1), self.qkv.bias).permute(0, 3, 1, 2).contiguous()
        # [q | k | v], each [group 0 | group 1 | ...]; chunk (not indexing) so that backward
        # concatenates the gradients once instead of zero-filling a full-size buffer per piece
        pieces = [t.unflatten(1, (heads, -1)) for t in qkv.chunk(3 * groups, dim=1)]
        out = torch.cat([dilated_attention(pieces[i], pieces[groups + i], pieces[2 * groups + i], r, self.kernel_size)
                         for i, r in enumerate(self.dilations)], dim=1)
        return self.proj(rearrange(out, "b m d h w -> b h w (m d)"))
