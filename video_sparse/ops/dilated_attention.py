"""Dilated neighbourhood attention, the core of DilateFormer's multi-scale dilated attention (MSDA).

Every pixel attends to the ``K x K`` pixels around it at dilation ``r``. Neighbours beyond the border
read zero (zero padding by ``r * (K - 1) // 2``), so they still enter the softmax with logit 0 and add
nothing to the output: the official unfold semantics, kept on purpose (not NATTEN's inward-shifted
window).

The official code unfolds K and V (``K^2`` copies of both, kept for backward). Here the ``K^2`` taps
are shifted views of the zero-padded K and V, accumulated one at a time; a custom backward re-derives
every tap from the saved q, k, v and the attention weights ``(B, heads, K^2, H, W)``, so nothing
``K^2``-fold is kept alive.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _taps(kernel_size: int, dilation: int, height: int, width: int):
    """Slices of the padded map that hold, for every pixel, its neighbour at each tap (row-major)."""
    for i in range(kernel_size):
        for j in range(kernel_size):
            yield (slice(i * dilation, i * dilation + height), slice(j * dilation, j * dilation + width))


class _DilatedAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, kernel_size: int, dilation: int, scale: float):
        B, heads, dim, H, W = q.shape
        pad = dilation * (kernel_size - 1) // 2
        k_pad = F.pad(k, (pad, pad, pad, pad))
        v_pad = F.pad(v, (pad, pad, pad, pad))
        taps = list(_taps(kernel_size, dilation, H, W))
        q_scaled = q * scale
        logits = q.new_empty(B, heads, len(taps), H, W)
        for t, (ys, xs) in enumerate(taps):
            logits[:, :, t] = torch.linalg.vecdot(q_scaled, k_pad[..., ys, xs], dim=2)
        attn = logits.softmax(dim=2)
        out = torch.zeros_like(v)
        for t, (ys, xs) in enumerate(taps):
            out.addcmul_(attn[:, :, t, None], v_pad[..., ys, xs])
        ctx.save_for_backward(q, k, v, attn)
        ctx.geometry = (kernel_size, dilation, scale)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        q, k, v, attn = ctx.saved_tensors
        kernel_size, dilation, scale = ctx.geometry
        H, W = q.shape[-2:]
        pad = dilation * (kernel_size - 1) // 2
        taps = list(_taps(kernel_size, dilation, H, W))
        k_pad = F.pad(k, (pad, pad, pad, pad))
        v_pad = F.pad(v, (pad, pad, pad, pad))
        grad_v_pad = torch.zeros_like(v_pad) if ctx.needs_input_grad[2] else None
        grad_attn = torch.empty_like(attn)
        for t, (ys, xs) in enumerate(taps):
            grad_attn[:, :, t] = torch.linalg.vecdot(grad_out, v_pad[..., ys, xs], dim=2)
            if grad_v_pad is not None:
                grad_v_pad[..., ys, xs].addcmul_(attn[:, :, t, None], grad_out)
        # softmax backward, then the scale of the logits
        grad_logits = attn * (grad_attn - (attn * grad_attn).sum(2, keepdim=True)) * scale
        grad_q = torch.zeros_like(q) if ctx.needs_input_grad[0] else None
        grad_k_pad = torch.zeros_like(k_pad) if ctx.needs_input_grad[1] else None
        for t, (ys, xs) in enumerate(taps):
            g = grad_logits[:, :, t, None]
            if grad_q is not None:
                grad_q.addcmul_(g, k_pad[..., ys, xs])
            if grad_k_pad is not None:
                grad_k_pad[..., ys, xs].addcmul_(g, q)
        crop = (Ellipsis, slice(pad, pad + H), slice(pad, pad + W))
        grad_k = grad_k_pad[crop] if grad_k_pad is not None else None
        grad_v = grad_v_pad[crop] if grad_v_pad is not None else None
        return grad_q, grad_k, grad_v, None, None, None


def dilated_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dilation: int = 1, kernel_size: int = 3,
                      scale: float | None = None) -> torch.Tensor:
    """Softmax attention of every pixel over its ``kernel_size^2`` neighbours at ``dilation``.

    Args:
        q, k, v: ``(B, heads, head_dim, H, W)``.
        dilation: spacing of the neighbours (DilateFormer: 1, 2, 3 for the three groups).
        kernel_size: odd neighbourhood side (3).
        scale: of the logits ``q . k``; default ``head_dim ** -0.5``.
    Returns:
        ``(B, heads, head_dim, H, W)``: ``sum_t softmax_t(scale q . k_t) v_t`` over the taps ``t``,
        taps beyond the border counting as ``k_t = v_t = 0``.
    """
    if q.ndim != 5 or q.shape != k.shape or q.shape != v.shape:
        raise ValueError(f"q, k, v must share one shape (B, heads, head_dim, H, W); got "
                         f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if kernel_size % 2 != 1 or kernel_size < 1 or dilation < 1:
        raise ValueError(f"kernel_size must be odd and positive and dilation >= 1; got {kernel_size}, {dilation}")
    scale = q.shape[2] ** -0.5 if scale is None else float(scale)
    return _DilatedAttention.apply(q, k, v, kernel_size, dilation, scale)
