"""DPT's deformable patches (Chen et al., DPT: Deformable Patch-based Transformer, ACM MM 2021):
each patch of a regular grid becomes a learnt box, read at ``points x points`` positions.

Boxes and points are in ``[0, 1]`` units of the map (the official ``pointwhCoder``); sampling
follows Deformable DETR's convention, pixel = ``loc * W - 0.5`` with zeros beyond the map, i.e.
``grid_sample(align_corners=False)`` at ``2 loc - 1``. A box edge clamped to 0 or 1 therefore reads
the border pixel half blended with the zero padding, as in the official code.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def patch_anchors(rows: int, cols: int, dtype: torch.dtype = torch.float32,
                  device: torch.device | None = None) -> torch.Tensor:
    """``(rows * cols, 2)``: the ``(x, y)`` centre of each patch, ``((j + 0.5) / cols, (i + 0.5) / rows)``,
    row-major."""
    ys = (torch.arange(rows, dtype=dtype, device=device) + 0.5) / rows
    xs = (torch.arange(cols, dtype=dtype, device=device) + 0.5) / cols
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([x, y], dim=-1).reshape(-1, 2)


def patch_boxes(code: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Decode ``code`` ``(B, rows * cols, 4)`` = ``(dx, dy, w, h)`` (the wh bias already added) into
    boxes ``(B, rows * cols, 4)`` = ``(x0, y0, x1, y1)`` clamped to ``[0, 1]``: the centre moves by
    ``tanh(d) / n`` patches' width, the half-sizes are ``relu(tanh(w, h)) / n``."""
    anchors = patch_anchors(rows, cols, code.dtype, code.device)
    cell = code.new_tensor([1.0 / cols, 1.0 / rows])
    centre = anchors + torch.tanh(code[..., :2]) * cell
    half = F.relu(torch.tanh(code[..., 2:])) * cell
    return torch.cat([centre - half, centre + half], dim=-1).clamp(0.0, 1.0)


def box_points(boxes: torch.Tensor, points: int) -> torch.Tensor:
    """``(B, P, points², 2)`` ``(x, y)`` positions: ``points`` values evenly from each box's edge to
    edge per axis, ordered **x-index major** (point ``a * points + b`` = ``(x_a, y_b)``, the official
    order, transposed with respect to row-major)."""
    steps = torch.linspace(0.0, 1.0, points, dtype=boxes.dtype, device=boxes.device)
    xs = boxes[..., 0:1] + (boxes[..., 2:3] - boxes[..., 0:1]) * steps  # (B, P, points)
    ys = boxes[..., 1:2] + (boxes[..., 3:4] - boxes[..., 1:2]) * steps
    grid_x = xs.unsqueeze(-1).expand(*xs.shape, points)  # [a, b] -> x_a
    grid_y = ys.unsqueeze(-2).expand(*ys.shape[:-1], points, points)  # [a, b] -> y_b
    return torch.stack([grid_x, grid_y], dim=-1).flatten(-3, -2)


def sample_points(x: torch.Tensor, locations: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of ``x`` ``(B, C, H, W)`` at ``locations`` ``(B, P, K, 2)`` (``(x, y)`` in
    ``[0, 1]``), flattened per patch as ``[point, channel]``: ``(B, P, K * C)``."""
    B, P, K, _ = locations.shape
    grid = (2 * locations - 1).reshape(B, 1, P * K, 2)  # all points along the width: grid_sample's CPU kernel
    sampled = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)  # vectorises it
    return sampled.reshape(B, -1, P, K).permute(0, 2, 3, 1).reshape(B, P, K * x.shape[1])  # -> (B, P, K C)
