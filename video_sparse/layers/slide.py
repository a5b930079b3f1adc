"""Slide attention module with the official Slide-Swin names (``qkv``, ``proj``, ``dep_conv``,
``dep_conv1``, ``relative_position_bias_table``) and its inference re-parameterisation."""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.nn.init import trunc_normal_

from ..ops.slide_attention import slide_attention


def one_hot_shift_kernel(channels: int, kernel_size: int) -> torch.Tensor:
    """``(channels * ka², 1, ka, ka)``: output channel ``c * ka² + i`` copies its input at the
    ``i``-th offset of the ``ka x ka`` neighbourhood (the official fixed ``dep_conv`` weight)."""
    taps = kernel_size * kernel_size
    weight = torch.zeros(channels * taps, 1, kernel_size, kernel_size)
    for c in range(channels):
        for i in range(taps):
            weight[c * taps + i, 0, i // kernel_size, i % kernel_size] = 1.0
    return weight


class SlideAttention(nn.Module):
    """Local attention over each pixel's ``kernel_size²`` neighbourhood (Slide-Swin stages 1-2).

    ``qkv`` (bias) laid out per head as ``[q_h | k_h | v_h]``; q scaled by ``hd^-0.5``; neighbour
    keys and values = fixed shifts (``dep_conv``: frozen one-hot kernel, learnable bias) + learnable
    deformed shifts (``dep_conv1``), shared by k and v, run as one depthwise conv of the summed
    kernels (see :mod:`video_sparse.ops.slide_attention`); a per-head, per-neighbour bias added to
    the keys; softmax over the neighbours (none masked); ``proj``. :meth:`reparameterize` stores
    the sum in ``dep_conv1`` for inference. Any H, W. Input/output ``(B, H, W, dim)``.
    """

    def __init__(self, dim: int, num_heads: int, kernel_size: int = 3):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} must be divisible by num_heads {num_heads}")
        hd, taps = dim // num_heads, kernel_size * kernel_size
        self.num_heads, self.kernel_size, self.scale = num_heads, kernel_size, hd ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros(1, num_heads, 1, taps, 1, 1))
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.dep_conv = nn.Conv2d(hd, hd * taps, kernel_size, padding=kernel_size // 2, groups=hd)
        self.dep_conv.weight = nn.Parameter(one_hot_shift_kernel(hd, kernel_size), requires_grad=False)
        self.dep_conv1 = nn.Conv2d(hd, hd * taps, kernel_size, padding=kernel_size // 2, groups=hd)
        self.reparameterized = False
        trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_load_state_dict_post_hook(self._check_fixed_kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        qkv = self.qkv(x).permute(0, 3, 1, 2).reshape(B, self.num_heads, 3, C // self.num_heads, H, W)
        q, k, v = (qkv[:, :, j].reshape(B, C, H, W) for j in range(3))
        kernel, bias = self.dep_conv1.weight, self.dep_conv1.bias
        if not self.reparameterized:
            kernel, bias = kernel + self.dep_conv.weight, bias + self.dep_conv.bias
        out = slide_attention(q * self.scale, k, v, self.num_heads, kernel, bias, self.relative_position_bias_table,
                              self.kernel_size)
        return self.proj(out.permute(0, 2, 3, 1))

    @staticmethod
    def _check_fixed_kernel(module: SlideAttention, incompatible_keys) -> None:
        """After a load: the fixed path is added as the one-hot kernel, so ``dep_conv.weight`` must be
        exactly that kernel (the official model keeps it frozen)."""
        expected = one_hot_shift_kernel(module.dep_conv.in_channels, module.kernel_size)
        if not torch.equal(module.dep_conv.weight.detach().cpu(), expected.to(module.dep_conv.weight.dtype)):
            raise ValueError("dep_conv.weight is not the one-hot shift kernel (the official model keeps it frozen): "
                             "not a Slide-Swin checkpoint")

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Fold the fixed path (one-hot kernel, its bias) into ``dep_conv1`` once, for inference:
        no per-call sum of the kernels and biases, the same outputs up to rounding. Irreversible
        (``dep_conv.bias`` stays but is no longer used)."""
        if not self.reparameterized:
            self.dep_conv1.weight += self.dep_conv.weight
            self.dep_conv1.bias += self.dep_conv.bias
            self.reparameterized = True
