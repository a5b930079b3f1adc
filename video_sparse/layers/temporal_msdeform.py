"""Multi-scale deformable attention across frames: a learned alternative to SIFA's correlation
weights. The "levels" of Deformable DETR are the neighbouring frames of the clip; every pixel of
frame t samples ``n_points`` learned points per head in each of the frames ``t + d``
(``d`` in ``window``, default -1, 0, +1) around its own position and weights them with learned,
softmaxed weights (no query-key correlation, unlike SIFA).

Layers: :class:`TemporalMSDeformAttn` (the operator), :class:`MSDeformBottleneck` (in place of the
SIFA bottleneck of the C2D ResNets) and :class:`FrameMSDeform` (in place of ``FrameSIFA`` in the
per-frame transformers).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from ..ops.msdeform_attention import msdeform_attention
from ..ops.sifa import motion_map
from .block import per_clip
from .bottleneck import C2DBottleneck
from .msdeform import reset_msdeform_parameters

OFFSETS_FROM = ("query", "motion")


class TemporalMSDeformAttn(nn.Module):
    """``(N, C, T, H, W) -> (N, C, T, H, W)``: for frame t, MSDeformAttn with the query at each pixel,
    its centre as the reference point on every level, and the levels = frames ``t + d`` for ``d``
    in ``window`` (values projected once per frame). A frame beyond the clip is a map of zeros,
    as Deformable DETR's padding: its points read nothing but keep their share of the softmax.

    Args:
        dim: channels C. n_heads: M (divides C). n_points: K per head and frame.
        window: frame offsets (the levels), e.g. ``(-1, 0, 1)``.
        offsets_from: ``"query"`` — offsets linear in the query (Deformable DETR); ``"motion"`` —
            a ``(1, 3, 3)`` conv of SIFA's motion map ``sigmoid(F - F_prev) * F + F`` (SIFA's choice).
            Both start at Deformable DETR's initialisation (zero weights, rays in the bias).
    """

    def __init__(self, dim: int, n_heads: int = 8, n_points: int = 4, window: Sequence[int] = (-1, 0, 1),
                 offsets_from: str = "query"):
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"channels {dim} must be divisible by the heads {n_heads}")
        if offsets_from not in OFFSETS_FROM:
            raise ValueError(f"offsets_from must be one of {OFFSETS_FROM}, got {offsets_from!r}")
        if not window:
            raise ValueError("window needs at least one frame offset")
        self.n_heads, self.n_points, self.window, self.offsets_from = n_heads, n_points, tuple(window), offsets_from
        outputs = n_heads * len(self.window) * n_points
        self.sampling_offsets = (nn.Linear(dim, 2 * outputs) if offsets_from == "query" else
                                 nn.Conv3d(dim, 2 * outputs, (1, 3, 3), padding=(0, 1, 1)))
        self.attention_weights = nn.Linear(dim, outputs)
        self.value_proj = nn.Linear(dim, dim)
        self.output_proj = nn.Linear(dim, dim)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        reset_msdeform_parameters(self.sampling_offsets, self.attention_weights, self.value_proj, self.output_proj,
                                  self.n_heads, len(self.window), self.n_points)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        N, C, T, H, W = x.shape
        M, L, K = self.n_heads, len(self.window), self.n_points
        tokens = rearrange(x, "n c t h w -> n t (h w) c")
        value = self.value_proj(tokens)
        pad = max(abs(d) for d in self.window)
        value = F.pad(value, (0, 0, 0, 0, pad, pad))  # zero frames beyond the clip
        value = torch.stack([value[:, pad + d:pad + d + T] for d in self.window], dim=2)
        value = rearrange(value, "n t l s (m d) -> (n t) (l s) m d", m=M)
        if self.offsets_from == "query":
            offsets = self.sampling_offsets(tokens)
        else:
            offsets = rearrange(self.sampling_offsets(motion_map(x)), "n o t h w -> n t (h w) o")
        offsets = rearrange(offsets, "n t s (m l k xy) -> (n t) s m l k xy", m=M, l=L, k=K)
        weights = rearrange(self.attention_weights(tokens), "n t s (m lk) -> (n t) s m lk", m=M).softmax(-1)
        weights = rearrange(weights, "b s m (l k) -> b s m l k", l=L)
        ys = (torch.arange(H, device=x.device, dtype=offsets.dtype) + 0.5) / H
        xs = (torch.arange(W, device=x.device, dtype=offsets.dtype) + 0.5) / W
        centres = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1).view(H * W, 1, 1, 1, 2)  # (x, y)
        size = torch.tensor([W, H], device=x.device, dtype=offsets.dtype)
        out = msdeform_attention(value, [(H, W)] * L, centres + offsets / size, weights)
        return rearrange(self.output_proj(out), "(n t) (h w) c -> n c t h w", n=N, h=H)


class MSDeformBottleneck(C2DBottleneck):
    """conv1-BN-ReLU, conv2-BN-ReLU, ``F + TemporalMSDeformAttn(F)``, conv3-BN, + identity, ReLU:
    :class:`~video_sparse.layers.sifa.SIFABottleneck` with the deformable attention across frames
    in place of SIFA's. ``enabled=False`` makes the mixer the identity (same parameters)."""

    def __init__(self, in_channels: int, planes: int, stride: int = 1, head_dim: int = 32, n_points: int = 4,
                 window: Sequence[int] = (-1, 0, 1), offsets_from: str = "query", enabled: bool = True):
        super().__init__(in_channels, planes, stride)
        self.temporal = TemporalMSDeformAttn(planes, max(planes // head_dim, 1), n_points, window, offsets_from)
        self.enabled = enabled

    def mix(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.temporal(x) if self.enabled else x


class FrameMSDeform(nn.Module):
    """The per-frame transformers' inter-frame sub-block with MSDeformAttn:
    ``x + gamma * A(LN(x))`` on the residual stream ``(N * T, H, W, C)`` (frames of a clip
    consecutive), ``gamma`` per channel and zero-initialised like ``FrameSIFA``'s.
    ``enabled=False`` makes the module the identity (same parameters)."""

    def __init__(self, dim: int, head_dim: int = 32, n_points: int = 4, window: Sequence[int] = (-1, 0, 1),
                 offsets_from: str = "query", enabled: bool = True):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.attn = TemporalMSDeformAttn(dim, max(dim // head_dim, 1), n_points, window, offsets_from)
        self.gamma = nn.Parameter(torch.zeros(dim))
        self.enabled = enabled

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        if not self.enabled:
            return x
        return x + self.gamma * per_clip(self.norm(x), frames, self.attn)
