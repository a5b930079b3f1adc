"""SIFA: stand-alone inter-frame attention (Long et al., CVPR 2022) as pure tensor functions.

Every position of frame t attends to a deformable K x K neighbourhood of frame t+1 (offsets
predicted at frame t+1); the attended values are added to frame t, the last frame is unchanged.
Exact semantics (the official CUDA operator, restated): see :func:`sifa_attention`.

The fast path is a custom autograd Function that samples the K^2 taps (one ``grid_sample`` call),
reduces them and frees them, then samples again in backward instead of keeping K^2 sampled copies
alive between the two passes: what it saves for backward is O(input), not O(K^2 x input).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange

from .onnx_forms import tracing_for_onnx

NORMALIZE = ("none", "softmax")


def _tap_coordinates(offsets: torch.Tensor, kernel_size: int, dilation: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Where every tap samples, ``(y, x)`` each ``(B, K^2, H, W)``, in the frame padded by one
    zero pixel on every side. ``offsets``: ``(B, 2 K^2, H, W)``, (dy, dx) per tap."""
    _, _, height, width = offsets.shape
    pad = (dilation * (kernel_size - 1) + 1) // 2
    offsets = rearrange(offsets, "b (k two) h w -> b k two h w", two=2)
    steps = torch.arange(kernel_size, device=offsets.device, dtype=offsets.dtype) * dilation
    tap_y, tap_x = steps.repeat_interleave(kernel_size), steps.repeat(kernel_size)  # row-major taps
    ys = torch.arange(height, device=offsets.device, dtype=offsets.dtype)
    xs = torch.arange(width, device=offsets.device, dtype=offsets.dtype)
    y = (tap_y[:, None, None] + ys[None, :, None] - pad + 1) + offsets[:, :, 0]
    x = (tap_x[:, None, None] + xs[None, None, :] - pad + 1) + offsets[:, :, 1]
    return y, x


def _tap_grid(offsets: torch.Tensor, kernel_size: int, dilation: int) -> torch.Tensor:
    """Sampling grid of every tap for ``grid_sample(align_corners=True)`` on an input padded by
    one zero pixel on every side: ``(B, K^2 H, W, 2)`` as (x, y), the K^2 taps stacked along the
    height, so one ``grid_sample`` call samples them all."""
    height, width = offsets.shape[-2:]
    y, x = _tap_coordinates(offsets, kernel_size, dilation)
    # the padded frame's size (H + 2, W + 2) is always >= 3: the normalisation never divides by zero
    grid = torch.stack((2 * x / (width + 1) - 1, 2 * y / (height + 1) - 1), dim=-1)
    return rearrange(grid, "b k h w xy -> b (k h) w xy")


def _sample_taps(frames: torch.Tensor, offsets: torch.Tensor, kernel_size: int, dilation: int) -> torch.Tensor:
    """``V``: frames ``(B, C, H, W)`` bilinearly sampled at every tap displaced by ``offsets``
    ``(B, 2 K^2, H, W)``; returns ``(B, C, K^2, H, W)``.

    Zero outside: the frame is padded by one zero pixel, a corner outside the frame reads that
    padding (or lies beyond it, where grid_sample reads zero), so a sample vanishes unless
    -1 < y < H and -1 < x < W, exactly as the official kernel.
    """
    height = frames.shape[-2]
    grid = _tap_grid(offsets, kernel_size, dilation)
    v = F.grid_sample(F.pad(frames, (1, 1, 1, 1)), grid, mode="bilinear", padding_mode="zeros",
                      align_corners=True)
    return rearrange(v, "b c (k h) w -> b c k h w", h=height)


