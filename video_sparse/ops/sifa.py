"""SIFA: stand-alone inter-frame attention (Long et al., CVPR 2022) as pure tensor functions.

Every position of frame t attends to a deformable K x K neighbourhood of frame t+1 (offsets
predicted at frame t+1); the attended values are added to frame t, the last frame is unchanged.
Exact semantics (the official CUDA operator, restated): see :func:`sifa_attention`.

The fast path is a custom autograd Function that walks the K^2 taps one at a time in forward and
again in backward, recomputing each bilinear sample instead of keeping K^2 sampled copies alive:
extra memory is O(input) instead of O(K^2 x input).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange

NORMALIZE = ("none", "softmax")


def _tap_grid(offsets_k: torch.Tensor, i: int, j: int, kernel_size: int, dilation: int,
              height: int, width: int) -> torch.Tensor:
    """Sampling grid of tap (i, j) for ``grid_sample(align_corners=True)`` on an input padded by
    one zero pixel on every side.

    ``offsets_k``: ``(B, 2, H, W)`` = (dy, dx) of this tap. Returns ``(B, H, W, 2)`` as (x, y).
    """
    pad = (dilation * (kernel_size - 1) + 1) // 2
    ys = torch.arange(height, device=offsets_k.device, dtype=offsets_k.dtype)[:, None]
    xs = torch.arange(width, device=offsets_k.device, dtype=offsets_k.dtype)[None, :]
    # +1: coordinates in the padded frame, whose size (H + 2, W + 2) is always >= 3, so the
    # normalisation below never divides by zero (H = 1 or W = 1 work).
    y = ys - pad + i * dilation + offsets_k[:, 0] + 1
    x = xs - pad + j * dilation + offsets_k[:, 1] + 1
    return torch.stack((2 * x / (width + 1) - 1, 2 * y / (height + 1) - 1), dim=-1)


def _sample(frame_padded: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Bilinear samples with zero outside: a corner outside the frame reads the zero padding (or
    lies beyond it, where grid_sample reads zero), so the whole sample vanishes unless
    -1 < y < H and -1 < x < W, exactly as the official kernel."""
    return F.grid_sample(frame_padded, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def _sample_tap(frame_padded: torch.Tensor, offsets_k: torch.Tensor, k: int, kernel_size: int,
                dilation: int) -> torch.Tensor:
    """``V_k``: the padded frame ``(B, C, H+2, W+2)`` sampled at tap k (row-major) displaced by
    ``offsets_k`` ``(B, 2, H, W)``; returns ``(B, C, H, W)``."""
    i, j = divmod(k, kernel_size)
    height, width = offsets_k.shape[-2:]
    return _sample(frame_padded, _tap_grid(offsets_k, i, j, kernel_size, dilation, height, width))


def _grouped_dot(q: torch.Tensor, v: torch.Tensor, groups: int) -> torch.Tensor:
    """``(B, C, H, W) x (B, C, H, W) -> (B, G, H, W)``: channel sums within each group."""
    return rearrange(q * v, "b (g c) h w -> b g c h w", g=groups).sum(2)


def _scale_groups(a: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``a (B, G, H, W) * x (B, C, H, W)``: each group's weight applied to its channels (a
    broadcast over a grouped view, no repeated copy of ``a``)."""
    groups = a.shape[1]
    if groups == 1:
        return a * x
    return (rearrange(x, "b (g c) h w -> b g c h w", g=groups) * a[:, :, None]).flatten(1, 2)


class _SIFAAggregate(torch.autograd.Function):
    """A = sum_k a_k V_k for query frames ``q``, key/value frames ``kv`` and per-tap offsets."""

    @staticmethod
    def forward(ctx, q, kv, offsets, kernel_size, dilation, groups, normalize):
        B, C, H, W = q.shape
        kv_pad = F.pad(kv, (1, 1, 1, 1))
        taps = range(kernel_size * kernel_size)
        scale = 1.0 / C if normalize == "none" else C ** -0.5
        logits = q.new_empty(len(taps), B, groups, H, W)
        out = torch.zeros_like(q)
        for k in taps:
            v = _sample_tap(kv_pad, offsets[:, 2 * k:2 * k + 2], k, kernel_size, dilation)
            logits[k] = _grouped_dot(q, v, groups) * scale
            if normalize == "none":
                out += _scale_groups(logits[k], v)
        weights = logits if normalize == "none" else logits.softmax(dim=0)
        if normalize == "softmax":  # weights need every tap first: sample again
            for k in taps:
                out += _scale_groups(weights[k], _sample_tap(kv_pad, offsets[:, 2 * k:2 * k + 2], k, kernel_size,
                                                             dilation))
        ctx.save_for_backward(q, kv, offsets, weights)
        ctx.config = (kernel_size, dilation, groups, normalize, scale)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, kv, offsets, weights = ctx.saved_tensors
        kernel_size, dilation, groups, normalize, scale = ctx.config
        taps = range(kernel_size * kernel_size)
        kv_pad = F.pad(kv, (1, 1, 1, 1)).detach().requires_grad_(True)
        grad_q = torch.zeros_like(q)
        grad_kv_pad = torch.zeros_like(kv_pad)
        grad_offsets = torch.zeros_like(offsets)

        if normalize == "softmax":
            # The softmax couples the taps: dL/dlogit_k needs <grad_out, V_j> of every tap first.
            grad_weights = torch.empty_like(weights)
            for k in taps:
                v = _sample_tap(kv_pad, offsets[:, 2 * k:2 * k + 2], k, kernel_size, dilation)
                grad_weights[k] = _grouped_dot(grad_out, v, groups)
            grad_logits = weights * (grad_weights - (weights * grad_weights).sum(0, keepdim=True))

        for k in taps:
            off_k = offsets[:, 2 * k:2 * k + 2].detach().requires_grad_(True)
            with torch.enable_grad():
                v = _sample_tap(kv_pad, off_k, k, kernel_size, dilation)
            # normalize="none": a_k is the scaled logit, so dL/dlogit_k = <grad_out, V_k> (one pass).
            grad_logit = grad_logits[k] if normalize == "softmax" else _grouped_dot(grad_out, v.detach(), groups)
            coef = grad_logit * scale
            grad_q += _scale_groups(coef, v.detach())
            # V_k feeds the output (weight a_k) and its own logit (through q).
            grad_v = _scale_groups(weights[k], grad_out) + _scale_groups(coef, q)
            g_kv, g_off = torch.autograd.grad(v, (kv_pad, off_k), grad_v)
            grad_kv_pad += g_kv
            grad_offsets[:, 2 * k:2 * k + 2] = g_off
        grad_kv = grad_kv_pad[..., 1:-1, 1:-1]
        return grad_q, grad_kv, grad_offsets, None, None, None, None


def motion_map(features: torch.Tensor) -> torch.Tensor:
    """``sigmoid(F - P) * F + F`` with ``P_t = F_{t-1}`` and ``P_0 = F_0``: ``(N, C, T, H, W)``.

    (The official code builds P with an overlapping in-place copy that is wrong on CPU and racy
    on GPU; this is the intended previous frame.)
    """
    previous = torch.cat((features[:, :, :1], features[:, :, :-1]), dim=2)
    return torch.sigmoid(features - previous) * features + features


def sifa_attention(features: torch.Tensor, offsets: torch.Tensor, kernel_size: int = 3, dilation: int = 1,
                   groups: int = 1, normalize: str = "none") -> torch.Tensor:
    """Inter-frame deformable attention with residual: ``(N, C, T, H, W) -> (N, C, T, H, W)``.

    For query frame t < T-1, pixel (h, w) and tap k = (i, j) (row-major over the K x K kernel),
    with padding ``p = (d (K-1) + 1) // 2``::

        y = h - p + i d + offsets[:, 2k, t+1, h, w]      x = w - p + j d + offsets[:, 2k+1, t+1, h, w]
        V_k = bilinear(F[:, :, t+1], y, x)               (zero unless -1 < y < H and -1 < x < W)
        a_k = (1/C) sum_{c in group} F[c, t, h, w] V_k[c]          (normalize="none", official)
        a   = softmax_k(sum_{c in group} F[c, t, h, w] V_k[c] / sqrt(C))   (normalize="softmax")
        Y_t = F_t + sum_k a_k V_k,                       Y_{T-1} = F_{T-1}

    Args:
        features: ``(N, C, T, H, W)``; any T >= 1 (T = 1 returns the input), any H, W >= 1.
        offsets: ``(N, 2 K^2, T, H, W)``; channel 2k is tap k's vertical offset, 2k+1 horizontal.
            Offsets at frame t+1 steer the sampling of frame t+1 for query frame t.
        groups: channel groups with their own weights (offsets are shared); must divide C.
    Autocast: computed in float32 (sampling coordinates and sums need it) and returned in the
    input's dtype.
    """
    N, C, T, H, W = features.shape
    K2 = kernel_size * kernel_size
    if offsets.shape != (N, 2 * K2, T, H, W):
        raise ValueError(f"offsets must have shape {(N, 2 * K2, T, H, W)} for features {tuple(features.shape)} "
                         f"and kernel_size {kernel_size}, got {tuple(offsets.shape)}")
    if C % groups:
        raise ValueError(f"groups ({groups}) must divide the channels ({C})")
    if normalize not in NORMALIZE:
        raise ValueError(f"normalize must be one of {NORMALIZE}, got {normalize!r}")
    if T == 1:
        return features
    dtype = features.dtype
    with torch.autocast(device_type=features.device.type, enabled=False):
        f32 = features.float() if dtype in (torch.float16, torch.bfloat16) else features
        off = offsets.to(f32.dtype)
        q = rearrange(f32[:, :, :-1], "n c t h w -> (n t) c h w")
        kv = rearrange(f32[:, :, 1:], "n c t h w -> (n t) c h w")
        off = rearrange(off[:, :, 1:], "n k t h w -> (n t) k h w")
        agg = _SIFAAggregate.apply(q, kv, off, kernel_size, dilation, groups, normalize)
        agg = rearrange(agg, "(n t) c h w -> n c t h w", n=N)
        out = f32 + F.pad(agg, (0, 0, 0, 0, 0, 1))  # the last frame gets nothing
    return out.to(dtype)


def sifa_attention_naive(features: torch.Tensor, offsets: torch.Tensor, kernel_size: int = 3, dilation: int = 1,
                         groups: int = 1, normalize: str = "none") -> torch.Tensor:
    """The same function in the direct "sample all K^2 taps, then reduce" form, differentiated by
    autograd (keeps K^2 sampled copies for backward). For benchmarks and cross-checks."""
    N, C, T, H, W = features.shape
    if T == 1:
        return features
    q = rearrange(features[:, :, :-1], "n c t h w -> (n t) c h w")
    kv = F.pad(rearrange(features[:, :, 1:], "n c t h w -> (n t) c h w"), (1, 1, 1, 1))
    off = rearrange(offsets[:, :, 1:], "n k t h w -> (n t) k h w")
    v = torch.stack([_sample_tap(kv, off[:, 2 * k:2 * k + 2], k, kernel_size, dilation)
                     for k in range(kernel_size * kernel_size)])             # (K2, B, C, H, W)
    dots = rearrange(q * v, "k b (g c) h w -> k b g c h w", g=groups).sum(3)  # (K2, B, G, H, W)
    a = dots / C if normalize == "none" else (dots / C ** 0.5).softmax(0)
    agg = (a.repeat_interleave(C // groups, dim=2) * v).sum(0)
    agg = rearrange(agg, "(n t) c h w -> n c t h w", n=N)
    return features + F.pad(agg, (0, 0, 0, 0, 0, 1))
