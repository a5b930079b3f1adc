"""Slide attention (Pan et al., Slide-Transformer, CVPR 2023): every pixel attends to its ``ka x ka``
neighbourhood, the neighbours' keys and values made by "shifts as depthwise convolutions".

Per head, the neighbour ``i`` (offset ``(i // ka - 1, i % ka - 1)`` for ka = 3) of a map ``t`` is
``t`` shifted by that offset (zero padded) + the fixed path's bias + a learnable depthwise conv of
``t`` (the "deformed shift", with its bias); the same two paths make the keys and the values, and
the keys also get a per-head, per-neighbour positional bias (added to the keys, not the logits).
The softmax runs over the ``ka²`` neighbours; none is masked, an out-of-map neighbour carries the
biases.

The official code runs the fixed shift as a second, one-hot depthwise convolution. Both paths are
linear in ``t`` with the same support, so their sum is one depthwise convolution whose kernel is
the learnable kernel plus the one-hot one: this core takes that summed kernel and bias, in training
(the gradients of the learnable kernel and of both biases are unchanged: they enter additively) and
at inference alike; the fixed path costs no multiply-adds of its own. Re-parameterisation
(``SlideAttention.reparameterize``) stores the sum once.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def slide_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_heads: int, kernel: torch.Tensor,
                    bias: torch.Tensor, key_bias: torch.Tensor, kernel_size: int = 3) -> torch.Tensor:
    """Slide attention core.

    Args:
        q, k, v: ``(B, C, H, W)``, heads are contiguous chunks of ``C``; q already scaled.
        kernel, bias: the depthwise conv making the neighbours, ``(hd * ka², 1, ka, ka)`` and
            ``(hd * ka²,)``: output channel ``c * ka² + i`` is neighbour ``i`` of channel ``c``; shared
            by all heads, applied to keys and values (one-hot shifts + deformed shifts, summed).
        key_bias: ``(1, heads, 1, ka², 1, 1)`` added to the keys (``relative_position_bias_table``).
    Returns ``(B, C, H, W)``.
    """
    B, C, H, W = q.shape
    hd, taps = C // num_heads, kernel_size * kernel_size

    def neighbours(t: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, heads, hd, ka², H, W)
        out = F.conv2d(t.reshape(B * num_heads, hd, H, W), kernel, bias, padding=kernel_size // 2, groups=hd)
        return out.view(B, num_heads, hd, taps, H, W)

    keys = neighbours(k) + key_bias
    q = q.view(B, num_heads, hd, 1, H, W)
    attn = (q * keys).sum(2).softmax(dim=2)  # (B, heads, ka², H, W)
    return (attn.unsqueeze(2) * neighbours(v)).sum(3).reshape(B, C, H, W)
