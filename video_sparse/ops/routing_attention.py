"""Bi-level routing attention, the core of BiFormer's BRA (legacy, checkpoint-compatible semantics).

The map is cut into ``n_win x n_win`` regions. Each query region keeps the ``topk`` key regions whose
mean key best matches its mean query (routing, shared by all heads, no gradient), and its tokens
attend to the tokens of those regions only.

The official code gathers the routed K/V into a ``topk``-fold copy that autograd keeps for backward
(and whose backward scatters into a ``regions``-fold expanded buffer). Here a custom autograd
function walks the ``topk`` routed regions one at a time: forward and backward each hold one routed
copy of K or V at a time and keep only q, k, v, the routing indices and the attention weights.

Any H, W: the map is zero-padded at the bottom and right to a multiple of ``n_win``; padded tokens
are left out of the region means and masked out as keys (the official ``auto_pad`` lets them in
unmasked), and regions made only of padding are never routed to before real ones. At sizes that are
multiples of ``n_win`` nothing is padded and the result is the official one.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange

from .onnx_forms import tracing_for_onnx


def _route_logits(q_scaled, k, route, key_bias):
    """Logits ``(R, heads, w2, w2)`` of every query region's tokens over the region ``route``."""
    logits = q_scaled @ k.index_select(0, route).transpose(-1, -2)
    return logits if key_bias is None else logits + key_bias.index_select(0, route)[:, None, None, :]


class _RoutedAttention(torch.autograd.Function):
    """Attention of each query region over its routed key regions.

    q, k: ``(R, heads, w2, d)``; v: ``(R, heads, w2, dv)`` with ``R`` = batch x regions;
    routes: ``(R, topk)`` rows of ``q``'s region axis to attend to; key_bias: ``(R, w2)`` additive
    logit bias of every key token (``-inf`` masks it) or None.
    """

    @staticmethod
    def forward(ctx, q, k, v, routes, key_bias, scale: float):
        R, heads, w2, _ = q.shape
        topk = routes.shape[1]
        q_scaled = q * scale
        if tracing_for_onnx():  # slice writes become ONNX ScatterElements, slow in onnxruntime
            logits = torch.stack([_route_logits(q_scaled, k, routes[:, r], key_bias) for r in range(topk)], dim=3)
        else:  # one buffer: no topk slices alive next to it
            logits = q.new_empty(R, heads, w2, topk, w2)
            for r in range(topk):
                logits[:, :, :, r] = _route_logits(q_scaled, k, routes[:, r], key_bias)
        attn = logits.view(R, heads, w2, topk * w2).softmax(dim=-1).view_as(logits)
        out = q.new_zeros(R, heads, w2, v.shape[-1])
        for r in range(topk):
            out += attn[:, :, :, r] @ v.index_select(0, routes[:, r])
        ctx.save_for_backward(q, k, v, routes, attn)
        ctx.scale = scale
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        q, k, v, routes, attn = ctx.saved_tensors
        topk = routes.shape[1]
        grad_attn = torch.empty_like(attn)
        grad_v = torch.zeros_like(v) if ctx.needs_input_grad[2] else None
        for r in range(topk):
            grad_attn[:, :, :, r] = grad_out @ v.index_select(0, routes[:, r]).transpose(-1, -2)
            if grad_v is not None:
                grad_v.index_add_(0, routes[:, r], attn[:, :, :, r].transpose(-1, -2) @ grad_out)
        # softmax backward over all topk * w2 keys of a query
        grad_logits = attn * (grad_attn - (attn * grad_attn).sum(dim=(-2, -1), keepdim=True))
        grad_q = torch.zeros_like(q) if ctx.needs_input_grad[0] else None
        grad_k = torch.zeros_like(k) if ctx.needs_input_grad[1] else None
        q_scaled = q * ctx.scale
        for r in range(topk):
            g = grad_logits[:, :, :, r]
            if grad_q is not None:
                grad_q += g @ k.index_select(0, routes[:, r])
            if grad_k is not None:
                grad_k.index_add_(0, routes[:, r], g.transpose(-1, -2) @ q_scaled)
        if grad_q is not None:
            grad_q *= ctx.scale
        return grad_q, grad_k, grad_v, None, None, None