def _sample_taps_by_rows(frames: torch.Tensor, offsets: torch.Tensor, kernel_size: int,
                         dilation: int) -> torch.Tensor:
    """:func:`_sample_taps` as a row gather of the channels-last pixels at the four bilinear corners
    and their weights: the form traced into ONNX files (:mod:`.onnx_forms`; onnxruntime gathers
    rows ~2x faster than it runs ``GridSample``). Same coordinates, same zero padding; equal up to
    float rounding."""
    B, C, height, width = frames.shape
    K2 = kernel_size * kernel_size
    y, x = _tap_coordinates(offsets, kernel_size, dilation)
    y0, x0 = y.floor(), x.floor()
    rows = rearrange(F.pad(frames, (1, 1, 1, 1)), "b c h w -> (b h w) c")  # a zero pixel around
    first = (torch.arange(B, device=frames.device) * (height + 2) * (width + 2)).view(B, 1, 1, 1)
    cy = torch.stack((y0, y0, y0 + 1, y0 + 1), dim=-1)  # the four corners, last axis
    cx = torch.stack((x0, x0 + 1, x0, x0 + 1), dim=-1)
    weight = (1 - (y[..., None] - cy).abs()) * (1 - (x[..., None] - cx).abs())
    weight = weight * ((cy >= 0) & (cy <= height + 1) & (cx >= 0) & (cx <= width + 1))
    index = first[..., None] + (cy.clamp(0, height + 1) * (width + 2) + cx.clamp(0, width + 1)).long()
    corners = rows.index_select(0, index.flatten()).view(B, K2, height, width, 4, C)
    return rearrange((corners * weight[..., None]).sum(4), "b k h w c -> b c k h w")


