"""BiFormer's bi-level routing attention (BRA) module, legacy (checkpoint-compatible) names."""
from __future__ import annotations

import torch
import torch.nn as nn

from ..ops.routing_attention import bi_level_routing_attention


class QKVLinear(nn.Module):
    """One linear ``dim -> [q (qk_dim) | k (qk_dim) | v (dim)]``; the nesting keeps the official
    parameter name ``attn.qkv.qkv``."""

    def __init__(self, dim: int, qk_dim: int):
        super().__init__()
        self.qk_dim = qk_dim
        self.qkv = nn.Linear(dim, 2 * qk_dim + dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.qkv(x).split([self.qk_dim, self.qk_dim, x.shape[-1]], dim=-1)


class BiLevelRoutingAttention(nn.Module):
    """Bi-level routing attention (Zhu et al., CVPR 2023), BiFormer's legacy semantics.

    q, k, v from one projection; every query region of the ``n_win x n_win`` grid attends to the
    tokens of its ``topk`` routed regions (routing by region means, shared by all heads, no
    gradient; routing and token logits both scaled by ``qk_dim ** -0.5``, the official constant);
    plus LePE (depthwise ``side_dwconv`` conv of V over the whole map), then ``wo``.
    Any H, W: see :mod:`video_sparse.ops.routing_attention` for the padding policy (padded keys
    masked, unlike the official unmasked ``auto_pad``).

    Input/output ``(B, H, W, dim)``.
    """

    def __init__(self, dim: int, num_heads: int = 8, n_win: int = 7, qk_dim: int | None = None, topk: int = 4,
                 side_dwconv: int = 5):
        super().__init__()
        qk_dim = qk_dim or dim
        if qk_dim % num_heads or dim % num_heads:
            raise ValueError(f"qk_dim {qk_dim} and dim {dim} must be divisible by num_heads {num_heads}")
        self.num_heads, self.n_win, self.topk = num_heads, n_win, topk
        self.scale = qk_dim ** -0.5
        self.qkv = QKVLinear(dim, qk_dim)
        self.lepe = nn.Conv2d(dim, dim, side_dwconv, padding=side_dwconv // 2, groups=dim)
        self.wo = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x)
        out = bi_level_routing_attention(q, k, v, self.n_win, self.topk, self.num_heads, self.scale)
        lepe = self.lepe(v.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return self.wo(out + lepe)
