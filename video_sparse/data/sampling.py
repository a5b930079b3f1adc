"""Frame samplers: which frame indices of a video form a clip.

Samplers are pure functions of the frame count, the view index and a random generator, so a
clip depends only on (seed, epoch, index), never on worker scheduling.
"""
from __future__ import annotations

import numpy as np


def uniform_indices(num_frames: int, clip_frames: int, *, view: int = 0, num_views: int = 1,
                    rng: np.random.Generator | None = None) -> np.ndarray:
    """``clip_frames`` indices spread evenly over the whole video, in temporal order.

    The video is cut into ``clip_frames`` equal segments and one frame is taken per segment: a
    random one when ``rng`` is given (training jitter), otherwise the point at fraction
    ``(view + 0.5) / num_views`` of each segment, so ``num_views`` evaluation views are shifted
    evenly. Videos shorter than the clip repeat frames.
    """
    if num_frames < 1:
        raise ValueError(f"video has no frames (num_frames={num_frames})")
    if clip_frames < 1:
        raise ValueError(f"data.frames must be >= 1, got {clip_frames}")
    if not 0 <= view < num_views:
        raise ValueError(f"view {view} out of range for {num_views} views")
    segment = num_frames / clip_frames
    if rng is not None:
        position = rng.random(clip_frames)
    else:
        position = np.full(clip_frames, (view + 0.5) / num_views)
    idx = np.floor((np.arange(clip_frames) + position) * segment).astype(np.int64)
    return np.clip(idx, 0, num_frames - 1)
