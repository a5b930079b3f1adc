"""Decoded frames kept in shared memory, so that deterministic clips are decoded once per run.

With ``uniform`` sampling a video yields the same frames every epoch; decoding them again costs
as much CPU as training a small model on them (the motion benchmark on two cores). The cache is
one uint8 tensor in shared memory, allocated by the main process before the DataLoader starts
its workers: every worker writes the clips it decodes there and reads those decoded by the
others, across epochs, whether the workers are forked or spawned. Transforms (crops, flips,
normalisation) still run on every read.
"""
from __future__ import annotations

import logging
from typing import Callable

import numpy as np
import torch

log = logging.getLogger(__name__)


class FrameCache:
    """``(videos, views)`` slots of uint8 frames ``(T, H, W, 3)`` of one fixed shape.

    A clip whose decoded shape differs from the slot shape is returned but not cached.
    """

    def __init__(self, num_videos: int, views: int, frame_shape: tuple[int, int, int, int]):
        self.frame_shape = tuple(frame_shape)
        self.frames = torch.zeros(num_videos, views, *self.frame_shape, dtype=torch.uint8).share_memory_()
        self.filled = torch.zeros(num_videos, views, dtype=torch.bool).share_memory_()

    @property
    def nbytes(self) -> int:
        return self.frames.numel()

    def get(self, index: int, view: int, decode: Callable[[], np.ndarray]) -> np.ndarray:
        """The frames of ``(index, view)``: from the cache, or ``decode()`` and store them."""
        if self.filled[index, view]:
            return self.frames[index, view].numpy()
        frames = decode()
        if frames.shape == self.frame_shape:
            self.frames[index, view] = torch.from_numpy(frames)
            self.filled[index, view] = True  # after the data: a reader never sees a half-written slot
        return frames
