"""Clips of windows slid over a whole video, from one pass of its decoder (``eval.py predict.window``).

A window of ``window`` seconds is ``W = round(window * fps)`` frames, windows start every
``S = round(stride * fps)`` frames from frame 0, and a last one ends at the last frame when the
regular ones stop short of it (a video shorter than a window is one window of the whole video).
Each window is sampled as evaluation samples a video of W frames (``FrameSampler.eval_indices``:
``clips`` temporal views) and cropped ``crops`` ways, so a window scores as a video of its frames
would. The frame rate is the stream's average one: in a variable-rate video a window holds W
frames, whatever their timestamps (the CSV gives the times of its first and last frame).

The video (its chosen stream, :func:`~.video_file.video_stream`) is decoded once, front to back, by
PyAV: frame ``i`` is the ``i``-th frame of a sequential decode, as in every other path. When its
packets give the exact frame count (one pass over them without decoding,
:class:`~.pyav_decode.PacketIndex`), the windows are planned ahead and only the frames they sample
are converted to RGB, at the short side the clip transform needs, and kept until the last window
using them is out. Otherwise (e.g. VP8) every frame is converted and the last W kept, for the
window ending at the last frame. Memory stays at a window's frames whatever the video's length.

A window's times are its frames' presentation times: frame ``i`` is shown at the ``i``-th smallest
timestamp (the packets' when they index the frames, else the decoded frames' within the last W).
A decoder may label frames with timestamps out of order (packed B-frames in AVI), so the label of
the ``i``-th frame out is not its time.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from .dataset import decoded_frames
from .pyav_decode import PacketIndex
from .video_file import RGBConverter, VideoDecodeError, video_stream
from .sampling import FrameSampler
from .transforms import ClipTransform


@dataclass(frozen=True)
class Window:
    """Frames ``[start, stop)`` of the video, shown from ``start_s`` to ``end_s`` seconds."""

    index: int
    start: int
    stop: int
    start_s: float
    end_s: float


def window_frames(window_s: float, stride_s: float, fps: float) -> tuple[int, int]:
    """``(W, S)``: frames per window and between window starts at ``fps`` (at least 1 each)."""
    return max(1, round(window_s * fps)), max(1, round(stride_s * fps))


def window_starts(num_frames: int, length: int, stride: int) -> list[int]:
    """Start frames of the windows over a video of ``num_frames`` frames (see the module docstring)."""
    if num_frames <= length:
        return [0]
    starts = list(range(0, num_frames - length + 1, stride))
    if starts[-1] + length < num_frames:
        starts.append(num_frames - length)
    return starts


GAP_S = 0.5  # a jump in presentation time this long (and over 4 frames) is reported


class WindowClips:
    """Iterate ``(Window, uint8 clip views (V, T, size, size, 3))`` over ``path`` in time order, V =
    clips x crops (``transform.to_model`` makes them the model's input). ``fps``, ``length`` (W)
    and ``stride`` (S) are known once the video is open; ``windows`` estimates how many (from the
    stream's frame count; None when the container does not say).
    A video that cannot be opened or decoded at all raises :class:`VideoDecodeError`; one that
    breaks off later ends the iteration early, with the reason in ``error``."""

    def __init__(self, path: str, sampler: FrameSampler, transform: ClipTransform, window_s: float, stride_s: float,
                 clips: int = 1, crops: int = 1):
        import av

        self.path, self.sampler, self.transform, self.clips, self.crops = path, sampler, transform, clips, crops
        try:
            self.container = av.open(path)
        except Exception as e:  # noqa: BLE001 - FFmpeg raises anything on a file it cannot open
            raise VideoDecodeError(f"{path}: cannot open ({type(e).__name__}: {e})") from e
        try:
            self.stream = video_stream(self.container)
        except VideoDecodeError as e:
            self.container.close()
            raise VideoDecodeError(f"{path}: {e}") from e
        self.stream.thread_type = "AUTO"
        rate = self.stream.average_rate or self.stream.guessed_rate
        if not rate:
            self.container.close()
            raise VideoDecodeError(f"{path}: the stream gives no frame rate")
        self.fps = float(rate)
        self.length, self.stride = window_frames(window_s, stride_s, self.fps)
        try:
            with av.open(path) as container:
                self.index = PacketIndex.read(container, video_stream(container))
        except Exception:  # noqa: BLE001 - not indexable: the windows are found while decoding
            self.index = None
        self.num_frames = self.index.num_frames if self.index is not None else None
        self.windows = (len(window_starts(self.num_frames, self.length, self.stride)) if self.num_frames
                        else None)  # for progress bars
        self.error: str | None = None  # why decoding stopped before the end, once iterated
        self.gaps: list[tuple[float, float]] = []  # (from, to) seconds without frames, once iterated
        self.corrupt = 0  # frames the decoder flagged corrupt, once iterated

    def _indices(self, start: int, length: int) -> list[np.ndarray]:
        """Frames of each temporal view of window ``[start, start + length)``."""
        return [start + self.sampler.eval_indices(length, view=c, num_views=self.clips) for c in range(self.clips)]

    def _clip(self, frames: dict[int, np.ndarray], start: int, length: int) -> torch.Tensor:
        views = []
        for idx in self._indices(start, length):
            rgb = np.stack([frames[i] for i in idx.tolist()])
            views += [self.transform(rgb, crop=k, num_crops=self.crops) for k in range(self.crops)]
        return torch.stack(views)

    def __iter__(self) -> Iterator[tuple[Window, torch.Tensor]]:
        """With the frame count known from the packets, the windows are planned and only their frames
        are converted to RGB; otherwise the last W frames are kept for the window ending at the last
        frame, which is found when the stream ends."""
        W, S, n, convert = self.length, self.stride, self.num_frames, RGBConverter(self.transform.decode_short_side)
        plan = [(s, min(W, n)) for s in window_starts(n, W, S)] if n else None
        needed = {int(i) for s, length in plan for idx in self._indices(s, length) for i in idx} if plan else None
        frames: dict[int, np.ndarray] = {}
        times: deque = deque(maxlen=W)  # the times of the last W frames
        count = emitted = 0
        try:
            for frame in self.container.decode(self.stream):
                if plan is not None and count == n:
                    break
                if needed is None or count in needed:
                    frames[count] = convert(frame)
                self._note_damage(frame, times[-1] if times else None)
                times.append(frame.time if frame.time is not None else count / self.fps)
                count += 1
                if plan is None:
                    plan_next = [(emitted * S, W)] if count == emitted * S + W else []
                else:
                    plan_next = plan[emitted:emitted + 1] if sum(plan[emitted]) == count else []
                for start, length in plan_next:
                    yield self._window(emitted, start, length, times, count), self._clip(frames, start, length)
                    emitted += 1
                # keep what a later window may need: from the next planned start, or the last W frames
                keep = plan[emitted][0] if plan is not None and emitted < len(plan) else count - W
                for i in [i for i in frames if i < keep]:
                    del frames[i]
        except Exception as e:  # noqa: BLE001 - a corrupt packet ends the pass; the windows before it stand
            if count == 0:
                raise VideoDecodeError(f"{self.path}: cannot decode ({type(e).__name__}: {e})") from e
            self.error = f"decoding stopped at frame {count} ({type(e).__name__}: {str(e).strip()[:200]})"
            return
        finally:
            self.container.close()
        if count == 0:
            raise VideoDecodeError(f"{self.path}: no frames")
        if plan is not None:
            if emitted < len(plan):
                self.error = f"the stream ended at frame {count}, its packets list {n}"
            return
        tail = window_starts(count, W, S)[-1]
        if emitted == 0 or tail > (emitted - 1) * S:  # the end is not covered yet (or a video shorter than W)
            length = min(W, count)
            yield self._window(emitted, tail, length, times, count), self._clip(frames, tail, length)

    def _note_damage(self, frame, previous: float | None) -> None:
        """Record a frame the decoder flags corrupt, and a jump in time without frames: a damaged
        stream the demuxer resynchronised after (or a long pause of a variable-rate stream)."""
        self.corrupt += bool(getattr(frame, "is_corrupt", False))
        if frame.time is not None and previous is not None and frame.time - previous > max(4 / self.fps, GAP_S):
            self.gaps.append((previous + 1 / self.fps, frame.time))

    def damage(self) -> str | None:
        """What a user must know about the frames the windows were made of (None: nothing)."""
        said = [f"no frames from {a:.3f} s to {b:.3f} s (a damaged or paused stream): a window across it joins the "
                "frames either side" for a, b in self.gaps[:3]]
        if len(self.gaps) > 3:
            said.append(f"{len(self.gaps) - 3} more such gaps")
        if self.corrupt:
            said.append(f"{self.corrupt} frames flagged corrupt by the decoder")
        return "; ".join(said) or None

    def _window(self, index: int, start: int, length: int, times: deque, count: int) -> Window:
        """Window ``index`` of frames ``[start, start + length)``; ``times``: the decoded timestamps
        of the last frames up to frame ``count - 1``."""
        if self.index is not None:
            first, last = self.index.frame_time(start), self.index.frame_time(start + length - 1)
        else:
            shown, oldest = sorted(times), count - len(times)  # the frame the oldest time is of
            first, last = shown[start - oldest], shown[start + length - 1 - oldest]
        return Window(index, start, start + length, round(float(first), 6), round(float(last + 1.0 / self.fps), 6))


class DecodedWindowClips(WindowClips):
    """:class:`WindowClips` over frames already decoded: uint8 ``(T, H, W, 3)`` (numpy or torch),
    every frame of the video in order, shown at ``fps`` (frame i from i / fps seconds)."""

    def __init__(self, frames: np.ndarray, fps: float, sampler: FrameSampler, transform: ClipTransform,
                 window_s: float, stride_s: float, clips: int = 1, crops: int = 1):
        frames = decoded_frames(frames, "timeline")
        if not fps > 0:
            raise ValueError(f"fps must be > 0 (the frames' rate), got {fps}")
        self.path, self.frames, self.fps = "<frames>", frames, float(fps)
        self.sampler, self.transform, self.clips, self.crops = sampler, transform, clips, crops
        self.length, self.stride = window_frames(window_s, stride_s, self.fps)
        self.num_frames = len(frames)
        self.windows = len(window_starts(self.num_frames, self.length, self.stride))
        self.error, self.gaps, self.corrupt = None, [], 0

    def __iter__(self) -> Iterator[tuple[Window, torch.Tensor]]:
        length = min(self.length, self.num_frames)
        for index, start in enumerate(window_starts(self.num_frames, self.length, self.stride)):
            window = Window(index, start, start + length, round(start / self.fps, 6),
                            round((start + length) / self.fps, 6))
            yield window, self._clip(self.frames, start, length)