def route_regions(q_regions: torch.Tensor, k_regions: torch.Tensor, topk: int, scale: float,
                  valid_regions: torch.Tensor | None = None) -> torch.Tensor:
    """Top-k key regions of every query region: ``topk((q_r * scale) k_r^T)`` (no gradient).

    Args:
        q_regions, k_regions: ``(B, regions, qk_dim)`` region descriptors (mean query / key).
        valid_regions: ``(regions,)`` bool; regions made only of padding rank last.
    Returns:
        ``(B, regions, topk)`` long indices (ties: implementation-defined, as in the official code).
    """
    logits = (q_regions.detach() * scale) @ k_regions.detach().transpose(-1, -2)
    if valid_regions is not None:
        logits = logits.masked_fill(~valid_regions, float("-inf"))
    return logits.topk(topk, dim=-1).indices


def bi_level_routing_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, n_win: int, topk: int,
                               num_heads: int, scale: float) -> torch.Tensor:
    """BRA's routing and token attention (no projections, no LePE).

    Args:
        q, k: ``(B, H, W, qk_dim)``; v: ``(B, H, W, dim)`` (channels last, as BiFormer).
        n_win: regions per side (``n_win^2`` regions). topk: key regions per query region.
        num_heads: heads are contiguous channel chunks of q, k and v, sharing the routing.
        scale: of both the routing and the token logits (official: ``qk_dim ** -0.5``).
    Returns:
        ``(B, H, W, dim)``.
    """
    B, H, W, _ = q.shape
    if k.shape[:3] != (B, H, W) or v.shape[:3] != (B, H, W) or k.shape[-1] != q.shape[-1]:
        raise ValueError(f"q, k (B, H, W, qk_dim) and v (B, H, W, dim) disagree: "
                         f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if q.shape[-1] % num_heads or v.shape[-1] % num_heads:
        raise ValueError(f"qk_dim {q.shape[-1]} and dim {v.shape[-1]} must be divisible by num_heads {num_heads}")
    regions = n_win * n_win
    if not 1 <= topk <= regions:
        raise ValueError(f"topk must be in [1, n_win^2 = {regions}], got {topk}")
    side_h, side_w = -(-H // n_win), -(-W // n_win)  # region size: ceil(H / n_win) x ceil(W / n_win)
    pad_h, pad_w = side_h * n_win - H, side_w * n_win - W
    if pad_h or pad_w:
        q, k, v = (F.pad(t, (0, 0, 0, pad_w, 0, pad_h)) for t in (q, k, v))
    to_regions = "b (j h) (i w) c -> (b j i) (h w) c"
    q_reg, k_reg, v_reg = (rearrange(t, to_regions, j=n_win, i=n_win) for t in (q, k, v))

    key_bias, valid_regions = None, None
    if pad_h or pad_w:
        valid = torch.zeros(n_win * side_h, n_win * side_w, dtype=torch.bool, device=q.device)
        valid[:H, :W] = True
        valid = rearrange(valid, "(j h) (i w) -> (j i) (h w)", j=n_win, i=n_win)  # (regions, w2)
        count = valid.sum(1)
        valid_regions = count > 0
        key_bias = torch.zeros(valid.shape, dtype=q.dtype, device=q.device).masked_fill(~valid, float("-inf"))
        key_bias = key_bias.repeat(B, 1)
        # region means over real tokens only (padded tokens are zeros, so a sum / count is exact)
        q_mean = q_reg.sum(1) / count.clamp(min=1).repeat(B)[:, None].to(q.dtype)
        k_mean = k_reg.sum(1) / count.clamp(min=1).repeat(B)[:, None].to(q.dtype)
    else:
        q_mean, k_mean = q_reg.mean(1), k_reg.mean(1)
    routes = route_regions(q_mean.view(B, regions, -1), k_mean.view(B, regions, -1), topk, scale, valid_regions)
    routes = (routes + torch.arange(B, device=q.device)[:, None, None] * regions).view(B * regions, topk)

    q_reg, k_reg, v_reg = (rearrange(t, "r w2 (m c) -> r m w2 c", m=num_heads).contiguous() for t in (q_reg, k_reg, v_reg))
    out = _RoutedAttention.apply(q_reg, k_reg, v_reg, routes, key_bias, float(scale))
    out = rearrange(out, "(b j i) m (h w) c -> b (j h) (i w) (m c)", b=B, j=n_win, i=n_win, h=side_h, w=side_w)
    return out[:, :H, :W]
