"""Swin's pieces used by Slide-Swin: attention with a relative position bias over a whole map, and
patch merging (official names: ``relative_position_bias_table``, ``relative_position_index``,
``qkv``, ``proj``; ``reduction``, ``norm``)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.init import trunc_normal_


def relative_position_index(h: int, w: int) -> torch.Tensor:
    """``(h w, h w)``: index into a ``(2h - 1) x (2w - 1)`` table of the offset between two pixels."""
    coords = torch.stack(torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)
    return (rel[..., 0] + h - 1) * (2 * w - 1) + rel[..., 1] + w - 1


class RelativePositionAttention(nn.Module):
    """Multi-head attention over every pixel of the map plus Swin's relative position bias (Swin's
    ``(3, heads, hd)`` qkv layout; scale ``hd^-0.5``).

    The bias table is learnt for a ``window x window`` map (the official model: the map at 224 px,
    ``relative_position_index`` a buffer of that size). At another size ``H x W`` the table is
    resized bicubically to ``(2H - 1) x (2W - 1)`` (as Swin V2 / timm do to fine-tune at another
    resolution) and indexed for that map. Input/output ``(B, H, W, dim)``.
    """

    def __init__(self, dim: int, num_heads: int, window: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} must be divisible by num_heads {num_heads}")
        self.num_heads, self.window = num_heads, window
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(window, window))
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        trunc_normal_(self.relative_position_bias_table, std=0.02)

    def position_bias(self, H: int, W: int) -> torch.Tensor:
        """``(heads, H W, H W)``."""
        table, index = self.relative_position_bias_table, self.relative_position_index
        if (H, W) != (self.window, self.window):
            side = 2 * self.window - 1
            grid = table.t().reshape(1, self.num_heads, side, side)
            table = F.interpolate(grid, size=(2 * H - 1, 2 * W - 1), mode="bicubic", align_corners=False)
            table = table.reshape(self.num_heads, -1).t()
            index = relative_position_index(H, W).to(table.device)
        return table[index.reshape(-1)].reshape(H * W, H * W, self.num_heads).permute(2, 0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        qkv = self.qkv(x).reshape(B, H * W, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        bias = self.position_bias(H, W).to(qkv.dtype)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=bias)  # scale hd^-0.5
        return self.proj(out.transpose(1, 2).reshape(B, H, W, C))


class PatchMerging(nn.Module):
    """Swin's patch merging of a ``(B, C, H, W)`` map: the 2x2 neighbours side by side (order
    (0,0), (1,0), (0,1), (1,1)), LayerNorm over 4C, ``reduction`` 4C -> 2C (no bias). Odd sizes
    are zero-padded at the bottom / right.

    ``stride`` 1 keeps the resolution: every pixel's 2x2 neighbourhood (the map zero-padded by one
    at the bottom / right), same parameters, so small models can widen without shrinking a map
    that is already small (the official models use 2)."""

    def __init__(self, dim: int, stride: int = 2):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"patch merging stride must be 1 or 2, got {stride}")
        self.stride = stride
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        H, W = x.shape[-2:]
        if self.stride == 2:
            x = F.pad(x, (0, W % 2, 0, H % 2)).permute(0, 2, 3, 1)
            parts = [x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]]
        else:
            x = F.pad(x, (0, 1, 0, 1)).permute(0, 2, 3, 1)
            parts = [x[:, :H, :W], x[:, 1:, :W], x[:, :H, 1:], x[:, 1:, 1:]]
        return self.reduction(self.norm(torch.cat(parts, dim=-1))).permute(0, 3, 1, 2)
