"""CSWin's stripe attention with LePE: full attention inside each window of a grid of stripes.

The map is cut into windows of ``window_h x window_w`` pixels (``None``: the whole height or
width, so ``(None, sw)`` are CSWin's vertical stripes, ``(sw, None)`` its horizontal ones and
``(None, None)`` full attention). Every pixel attends, per head (contiguous channel chunks), to
the pixels of its window, and adds LePE: a depthwise 3x3 convolution of V computed *inside* the
window, zero-padded at the window's borders (it never reads across a stripe border).

Any H, W: the map is zero-padded at the bottom / right to a multiple of the window; padded pixels
are left out of every softmax (masked keys) and LePE reads them as zeros; the outputs at padded
positions are cropped. The official ImageNet models assert divisibility (square 224 inputs); the
official segmentation backbone pads symmetrically (``pad // 2`` at the top / left) and does not
mask, so padded keys there enter the softmax with logit ``q . 0 = 0``. At sizes divisible by the
window nothing is padded and the result is the official one.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange


def _key_mask(H: int, W: int, Hp: int, Wp: int, window_h: int, window_w: int, batch: int,
              device: torch.device) -> torch.Tensor | None:
    """``(batch x windows, 1, 1, window pixels)``: True for real keys; None when nothing is padded."""
    if (H, W) == (Hp, Wp):
        return None
    real = torch.zeros(Hp, Wp, dtype=torch.bool, device=device)
    real[:H, :W] = True
    real = rearrange(real, "(nh hs) (nw ws) -> (nh nw) (hs ws)", hs=window_h, ws=window_w)
    return real.repeat(batch, 1)[:, None, None, :]


def stripe_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window_h: int | None,
                     window_w: int | None, num_heads: int, scale: float, lepe_weight: torch.Tensor,
                     lepe_bias: torch.Tensor | None) -> torch.Tensor:
    """Window attention + in-window LePE of one CSWin branch.

    Args:
        q, k, v: ``(B, H, W, C)``, heads are contiguous chunks of ``C``.
        window_h, window_w: window size (None: the whole height / width).
        lepe_weight, lepe_bias: the depthwise conv ``(C, 1, 3, 3)``, ``(C,)`` (CSWin's ``get_v``).
    Returns ``(B, H, W, C)``.
    """
    B, H, W, C = q.shape
    hs, ws = window_h or H, window_w or W
    pad_h, pad_w = (-H) % hs, (-W) % ws
    if pad_h or pad_w:
        q, k, v = (F.pad(t, (0, 0, 0, pad_w, 0, pad_h)) for t in (q, k, v))
    Hp, Wp = H + pad_h, W + pad_w
    windows = "b (nh hs) (nw ws) (m d) -> (b nh nw) m (hs ws) d"
    qw, kw, vw = (rearrange(t, windows, hs=hs, ws=ws, m=num_heads) for t in (q, k, v))
    mask = _key_mask(H, W, Hp, Wp, hs, ws, B, q.device)
    out = F.scaled_dot_product_attention(qw, kw, vw, attn_mask=mask, scale=scale)
    v_maps = rearrange(v, "b (nh hs) (nw ws) c -> (b nh nw) c hs ws", hs=hs, ws=ws)
    lepe = F.conv2d(v_maps, lepe_weight, lepe_bias, padding=1, groups=C)
    out = out + rearrange(lepe, "bw (m d) hs ws -> bw m (hs ws) d", m=num_heads)
    out = rearrange(out, "(b nh nw) m (hs ws) d -> b (nh hs) (nw ws) (m d)", b=B, nh=Hp // hs, hs=hs, ws=ws)
    return out[:, :H, :W]
