"""Multi-scale deformable attention (Zhu et al., Deformable DETR, ICLR 2021) as a pure tensor function.

Every query has, per head, K sampling points on each of L value maps ("levels") and a weight per
point; its output is the weighted sum of the values bilinearly sampled at those points. Semantics
of the official operator (its CUDA kernel and its pure-PyTorch core agree): locations are in
``[0, 1]`` with a top-left origin, ordered ``(x, y)``; a location maps to the pixel coordinate
``loc * size - 0.5``; the four neighbours of a sample that fall outside the map read zero
(``grid_sample(..., padding_mode="zeros", align_corners=False)`` at ``2 loc - 1``).

The official pure-PyTorch core samples every level, stacks the L x K samples of every query and
multiplies them by the weights, and autograd keeps those copies until backward: L x K copies of
the query-by-channel map, several times over at the peak. Here a custom autograd Function samples
one level and one point at a time and accumulates it into the output in place; backward samples
each point again. What stays alive between the passes is the inputs; the largest temporary is
one point's sample (1 / (L K) of the official stack).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange


def _level_maps(value: torch.Tensor, shapes: Sequence[tuple[int, int]]) -> list[torch.Tensor]:
    """``(N, S, M, D)`` -> per level ``(N M, D, H_l, W_l)`` (views where possible)."""
    maps, start = [], 0
    for H, W in shapes:
        level = value[:, start:start + H * W]
        maps.append(rearrange(level, "n (h w) m d -> (n m) d h w", h=H, w=W))
        start += H * W
    return maps


def _grids(locations: torch.Tensor) -> torch.Tensor:
    """``(N, Lq, M, L, K, 2)`` in [0, 1] -> ``(L, K, N M, 1, Lq, 2)`` in grid_sample's [-1, 1], contiguous
    per point; the queries along the width (grid_sample's CPU kernel vectorises along it)."""
    return rearrange(2 * locations - 1, "n q m l k xy -> l k (n m) 1 q xy").contiguous()


def _point_weights(weights: torch.Tensor) -> torch.Tensor:
    """``(N, Lq, M, L, K)`` -> ``(L, K, N M, 1, 1, Lq)``, contiguous per point, broadcast over channels."""
    return rearrange(weights, "n q m l k -> l k (n m) 1 1 q").contiguous()


def _sample(level_map: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """``(N M, D, 1, Lq)``: the level's values at one point of every query."""
    return F.grid_sample(level_map, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class _MSDeformAttention(torch.autograd.Function):
    """``out = sum_{l, k} a_{l k} V_l(p_{l k})``, one level and one point at a time (a sample of one
    point is 1 / (L K) of what the official core stacks), sampled again in backward (module
    docstring)."""

    @staticmethod
    def forward(ctx, value, locations, weights, shapes):
        N, Lq, M, _, K = weights.shape
        grids, point_weights = _grids(locations), _point_weights(weights)
        out = value.new_zeros(N * M, value.shape[-1], 1, Lq)
        for level, level_map in enumerate(_level_maps(value, shapes)):
            level_map = level_map.contiguous()  # once per level, not once per point
            for point in range(K):
                out.addcmul_(_sample(level_map, grids[level, point]), point_weights[level, point])
        ctx.save_for_backward(value, locations, weights)
        ctx.shapes = shapes
        return rearrange(out, "(n m) d 1 q -> n q (m d)", n=N)

    @staticmethod
    def backward(ctx, grad_out):
        value, locations, weights = ctx.saved_tensors
        N, Lq, M, _, K = weights.shape
        grids, point_weights = _grids(locations), _point_weights(weights)
        grad_out = rearrange(grad_out, "n q (m d) -> (n m) d 1 q", m=M).contiguous()
        grad_value = torch.zeros_like(value)
        grad_grids, grad_point_weights = torch.empty_like(grids), torch.empty_like(point_weights)
        start = 0
        for level, level_map in enumerate(_level_maps(value, ctx.shapes)):
            level_map = level_map.detach().contiguous().requires_grad_(True)
            grad_map = torch.zeros_like(level_map)
            for point in range(K):
                grid = grids[level, point].requires_grad_(True)
                with torch.enable_grad():
                    sampled = _sample(level_map, grid)
                g_map, grad_grids[level, point] = torch.autograd.grad(
                    sampled, (level_map, grid), grad_out * point_weights[level, point])
                grad_map += g_map
                # grid_sample's backward does not read its output: reuse the sample's memory
                grad_point_weights[level, point] = sampled.detach().mul_(grad_out).sum(1, keepdim=True)
            H, W = ctx.shapes[level]
            grad_value[:, start:start + H * W] = rearrange(grad_map, "(n m) d h w -> n (h w) m d", n=N)
            start += H * W
        grad_locations = rearrange(2 * grad_grids, "l k (n m) 1 q xy -> n q m l k xy", n=N)
        grad_weights = rearrange(grad_point_weights, "l k (n m) 1 1 q -> n q m l k", n=N)
        return grad_value, grad_locations, grad_weights, None


@torch.compiler.disable  # backward re-samples under torch.autograd.grad, which dynamo cannot trace
def _apply(value, locations, weights, shapes):
    return _MSDeformAttention.apply(value, locations, weights, shapes)


def msdeform_attention(value: torch.Tensor, spatial_shapes: Sequence[tuple[int, int]], sampling_locations: torch.Tensor,
                       attention_weights: torch.Tensor) -> torch.Tensor:
    """Multi-scale deformable attention core (the official ``ms_deform_attn_core``'s function).

    Args:
        value: ``(N, S, M, D)``: the L levels' maps flattened row-major and concatenated
            (``S = sum H_l W_l``), ``M`` heads of ``D`` channels.
        spatial_shapes: ``[(H_l, W_l)]`` per level.
        sampling_locations: ``(N, Lq, M, L, K, 2)``, ``(x, y)`` in ``[0, 1]`` (outside allowed).
        attention_weights: ``(N, Lq, M, L, K)`` (softmaxed over ``L K`` by the caller).
    Returns ``(N, Lq, M D)``. Autocast: computed in float32, returned in ``value``'s dtype.
    """
    shapes = tuple((int(h), int(w)) for h, w in spatial_shapes)
    N, S, M, D = value.shape
    if S != sum(h * w for h, w in shapes):
        raise ValueError(f"value has {S} positions but spatial_shapes {list(shapes)} cover "
                         f"{sum(h * w for h, w in shapes)}")
    Lq, L, K = sampling_locations.shape[1], len(shapes), sampling_locations.shape[4]
    if sampling_locations.shape != (N, Lq, M, L, K, 2):
        raise ValueError(f"sampling_locations must be (N, Lq, M, L, K, 2) = {(N, Lq, M, L, K, 2)}, "
                         f"got {tuple(sampling_locations.shape)}")
    if attention_weights.shape != (N, Lq, M, L, K):
        raise ValueError(f"attention_weights must be (N, Lq, M, L, K) = {(N, Lq, M, L, K)}, "
                         f"got {tuple(attention_weights.shape)}")
    compute = torch.float32 if value.dtype in (torch.float16, torch.bfloat16) else value.dtype
    with torch.autocast(device_type=value.device.type, enabled=False):
        out = _apply(value.to(compute), sampling_locations.to(compute), attention_weights.to(compute), shapes)
    return out.to(value.dtype)
