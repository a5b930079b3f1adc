"""DAT's layers with the official names (CVPR version): deformable multi-head attention
(``conv_offset``, ``proj_q/k/v/out``, ``rpe_table``), Swin's local and shifted-window attention
(``proj_qkv``, ``proj_out``, ``relative_position_bias_table``, ``relative_position_index``,
``attn_mask``), the channels-first LayerNorm (``norm``), the MLP (``chunk.linear1/2``) and the stage
holding them (``layer_norms``, ``attns``, ``mlps``). Maps are ``(B, C, H, W)`` in and out.

Any H, W (the official model runs only at 224 px): windows are padded at the bottom / right with
the padded keys masked out of the softmax, and position tables learnt for one map size are resized
bicubically for another, as the official code does to fine-tune at 384 px.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from functools import lru_cache

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange
from torch.nn.init import trunc_normal_
from torchvision.ops import StochasticDepth

from ..ops.deformable_attention import deformable_position_bias, reference_points, sample_groups
from .swin import relative_position_index


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of a ``(B, C, H, W)`` map (official ``LayerNormProxy``: ``norm``)."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def resize_table(table: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(heads, h, w)`` position table at ``size``: itself, or resized bicubically."""
    if tuple(table.shape[-2:]) == size:
        return table
    return F.interpolate(table.unsqueeze(0), size=size, mode="bicubic", align_corners=False).squeeze(0)


