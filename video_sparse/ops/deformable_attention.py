"""DAT's deformable multi-head attention (Xia et al., CVPR 2022; the CVPR version of the official
code): the pieces around the attention itself.

Every query of a ``H x W`` map attends to the same ``Hk x Wk`` keys and values, projected from the
input *sampled* at learned positions: one position per key and channel group, a reference grid
plus a bounded offset. The attention logits get a relative position bias sampled from a
continuous table at the (fractional) displacement between query and key.

Coordinates are the official ones, reproduced as they are: positions are ``(y, x)`` in ``[-1, 1]``
units with the reference of index ``i`` at ``(i + 0.5) / n * 2 - 1`` (an ``align_corners=False``
grid), while the sampling uses ``align_corners=True`` (-1 and 1 are the centres of the first and
last pixels). So the reference of pixel ``i`` lies at pixel ``(i + 0.5)(n - 1) / n``, not at ``i``:
keys are interpolated even with zero offsets. Positions are not clamped; samples beyond the map
blend with zeros.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def reference_points(height: int, width: int, dtype: torch.dtype = torch.float32,
                     device: torch.device | None = None) -> torch.Tensor:
    """``(height, width, 2)``: the ``(y, x)`` reference of each pixel, ``(i + 0.5) / n * 2 - 1``."""
    ys = (torch.arange(height, dtype=dtype, device=device) + 0.5) / height * 2 - 1
    xs = (torch.arange(width, dtype=dtype, device=device) + 0.5) / width * 2 - 1
    return torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1)


def sample_groups(x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of each channel group at its own positions (zeros beyond the map,
    ``align_corners=True``).

    Args:
        x: ``(B, C, H, W)``, channels in ``G`` contiguous groups.
        pos: ``(B, G, Hk, Wk, 2)`` positions ``(y, x)``.
    Returns:
        ``(B, C, Hk * Wk)``.
    """
    B, C, H, W = x.shape
    G, Hk, Wk = pos.shape[1:4]
    grid = pos.reshape(B * G, Hk, Wk, 2).flip(-1)  # grid_sample takes (x, y)
    sampled = F.grid_sample(x.reshape(B * G, C // G, H, W), grid, mode="bilinear", padding_mode="zeros",
                            align_corners=True)
    return sampled.reshape(B, C, Hk * Wk)


def deformable_position_bias(table: torch.Tensor, pos: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The attention bias of every (query, key) pair: ``table`` sampled (bilinear,
    ``align_corners=True``, zeros beyond it) at half the displacement from the key's position to
    the query's reference point.

    Args:
        table: ``(heads, 2 height - 1, 2 width - 1)``; heads in ``G`` contiguous groups, each group
            with the positions of its channel group.
        pos: ``(B, G, Ns, 2)`` key positions ``(y, x)``.
    Returns:
        ``(B, heads, height * width, Ns)``.
    """
    B, G, Ns = pos.shape[:3]
    heads = table.shape[0]
    queries = reference_points(height, width, pos.dtype, pos.device).reshape(1, 1, height * width, 1, 2)
    displacement = (queries - pos.unsqueeze(2)) * 0.5  # (B, G, HW, Ns, 2) in the table's [-1, 1] units
    tables = table.reshape(1, G, heads // G, *table.shape[1:]).expand(B, -1, -1, -1, -1)
    bias = F.grid_sample(tables.reshape(B * G, heads // G, *table.shape[1:]),
                         displacement.reshape(B * G, height * width, Ns, 2).flip(-1), mode="bilinear",
                         padding_mode="zeros", align_corners=True)
    return bias.reshape(B, heads, height * width, Ns)
