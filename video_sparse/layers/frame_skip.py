"""SIFA-Net's frame skipping: the input of the dual branch sees every other moment of the clip."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def skip_frames(x: torch.Tensor) -> torch.Tensor:
    """``(N, C, T, H, W)`` -> ``(N, C, T // 2, H, W)``: the maximum over each pair of frames (a
    trailing odd frame is dropped; a single frame is kept as it is)."""
    if x.shape[2] < 2:
        return x
    return F.max_pool3d(x, (2, 1, 1), (2, 1, 1))