def _grouped(x: torch.Tensor, groups: int) -> torch.Tensor:
    """``(B, C, ...) -> (B, G, C / G, ...)`` (a view)."""
    return x.unflatten(1, (groups, x.shape[1] // groups))


class _SIFAAggregate(torch.autograd.Function):
    """A = sum_k a_k V_k for query frames ``q``, key/value frames ``kv`` and per-tap offsets.

    Forward samples the K^2 taps, reduces them and lets them go; only the inputs and the
    ``(B, G, K^2, H, W)`` weights are saved. Backward samples again (with autograd through
    ``grid_sample`` for the key/value and offset gradients).
    """

    @staticmethod
    def forward(ctx, q, kv, offsets, kernel_size, dilation, groups, normalize):
        C = q.shape[1]
        scale = 1.0 / C if normalize == "none" else C ** -0.5
        sample = _sample_taps_by_rows if tracing_for_onnx() else _sample_taps
        v = _grouped(sample(kv, offsets, kernel_size, dilation), groups)  # (B, G, C/G, K2, H, W)
        logits = (_grouped(q, groups).unsqueeze(3) * v).sum(2) * scale           # (B, G, K2, H, W)
        weights = logits if normalize == "none" else logits.softmax(dim=2)
        out = (weights.unsqueeze(2) * v).sum(3).flatten(1, 2)
        ctx.save_for_backward(q, kv, offsets, weights)
        ctx.config = (kernel_size, dilation, groups, normalize, scale)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, kv, offsets, weights = ctx.saved_tensors
        kernel_size, dilation, groups, normalize, scale = ctx.config
        kv_leaf = kv.detach().requires_grad_(True)
        offsets_leaf = offsets.detach().requires_grad_(True)
        with torch.enable_grad():
            v_all = _sample_taps(kv_leaf, offsets_leaf, kernel_size, dilation)
        v = _grouped(v_all.detach(), groups)
        grad_out_g = _grouped(grad_out, groups)
        # dL/da_k = <grad_out, V_k> per group; through the softmax when there is one.
        grad_weights = (grad_out_g.unsqueeze(3) * v).sum(2)
        if normalize == "softmax":
            grad_logits = weights * (grad_weights - (weights * grad_weights).sum(2, keepdim=True))
        else:
            grad_logits = grad_weights
        coef = grad_logits * scale
        grad_q = (coef.unsqueeze(2) * v).sum(3).flatten(1, 2)
        # V_k feeds the output (weight a_k) and its own logit (through q).
        grad_v = weights.unsqueeze(2) * grad_out_g.unsqueeze(3) + coef.unsqueeze(2) * _grouped(q, groups).unsqueeze(3)
        grad_kv, grad_offsets = torch.autograd.grad(v_all, (kv_leaf, offsets_leaf), grad_v.flatten(1, 2))
        return grad_q, grad_kv, grad_offsets, None, None, None, None


# torch.compile runs the operator eagerly and compiles around it: its backward re-samples the taps
# under torch.autograd.grad, which dynamo cannot trace (it fell back to re-tracing every step).
@torch.compiler.disable
def _aggregate(q, kv, offsets, kernel_size: int, dilation: int, groups: int, normalize: str) -> torch.Tensor:
    return _SIFAAggregate.apply(q, kv, offsets, kernel_size, dilation, groups, normalize)


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
    return _sifa(features, offsets, kernel_size, dilation, groups, normalize, residual=True)


def sifa_aggregate(features: torch.Tensor, offsets: torch.Tensor, kernel_size: int = 3, dilation: int = 1,
                   groups: int = 1, normalize: str = "none") -> torch.Tensor:
    """SIFA's aggregation alone, ``A = sum_k a_k V_k`` with ``A_{T-1} = 0``: ``sifa_attention = F + A``.

    For blocks whose residual stream already carries ``F``. Arguments, shapes and autocast as
    :func:`sifa_attention`.
    """
    return _sifa(features, offsets, kernel_size, dilation, groups, normalize, residual=False)


def _sifa(features, offsets, kernel_size, dilation, groups, normalize, residual: bool) -> torch.Tensor:
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
        return features if residual else torch.zeros_like(features)
    dtype = features.dtype
    with torch.autocast(device_type=features.device.type, enabled=False):
        f32 = features.float() if dtype in (torch.float16, torch.bfloat16) else features
        off = offsets.to(f32.dtype)
        q = rearrange(f32[:, :, :-1], "n c t h w -> (n t) c h w")
        kv = rearrange(f32[:, :, 1:], "n c t h w -> (n t) c h w")
        off = rearrange(off[:, :, 1:], "n k t h w -> (n t) k h w")
        agg = _aggregate(q, kv, off, kernel_size, dilation, groups, normalize)
        out = F.pad(rearrange(agg, "(n t) c h w -> n c t h w", n=N), (0, 0, 0, 0, 0, 1))  # the last frame gets nothing
        if residual:
            out = f32 + out  # in float32 under autocast, rounded once
    return out.to(dtype)


def sifa_attention_naive(features: torch.Tensor, offsets: torch.Tensor, kernel_size: int = 3, dilation: int = 1,
                         groups: int = 1, normalize: str = "none") -> torch.Tensor:
    """The same function in the direct "sample all K^2 taps, then reduce" form, differentiated by
    autograd (keeps K^2 sampled copies for backward). For benchmarks and cross-checks."""
    N, C, T, H, W = features.shape
    if T == 1:
        return features
    q = rearrange(features[:, :, :-1], "n c t h w -> (n t) c h w")
    kv = rearrange(features[:, :, 1:], "n c t h w -> (n t) c h w")
    off = rearrange(offsets[:, :, 1:], "n k t h w -> (n t) k h w")
    v = _sample_taps(kv, off, kernel_size, dilation)                          # (B, C, K2, H, W)
    dots = rearrange(q.unsqueeze(2) * v, "b (g c) k h w -> b g c k h w", g=groups).sum(2)  # (B, G, K2, H, W)
    a = dots / C if normalize == "none" else (dots / C ** 0.5).softmax(2)
    agg = (a.repeat_interleave(C // groups, dim=1) * v).sum(2)
    agg = rearrange(agg, "(n t) c h w -> n c t h w", n=N)
    return features + F.pad(agg, (0, 0, 0, 0, 0, 1))