class DeformableAttention(nn.Module):
    """DAT's deformable multi-head attention (official ``DAttentionBaseline``, CVPR version).

    ``q = proj_q(x)``; per channel group, offsets ``conv_offset(q_g)`` (depthwise ``offset_kernel``
    conv, LayerNorm, GELU, 1x1 conv to ``(dy, dx)``), bounded by ``tanh`` to
    ``offset_range_factor`` reference-grid cells; ``x`` sampled at reference + offset
    (:func:`~video_sparse.ops.deformable_attention.sample_groups`); ``k, v = proj_k, proj_v`` of the
    samples; softmax of ``q k^T hd^-0.5`` + the bias sampled from ``rpe_table``
    (:func:`~video_sparse.ops.deformable_attention.deformable_position_bias`); ``proj_out``.

    ``map_size``: the map side the ``(heads, 2 map_size - 1, 2 map_size - 1)`` table is learnt for
    (other maps resize it). The keys are sampled on the query grid (the official configurations'
    offset stride 1). Input/output ``(B, dim, H, W)``.
    """

    def __init__(self, dim: int, num_heads: int, groups: int, map_size: int, offset_range_factor: float = 2.0,
                 offset_kernel: int = 5):
        super().__init__()
        if dim % num_heads or num_heads % groups:
            raise ValueError(f"dim {dim} must be divisible by num_heads {num_heads}, and num_heads by the offset "
                             f"groups {groups}")
        self.num_heads, self.groups, self.offset_range_factor = num_heads, groups, offset_range_factor
        group_dim = dim // groups
        self.conv_offset = nn.Sequential(
            nn.Conv2d(group_dim, group_dim, offset_kernel, 1, offset_kernel // 2, groups=group_dim),
            LayerNorm2d(group_dim), nn.GELU(), nn.Conv2d(group_dim, 2, 1, bias=False))
        self.proj_q, self.proj_k, self.proj_v, self.proj_out = (nn.Conv2d(dim, dim, 1) for _ in range(4))
        self.rpe_table = nn.Parameter(torch.zeros(num_heads, 2 * map_size - 1, 2 * map_size - 1))
        trunc_normal_(self.rpe_table, std=0.01)

    def positions(self, q: torch.Tensor) -> torch.Tensor:
        """``(B, G, H, W, 2)``: where each group samples its keys, ``(y, x)`` in [-1, 1] units."""
        B, C, H, W = q.shape
        offset = self.conv_offset(q.reshape(B * self.groups, C // self.groups, H, W))
        Hk, Wk = offset.shape[-2:]
        limit = offset.new_tensor([1.0 / Hk, 1.0 / Wk]).view(1, 2, 1, 1) * self.offset_range_factor
        offset = (offset.tanh() * limit).permute(0, 2, 3, 1)
        return (offset + reference_points(Hk, Wk, q.dtype, q.device)).reshape(B, self.groups, Hk, Wk, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        q = pointwise(self.proj_q, x.permute(0, 2, 3, 1))  # (B, H, W, C)
        pos = self.positions(q.permute(0, 3, 1, 2))
        sampled = sample_groups(x, pos).transpose(1, 2)  # (B, Ns, C)
        k, v = (rearrange(pointwise(proj, sampled), "b n (m d) -> b m n d", m=self.num_heads)
                for proj in (self.proj_k, self.proj_v))
        table = resize_table(self.rpe_table, (2 * H - 1, 2 * W - 1))
        bias = deformable_position_bias(table, pos.flatten(2, 3), H, W)
        q = rearrange(q, "b h w (m d) -> b m (h w) d", m=self.num_heads)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))  # scale hd^-0.5
        out = pointwise(self.proj_out, rearrange(out, "b m (h w) d -> b h w (m d)", h=H))
        return out.permute(0, 3, 1, 2)


def pointwise(conv: nn.Conv2d, tokens: torch.Tensor) -> torch.Tensor:
    """A 1x1 convolution applied to channels-last ``tokens`` as one matrix product (the official
    layers are 1x1 convs; on NCHW maps their backward is several times slower)."""
    return F.linear(tokens, conv.weight.flatten(1), conv.bias)


@lru_cache(maxsize=32)
def window_mask(height: int, width: int, window: int, shift: int) -> torch.Tensor | None:
    """``(windows, window², window²)`` bool, True where a query may attend to a key, for a map
    padded at the bottom / right to whole windows and rolled by ``-shift``: keys must be real
    pixels and, when shifted, lie in the query's region (Swin's three bands per axis, so that
    pixels the roll wrapped around do not see each other). ``None`` when nothing is masked. Rows
    of queries that would see no key (padding only) see all, to keep the softmax finite."""
    Hp, Wp = math.ceil(height / window) * window, math.ceil(width / window) * window
    if (Hp, Wp) == (height, width) and not shift:
        return None
    real = torch.zeros(Hp, Wp, dtype=torch.bool)
    real[:height, :width] = True
    region = torch.zeros(Hp, Wp)
    if shift:
        real = real.roll((-shift, -shift), (0, 1))
        bands = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
        for i, rows in enumerate(bands):
            for j, cols in enumerate(bands):
                region[rows, cols] = 3 * i + j
    real, region = (rearrange(t, "(r1 h) (r2 w) -> (r1 r2) (h w)", h=window, w=window) for t in (real, region))
    allowed = (region.unsqueeze(2) == region.unsqueeze(1)) & real.unsqueeze(1)
    return allowed | ~allowed.any(-1, keepdim=True)


class WindowAttention(nn.Module):
    """Swin's window attention as DAT's ``LocalAttention`` (``shift`` 0) and
    ``ShiftWindowAttention`` (the map rolled by ``-shift`` first; DAT uses ``ceil(window / 2)``).

    ``proj_qkv`` in Swin's ``(3, heads, hd)`` layout, scale ``hd^-0.5``, a learnt bias per head
    and relative offset within the window, ``proj_out``. ``attn_mask`` (shifted only) is the
    official ``-100 / 0`` buffer of the ``map_size`` map, kept so checkpoints load; the mask used
    is computed for each input size by :func:`window_mask` (the same at ``map_size``).
    Input/output ``(B, dim, H, W)``, any H, W.
    """

    def __init__(self, dim: int, num_heads: int, window: int = 7, shift: int = 0, map_size: int | None = None):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} must be divisible by num_heads {num_heads}")
        if not 0 <= shift < window:
            raise ValueError(f"shift {shift} must be in [0, window {window})")
        self.num_heads, self.window, self.shift = num_heads, window, shift
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, num_heads))
        trunc_normal_(self.relative_position_bias_table, std=0.01)
        self.register_buffer("relative_position_index", relative_position_index(window, window))
        if shift:
            if map_size is None:
                raise ValueError("shifted windows need the map_size of their official attn_mask buffer")
            allowed = window_mask(map_size, map_size, window, shift)
            self.register_buffer("attn_mask", torch.zeros(allowed.shape).masked_fill(~allowed, -100.0))
        self.proj_qkv = nn.Linear(dim, 3 * dim)
        self.proj_out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        w, s = self.window, self.shift
        if H % w or W % w:
            x = F.pad(x, (0, (-W) % w, 0, (-H) % w))
        if s:
            x = x.roll((-s, -s), (2, 3))
        rows, cols = x.shape[2] // w, x.shape[3] // w
        windows = rearrange(x, "b c (r1 h) (r2 w) -> (b r1 r2) (h w) c", h=w, w=w)
        q, k, v = rearrange(self.proj_qkv(windows), "bn t (three m d) -> three bn m t d", three=3, m=self.num_heads)
        n = w * w
        bias = self.relative_position_bias_table[self.relative_position_index.reshape(-1)]
        bias = bias.reshape(n, n, self.num_heads).permute(2, 0, 1).to(q.dtype)  # (heads, n, n)
        allowed = window_mask(H, W, w, s)
        if allowed is not None:  # per window: (B windows, heads, n, n), the fused kernels take 4-d masks only
            masked = torch.zeros(allowed.shape, dtype=q.dtype).masked_fill(~allowed, float("-inf"))
            bias = (bias + masked.to(q.device).unsqueeze(1)).expand(B, -1, -1, -1, -1).flatten(0, 1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # scale hd^-0.5
        out = self.proj_out(rearrange(out, "bn m t d -> bn t (m d)"))
        out = rearrange(out, "(b r1 r2) (h w) c -> b c (r1 h) (r2 w)", r1=rows, r2=cols, h=w, w=w)
        if s:
            out = out.roll((s, s), (2, 3))
        return out[:, :, :H, :W]


class DATMlp(nn.Module):
    """``chunk``: linear1 -> GELU -> linear2 over the channels of a ``(B, C, H, W)`` map."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.chunk = nn.Sequential(OrderedDict(linear1=nn.Linear(dim, hidden), act=nn.GELU(),
                                               linear2=nn.Linear(hidden, dim)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.chunk(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class DATStage(nn.Module):
    """The blocks of one DAT stage, official layout: block ``d`` is
    ``x += attns[d](layer_norms[2d](x))``, ``x += mlps[d](layer_norms[2d + 1](x))``.

    ``lpu``: DAT++'s local perception unit first, ``x += dwconv3x3(x)``
    (``local_perception_units``; off in the CVPR configurations). ``temporal`` (empty until
    :meth:`attach_temporal`; set by video models) holds one inter-frame sub-block per block, run
    between its attention and its MLP on the channels-last stream: ``x = temporal[d](x, frames)``.
    Input/output ``(B, C, H, W)``, B = clips x frames.
    """

    def __init__(self, dim: int, attns: list[nn.Module], mlp_ratio: float, drop_paths: list[float],
                 lpu: bool = False):
        super().__init__()
        self.dim = dim
        self.local_perception_units = nn.ModuleList(nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
                                                    for _ in attns) if lpu else None
        self.layer_norms = nn.ModuleList(LayerNorm2d(dim) for _ in range(2 * len(attns)))
        self.attns = nn.ModuleList(attns)
        self.mlps = nn.ModuleList(DATMlp(dim, int(dim * mlp_ratio)) for _ in attns)
        self.drop_path = nn.ModuleList(StochasticDepth(p, "row") if p > 0 else nn.Identity() for p in drop_paths)
        self.temporal = nn.ModuleList()

    def attach_temporal(self, make) -> None:
        """One inter-frame sub-block ``make(dim)`` after the attention of every block."""
        self.temporal = nn.ModuleList(make(self.dim) for _ in self.attns)

    def forward(self, x: torch.Tensor, frames: int = 1) -> torch.Tensor:
        for d, (attn, mlp, drop_path) in enumerate(zip(self.attns, self.mlps, self.drop_path)):
            if self.local_perception_units is not None:
                x = x + self.local_perception_units[d](x)
            x = x + drop_path(attn(self.layer_norms[2 * d](x)))
            if len(self.temporal):
                x = self.temporal[d](x.permute(0, 2, 3, 1), frames).permute(0, 3, 1, 2)
            x = x + drop_path(mlp(self.layer_norms[2 * d + 1](x)))
        return x
