"""Deformable DETR's multi-scale deformable attention module with the official parameter names
(``sampling_offsets``, ``attention_weights``, ``value_proj``, ``output_proj``) and initialisation."""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn
from einops import rearrange

from ..ops.msdeform_attention import msdeform_attention


def reset_msdeform_parameters(sampling_offsets: nn.Module, attention_weights: nn.Module, value_proj: nn.Linear,
                              output_proj: nn.Linear, n_heads: int, n_levels: int, n_points: int) -> None:
    """Deformable DETR's initialisation: zero offset weights and a bias putting head h's points on
    the ray at angle ``2 pi h / M`` (scaled so its larger coordinate is 1), ``1, 2, ..., K``
    pixels out, on every level; zero attention weights (uniform attention); Xavier projections."""
    nn.init.zeros_(sampling_offsets.weight)
    angles = torch.arange(n_heads, dtype=torch.float32) * (2 * math.pi / n_heads)
    rays = torch.stack([angles.cos(), angles.sin()], -1)
    rays = rays / rays.abs().max(-1, keepdim=True).values
    steps = torch.arange(1, n_points + 1, dtype=torch.float32).view(1, 1, -1, 1)
    sampling_offsets.bias.copy_((rays.view(-1, 1, 1, 2) * steps).expand(n_heads, n_levels, n_points, 2).flatten())
    nn.init.zeros_(attention_weights.weight)
    nn.init.zeros_(attention_weights.bias)
    for proj in (value_proj, output_proj):
        nn.init.xavier_uniform_(proj.weight)
        nn.init.zeros_(proj.bias)


class MSDeformAttn(nn.Module):
    """Every query samples ``n_points`` points per head on each of ``n_levels`` value maps around
    its reference point and returns their weighted sum
    (:func:`~video_sparse.ops.msdeform_attention.msdeform_attention`).

    Offsets and weights are linear in the query; the weights are softmaxed over the levels' points
    together, per head. Offsets ``(x, y)`` are in pixels of each level (divided by ``(W_l, H_l)``);
    with 4-d reference boxes ``(cx, cy, w, h)`` they are fractions of the box instead
    (``/ K * wh / 2``). Initialisation as the official module: zero offset weights, the bias puts
    head h's points on the ray at angle ``2 pi h / M``, ``1, 2, ..., K`` pixels out; uniform
    attention; Xavier projections (:func:`reset_msdeform_parameters`).

    Args:
        d_model: channels C. n_levels: L. n_heads: M (divides C). n_points: K.
    Forward:
        query ``(N, Lq, C)``, reference_points ``(N, Lq, L, 2 or 4)`` in ``[0, 1]``,
        value_input ``(N, S, C)`` (the levels flattened row-major and concatenated),
        spatial_shapes ``[(H_l, W_l)]``, padding_mask ``(N, S)`` (True: padding, its value zeroed) or None.
        Returns ``(N, Lq, C)``.
    """

    def __init__(self, d_model: int = 256, n_levels: int = 4, n_heads: int = 8, n_points: int = 4):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} must be divisible by n_heads {n_heads}")
        self.d_model, self.n_levels, self.n_heads, self.n_points = d_model, n_levels, n_heads, n_points
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            reset_msdeform_parameters(self.sampling_offsets, self.attention_weights, self.value_proj, self.output_proj,
                                      self.n_heads, self.n_levels, self.n_points)

    def forward(self, query: torch.Tensor, reference_points: torch.Tensor, value_input: torch.Tensor,
                spatial_shapes: Sequence[tuple[int, int]], padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        M, L, K = self.n_heads, self.n_levels, self.n_points
        if len(spatial_shapes) != L:
            raise ValueError(f"{len(spatial_shapes)} spatial_shapes for a module of n_levels={L}")
        value = self.value_proj(value_input)
        if padding_mask is not None:
            value = value.masked_fill(padding_mask[..., None], 0.0)
        value = rearrange(value, "n s (m d) -> n s m d", m=M)
        offsets = rearrange(self.sampling_offsets(query), "n q (m l k xy) -> n q m l k xy", m=M, l=L, k=K)
        weights = rearrange(self.attention_weights(query), "n q (m lk) -> n q m lk", m=M).softmax(-1)
        weights = rearrange(weights, "n q m (l k) -> n q m l k", l=L)
        ref = reference_points[:, :, None, :, None]  # (N, Lq, 1, L, 1, 2 or 4)
        if reference_points.shape[-1] == 2:
            wh = torch.tensor([[w, h] for h, w in spatial_shapes], dtype=offsets.dtype, device=offsets.device)
            locations = ref + offsets / wh[:, None]
        elif reference_points.shape[-1] == 4:
            locations = ref[..., :2] + offsets / K * ref[..., 2:] * 0.5
        else:
            raise ValueError(f"reference_points must end in 2 or 4 coordinates, got {reference_points.shape[-1]}")
        return self.output_proj(msdeform_attention(value, spatial_shapes, locations, weights))
