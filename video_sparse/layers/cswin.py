"""CSWin's cross-shaped window attention (Dong et al., CVPR 2022) and its block, with the official
parameter names (``qkv``, ``attns.i.get_v``, ``proj`` at block level)."""
from __future__ import annotations

import torch
import torch.nn as nn
from torchvision.ops import StochasticDepth

from ..ops.stripe_attention import stripe_attention
from .block import Mlp


class StripeLePE(nn.Module):
    """One branch's LePE: the depthwise 3x3 conv of V inside each stripe (official ``get_v``)."""

    def __init__(self, dim: int):
        super().__init__()
        self.get_v = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)


class CrossShapedWindowAttention(nn.Module):
    """``qkv`` -> channels ``[0, C/2)`` with half the heads attend within vertical stripes
    (whole height x ``split_size``), ``[C/2, C)`` with the other half within horizontal stripes
    (``split_size`` x whole width), each plus its in-stripe LePE -> concatenated -> ``proj``.
    ``full``: one branch of full attention over the map (CSWin's last stage).
    Any H, W (see :mod:`video_sparse.ops.stripe_attention` for the padding policy).
    Input/output ``(B, H, W, dim)``.
    """

    def __init__(self, dim: int, num_heads: int, split_size: int, full: bool = False):
        super().__init__()
        branches = 1 if full else 2
        if num_heads % branches or dim % num_heads:
            raise ValueError(f"dim {dim} must split into num_heads {num_heads} heads, and the heads evenly into "
                             f"{branches} branch(es)")
        self.num_heads, self.split_size, self.full = num_heads, split_size, full
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.attns = nn.ModuleList(StripeLePE(dim // branches) for _ in range(branches))

    def mix(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        if self.full:
            lepe = self.attns[0].get_v
            return self.proj(stripe_attention(q, k, v, None, None, self.num_heads, self.scale, lepe.weight, lepe.bias))
        half, heads, sw = x.shape[-1] // 2, self.num_heads // 2, self.split_size
        outs = []
        for branch, window, part in ((0, (None, sw), slice(None, half)), (1, (sw, None), slice(half, None))):
            lepe = self.attns[branch].get_v
            outs.append(stripe_attention(q[..., part], k[..., part], v[..., part], *window, heads, self.scale,
                                         lepe.weight, lepe.bias))
        return self.proj(torch.cat(outs, dim=-1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mix(x)


class CSWinBlock(CrossShapedWindowAttention):
    """``x += proj(attn(LN(x)))``; ``x += mlp(LN(x))`` (official ``CSWinBlock``, whose attention
    parameters sit at block level, hence a subclass of the attention). ``temporal`` (None; set by
    video models) runs between the two on the channels-last stream: ``x = temporal(x, frames)``.
    Input and output ``(B, C, H, W)`` with ``B`` = clips x frames.
    """

    def __init__(self, dim: int, num_heads: int, split_size: int, mlp_ratio: float = 4.0, drop_path: float = 0.0,
                 full: bool = False):
        super().__init__(dim, num_heads, split_size, full)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = StochasticDepth(drop_path, "row") if drop_path > 0 else nn.Identity()
        self.temporal: nn.Module | None = None

    def forward(self, x: torch.Tensor, frames: int = 1) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = x + self.drop_path(self.mix(self.norm1(x)))
        if self.temporal is not None:
            x = self.temporal(x, frames)
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x.permute(0, 3, 1, 2)
