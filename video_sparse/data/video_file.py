"""What every decoding path shares: the one rule that picks a file's video stream, the RGB
conversion (with the decode-time scaler), and the per-file verdicts a process remembers.

**One stream.** A file may hold several video streams (a second angle, a preview); every path —
training, evaluation, prediction, timelines, features, scan, frame counts, fps — reads FFmpeg's
*best* video stream (``av_find_best_stream``: the one ``ffmpeg`` itself would pick, and the only one
decord can read), through :func:`video_stream`.

**One scaler.** Frames larger than the clip needs are scaled down while they are converted to RGB
by FFmpeg's ``scale`` filter with bilinear weights, in YUV before the conversion — the filter graph
decord builds (``scale=W:H`` into an RGB24 sink), so both backends give identical scaled frames.
"""
from __future__ import annotations

import os
from fractions import Fraction

import numpy as np


class VideoDecodeError(RuntimeError):
    """A video file could not be read by any backend."""


def video_stream(container):
    """The video stream every path reads: FFmpeg's best video stream (raises
    :class:`VideoDecodeError` when the file has none)."""
    if not container.streams.video:
        raise VideoDecodeError("no video stream")
    return container.streams.best("video")


def scaled_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """``(H, W)`` with the short side at ``short_side`` and the aspect ratio kept: the size
    :class:`~.transforms.ClipTransform` resizes a frame to, so a frame decoded at it is not resized again."""
    scale = short_side / min(height, width)
    return max(short_side, round(height * scale)), max(short_side, round(width * scale))


class RGBConverter:
    """PyAV frames as RGB ``(H, W, 3)`` uint8, scaled to :func:`scaled_size` when their short side
    exceeds ``short_side`` (None: as stored), through FFmpeg's ``scale`` filter with bilinear weights
    (decord's filter graph, its default weights made explicit), built once per frame geometry."""

    def __init__(self, short_side: int | None = None):
        self.short_side = short_side
        self._graph, self._geometry = None, None

    def __call__(self, frame) -> np.ndarray:
        if not self.short_side or min(frame.height, frame.width) <= self.short_side:
            return frame.to_ndarray(format="rgb24")
        geometry = (frame.width, frame.height, frame.format.name)
        if geometry != self._geometry:
            self._graph, self._geometry = self._build(frame), geometry
        self._graph.push(frame)
        return self._graph.pull().to_ndarray()

    def _build(self, frame):
        from av.filter import Graph

        graph = Graph()
        # One thread: FFmpeg's slice threads would hold locks that a DataLoader worker forked from
        # this process inherits (it hung at start-up), and a worker is one core anyway.
        graph.threads = 1
        source = graph.add_buffer(width=frame.width, height=frame.height, format=frame.format.name,
                                  time_base=frame.time_base or Fraction(1, 1000))
        height, width = scaled_size(frame.height, frame.width, self.short_side)
        scale = graph.add("scale", f"{width}:{height}:flags=bilinear")
        rgb, sink = graph.add("format", "rgb24"), graph.add("buffersink")
        source.link_to(scale)
        scale.link_to(rgb)
        rgb.link_to(sink)
        graph.configure()
        return graph


def file_key(path: str) -> tuple[str, int, int]:
    """What a remembered verdict about a file is keyed on: a file rewritten in place is judged anew."""
    stat = os.stat(path)
    return path, stat.st_size, stat.st_mtime_ns
