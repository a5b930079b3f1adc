"""PVT's spatial-reduction attention with the official names (``q``, ``kv``, ``proj``, ``sr``,
``norm``), used by DPT."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class SpatialReductionAttention(nn.Module):
    """Multi-head attention whose keys and values come from the map shrunk by ``sr_ratio``: a
    ``sr_ratio x sr_ratio`` stride-``sr_ratio`` conv (``sr``) and LayerNorm (``norm``); ``q`` and
    ``kv`` linear (bias), scale ``hd^-0.5``, ``proj``. Maps not divisible by ``sr_ratio`` are
    zero-padded at the bottom / right before the reduction (the official code drops the rest).

    :meth:`forward` takes a channels-last map ``(B, H, W, C)``; :meth:`tokens` the official
    token form ``(B, N, C)`` (with ``sr_ratio`` 1 the tokens may include PVT's class token).
    """

    def __init__(self, dim: int, num_heads: int, sr_ratio: int = 1):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} must be divisible by num_heads {num_heads}")
        self.num_heads, self.sr_ratio = num_heads, sr_ratio
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, sr_ratio, sr_ratio)
            self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        return self.tokens(x.reshape(B, H * W, C), H, W).reshape(B, H, W, C)

    def tokens(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        B, N, C = x.shape
        source = x
        if self.sr_ratio > 1:
            if N != H * W:
                raise ValueError(f"spatial reduction needs the {H}x{W} map's tokens only, got {N}")
            r = self.sr_ratio
            grid = x.transpose(1, 2).reshape(B, C, H, W)
            grid = F.pad(grid, (0, math.ceil(W / r) * r - W, 0, math.ceil(H / r) * r - H))
            source = self.norm(self.sr(grid).flatten(2).transpose(1, 2))
        q = self.q(x).reshape(B, N, self.num_heads, -1).transpose(1, 2)
        k, v = self.kv(source).reshape(B, source.shape[1], 2, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)  # scale hd^-0.5
        return self.proj(out.transpose(1, 2).reshape(B, N, C))

