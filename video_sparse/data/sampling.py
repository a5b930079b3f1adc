"""Frame samplers: which frame indices of a video form a clip.

Samplers are pure functions of the frame count, the view index and an explicit random generator,
so a clip depends only on (seed, epoch, index), never on worker scheduling or on the rank that
loads it (the dataset draws the generator from those three numbers).

Three strategies (``data.sampling``):

* ``uniform`` -- ``data.frames`` frames spread evenly over the whole video, the same ones every
  epoch (the motion benchmark and ``data=list``).
* ``segment`` -- TSN-style, for SSv2: the video is cut into ``data.frames`` equal segments, one
  random frame per segment in training, the segment centres in evaluation; evaluation views shift
  the picked point inside each segment.
* ``dense`` -- for Kinetics: ``data.frames`` frames ``data.interval`` apart from one start frame, a
  random start in training, evenly spaced starts for the evaluation views; videos shorter than the
  clip loop or repeat their last frame (``data.short_video``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SAMPLINGS = ("uniform", "segment", "dense")
SHORT_VIDEO_POLICIES = ("loop", "repeat_last")


def _check_common(num_frames: int, clip_frames: int, view: int, num_views: int) -> None:
    if num_frames < 1:
        raise ValueError(f"video has no frames (num_frames={num_frames})")
    if clip_frames < 1:
        raise ValueError(f"data.frames must be >= 1, got {clip_frames}")
    if not 0 <= view < num_views:
        raise ValueError(f"view {view} out of range for {num_views} views")


def segment_indices(num_frames: int, clip_frames: int, *, view: int = 0, num_views: int = 1,
                    rng: np.random.Generator | None = None) -> np.ndarray:
    """``clip_frames`` indices spread evenly over the whole video, in temporal order.

    The video is cut into ``clip_frames`` equal segments and one frame is taken per segment: a
    random one when ``rng`` is given (training jitter), otherwise the frame nearest the point at
    fraction ``(view + 0.5) / num_views`` of each segment, so ``num_views`` evaluation views are
    shifted evenly (one view: the segment centres). Videos shorter than the clip repeat frames.

    Ties between two frames go to the one farther from the middle of the video, so that the frames of a
    video played backwards are those of the video, backwards (``idx(n) == n - 1 - idx(n)[::-1]``;
    only an odd clip of an even video has a middle frame without a mirror). The motion benchmark
    needs this: with ties broken one way, a clip and its reversal would see frames shifted by one,
    which tells a fade-in from a fade-out without looking at the order.
    """
    _check_common(num_frames, clip_frames, view, num_views)
    segment = num_frames / clip_frames
    if rng is not None:
        idx = np.floor((np.arange(clip_frames) + rng.random(clip_frames)) * segment).astype(np.int64)
        return np.clip(idx, 0, num_frames - 1)
    # The point of each segment in frame-centre coordinates (frame i is centred at i), as the
    # exact fraction point = num / den: ties must be decided exactly, not by float rounding.
    k = np.arange(clip_frames, dtype=np.int64)
    den = 2 * num_views * clip_frames
    num = (2 * k * num_views + 2 * view + 1) * num_frames - num_views * clip_frames
    half = num_views * clip_frames  # den / 2
    before_middle = 2 * num <= (num_frames - 1) * den
    idx = np.where(before_middle, -((half - num) // den), (num + half) // den)  # round half away from the middle
    return np.clip(idx, 0, num_frames - 1)


# The name the motion benchmark and the first data path use; ``uniform`` sampling is segment
# sampling without the training jitter.
uniform_indices = segment_indices


def dense_span(clip_frames: int, interval: int) -> int:
    """Frames a dense clip spans: ``clip_frames`` frames ``interval`` apart."""
    return (clip_frames - 1) * interval + 1


def dense_indices(num_frames: int, clip_frames: int, interval: int = 1, *, view: int = 0, num_views: int = 1,
                  rng: np.random.Generator | None = None, short_video: str = "loop") -> np.ndarray:
    """``clip_frames`` indices ``interval`` apart from one start frame.

    The clip spans ``(clip_frames - 1) * interval + 1`` frames, so a video of ``num_frames`` frames
    offers ``num_frames - span + 1`` starts. Training (``rng`` given): a uniformly random start.
    Evaluation: view ``v`` of ``num_views`` starts at the centre of the ``v``-th of ``num_views``
    equal parts of the possible starts (one view: the centred clip), i.e. the clips are evenly
    spaced over the video.

    A video shorter than the span starts at frame 0 in training and evaluation alike; its clip
    wraps around to the first frame (``short_video="loop"``) or repeats the last frame
    (``"repeat_last"``).
    """
    _check_common(num_frames, clip_frames, view, num_views)
    if interval < 1:
        raise ValueError(f"data.interval must be >= 1, got {interval}")
    if short_video not in SHORT_VIDEO_POLICIES:
        raise ValueError(f"data.short_video must be one of {', '.join(SHORT_VIDEO_POLICIES)}, got {short_video!r}")
    slack = num_frames - dense_span(clip_frames, interval)  # number of possible starts - 1
    if slack < 0:
        start = 0
    elif rng is not None:
        start = int(rng.integers(0, slack + 1))
    else:
        start = slack * (2 * view + 1) // (2 * num_views)  # integer arithmetic: exact and platform-independent
    idx = start + interval * np.arange(clip_frames, dtype=np.int64)
    if slack < 0:
        idx = idx % num_frames if short_video == "loop" else np.minimum(idx, num_frames - 1)
    return idx


@dataclass(frozen=True)
class FrameSampler:
    """``data.sampling`` with its keys, as one small picklable object (it travels to the
    DataLoader workers with the dataset)."""

    kind: str = "uniform"        # uniform | segment | dense
    frames: int = 8              # data.frames
    interval: int = 1            # data.interval (dense only)
    short_video: str = "loop"    # data.short_video (dense only): loop | repeat_last

    def __post_init__(self):
        if self.kind not in SAMPLINGS:
            raise ValueError(f"data.sampling must be one of {', '.join(SAMPLINGS)}, got {self.kind!r}")
        if self.frames < 1:
            raise ValueError(f"data.frames must be >= 1, got {self.frames}")
        if self.interval < 1:
            raise ValueError(f"data.interval must be >= 1, got {self.interval}")
        if self.short_video not in SHORT_VIDEO_POLICIES:
            raise ValueError(f"data.short_video must be one of {', '.join(SHORT_VIDEO_POLICIES)}, "
                             f"got {self.short_video!r}")

    @property
    def span(self) -> int:
        """Frames one clip covers: a shorter video loops or repeats frames."""
        return dense_span(self.frames, self.interval) if self.kind == "dense" else self.frames

    def train_indices(self, num_frames: int, rng: np.random.Generator) -> np.ndarray:
        """A training clip; random draws come from ``rng`` only (``uniform`` draws none)."""
        if self.kind == "uniform":
            return segment_indices(num_frames, self.frames)
        if self.kind == "segment":
            return segment_indices(num_frames, self.frames, rng=rng)
        return dense_indices(num_frames, self.frames, self.interval, rng=rng, short_video=self.short_video)

    def eval_indices(self, num_frames: int, view: int = 0, num_views: int = 1) -> np.ndarray:
        """Temporal view ``view`` of ``num_views`` (``test.clips``); deterministic."""
        if self.kind == "dense":
            return dense_indices(num_frames, self.frames, self.interval, view=view, num_views=num_views,
                                 short_video=self.short_video)
        return segment_indices(num_frames, self.frames, view=view, num_views=num_views)
