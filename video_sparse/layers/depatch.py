"""DPT's deformable patch embedding, DePatch, with the official names (``patch_embed.proj/norm``,
``offset_predictor``, ``box_coder.wh_bias``, ``box_coder.anchor``, ``output_proj``, ``norm``, and
the unused ``value_spatial_shapes`` / ``value_level_start_index`` buffers), so official checkpoints
load as they are."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..ops.deformable_patches import box_points, patch_anchors, patch_boxes, sample_points


class BoxCoder(nn.Module):
    """Holds the learnt ``wh_bias`` (added to the predicted box sizes, initialised to
    ``ln sqrt(5 / 3)``: ``tanh`` of it is 1/4, a box half a patch wide) and the official ``anchor``
    buffer of the build-size grid. The anchors used are computed from each input's grid
    (:func:`~video_sparse.ops.deformable_patches.patch_anchors`; the same at the build size)."""

    def __init__(self, grid: int):
        super().__init__()
        self.wh_bias = nn.Parameter(torch.full((2,), 0.5 * math.log(5 / 3)))
        self.register_buffer("anchor", patch_anchors(grid, grid))


class DePatchEmbed(nn.Module):
    """Deformable patch embedding of a ``(B, Cin, H, W)`` map into ``(B, dim, H', W')`` patches,
    ``H' = ceil(H / stride)`` (the official model: stride 2 at a fixed size).

    Per patch: features ``GELU(LN(conv_2x2(x)))`` (``patch_embed``: a ``stride``-strided 2x2 conv,
    the map zero-padded at the bottom / right to cover it), a box code ``offset_predictor``
    (4 outputs, no bias, zero-initialised: every patch starts as its own 2x2 square) plus the wh
    bias, decoded to a box in ``[0, 1]``; ``x`` read at ``points x points`` positions spanning the
    box (:mod:`~video_sparse.ops.deformable_patches`), ``output_proj`` of the ``points² * Cin``
    samples, LayerNorm (``norm``).

    Args:
        in_dim, dim: channels in and out. grid: the patch grid side of the build size (the
            official ``anchor`` buffer). points: samples per box side (official 3).
    """

    def __init__(self, in_dim: int, dim: int, grid: int, points: int = 3, stride: int = 2):
        super().__init__()
        self.points, self.stride = points, stride
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(in_dim, dim, 2, stride)
        self.patch_embed.norm = nn.LayerNorm(dim)
        self.offset_predictor = nn.Linear(dim, 4, bias=False)
        nn.init.zeros_(self.offset_predictor.weight)
        self.box_coder = BoxCoder(grid)
        self.output_proj = nn.Linear(points * points * in_dim, dim)
        self.norm = nn.LayerNorm(dim)
        self.register_buffer("value_spatial_shapes", torch.tensor([[2 * grid, 2 * grid]]))
        self.register_buffer("value_level_start_index", torch.tensor([0]))

    def boxes(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, rows * cols, 4)`` boxes ``(x0, y0, x1, y1)`` in ``[0, 1]`` of the map ``x``."""
        H, W = x.shape[-2:]
        s = self.stride
        rows, cols = math.ceil(H / s), math.ceil(W / s)
        pad = (0, (cols - 1) * s + 2 - W, 0, (rows - 1) * s + 2 - H)
        features = self.patch_embed.proj(F.pad(x, pad) if any(pad) else x).flatten(2).transpose(1, 2)
        code = self.offset_predictor(F.gelu(self.patch_embed.norm(features)))
        code = torch.cat([code[..., :2], code[..., 2:] + self.box_coder.wh_bias], dim=-1)
        return patch_boxes(code, rows, cols)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, _, H, W = x.shape
        rows, cols = math.ceil(H / self.stride), math.ceil(W / self.stride)
        samples = sample_points(x, box_points(self.boxes(x), self.points))  # (B, P, points² Cin)
        out = self.norm(self.output_proj(samples))
        return out.transpose(1, 2).reshape(B, -1, rows, cols)
