"""Video decoding: decord first (one thread), PyAV when decord fails on a file.

PyAV reads only what a clip needs: one pass over the packets (no decoding) gives the frame count
and each frame's keyframe, then it seeks to the keyframe before the needed frames and converts only
those to RGB, so its memory does not grow with the video's length. Given the short side the clip
needs, both backends scale larger frames down while converting them to RGB (FFmpeg's scaler), so a
full-resolution RGB frame never exists. Each backend runs under a timeout (:data:`DECODE_TIMEOUT_S`):
a decoder that hangs costs one unreadable video, not the run.
"""
from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
import threading
from dataclasses import dataclass
from functools import partial
from typing import Callable, Iterator

import numpy as np

log = logging.getLogger(__name__)

# Frame-index chooser: given the video's frame count, return the indices to decode.
IndexFn = Callable[[int], np.ndarray]


SHORT_VIDEO_FRAMES = 32

# Seconds one backend may spend on one video before the video counts as unreadable. Generous: a
# 10-s clip decodes in well under a second, PyAV's linear fallback decodes 60 s of 720p twice in a
# few seconds; a hang (a decoder looping on a corrupt file, a stalled network mount) never ends.
DECODE_TIMEOUT_S = 120.0

# Codecs that give exactly one frame per packet, with the packet's pts: for these PyAV indexes the
# frames from the packets and seeks. Others (VP8 may store hidden alt-ref frames as packets of
# their own) decode linearly.
SEEKABLE_CODECS = frozenset({"h264", "hevc", "vp9", "av1", "mpeg4", "mpeg1video", "mpeg2video", "mjpeg"})

# A keyframe at most this many packets ahead is decoded up to rather than sought, which spares
# all-intra videos a seek per frame (0, 4 and 16 measured alike on the benchmark's videos).
SEEK_MIN_PACKETS = 4
# A seek that lands after its keyframe is retried this many times, each aimed a keyframe earlier
# (then the stream decodes linearly).
SEEK_RETRIES = 3


class VideoDecodeError(RuntimeError):
    """A video file could not be read by any backend."""


class DecodeTimeout(VideoDecodeError):
    """A backend took longer than its timeout on a video."""


def import_decord():
    """decord, imported after PyAV: decord bundles its own FFmpeg and libvpx, and whichever loads
    first serves both; with decord's, PyAV can no longer open its VP9 encoder in this process
    (writing .webm fails)."""
    try:
        importlib.import_module("av")
    except ImportError:
        pass
    import decord

    return decord


_DEVNULL: int | None = None


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Send what native code writes to file descriptor 2 to /dev/null for the block: FFmpeg (decord's
    bundled one, PyAV's) and decord's logger print a line or two for every file they cannot read
    ("moov atom not found", "ERROR opening ..."), which :class:`VideoDecodeError` already carries
    and the failure policy already counts."""
    global _DEVNULL
    if _DEVNULL is None:
        _DEVNULL = os.open(os.devnull, os.O_WRONLY)
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(_DEVNULL, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def scaled_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """``(H, W)`` with the short side at ``short_side`` and the aspect ratio kept: the size
    :class:`~.transforms.ClipTransform` resizes a frame to, so a frame decoded at it is not resized again."""
    scale = short_side / min(height, width)
    return max(short_side, round(height * scale)), max(short_side, round(width * scale))


def _decode_decord(path: str, choose: IndexFn, short_side: int | None = None) -> np.ndarray:
    decord = import_decord()

    # num_threads=1: decord's multi-threaded VP9 path crashes on some webm files (SSv2).
    reader = decord.VideoReader(path, num_threads=1, ctx=decord.cpu(0))
    n = len(reader)
    if n == 0:
        raise VideoDecodeError("no frames")
    if short_side:
        # decord tells the frame size only by decoding a frame (the first: a keyframe, ~1% of a clip).
        h, w = reader[0].shape[:2]
        if min(h, w) > short_side:
            height, width = scaled_size(h, w, short_side)
            reader = decord.VideoReader(path, num_threads=1, ctx=decord.cpu(0), width=width, height=height)
    idx = np.asarray(choose(n))
    lo, hi = int(idx.min()), int(idx.max())
    # decord seeks (flush + decode from a key frame) for every non-consecutive index. Short, small
    # videos (the motion set: 16 frames of 64 px) read faster as one span; on real videos the RGB
    # conversion of the skipped frames costs more than the seeks (benchmarks/data.py).
    if n <= SHORT_VIDEO_FRAMES and hi - lo + 1 <= 4 * len(np.unique(idx)):
        return reader.get_batch(list(range(lo, hi + 1))).asnumpy()[idx - lo]
    return reader.get_batch(list(idx)).asnumpy()


def frame_to_rgb(frame, short_side: int | None) -> np.ndarray:
    """A PyAV frame as RGB ``(H, W, 3)``, scaled down when its short side exceeds ``short_side``
    (FFmpeg's bilinear scaler, which widens its filter when shrinking; decord uses the same)."""
    if short_side and min(frame.height, frame.width) > short_side:
        height, width = scaled_size(frame.height, frame.width, short_side)
        return frame.to_ndarray(width=width, height=height, format="rgb24", interpolation="BILINEAR")
    return frame.to_ndarray(format="rgb24")


def _decode_pyav(path: str, choose: IndexFn, short_side: int | None = None) -> np.ndarray:
    """PyAV: seeks to the keyframe before each needed frame and converts only the needed frames to
    RGB (see :class:`_PacketIndex`); streams whose packets cannot index frames decode linearly."""
    import av

    chosen = None
    with av.open(path) as container:
        if not container.streams.video:
            raise VideoDecodeError("no video stream")
        stream = container.streams.video[0]
        index = _PacketIndex.read(container, stream)
        if index is not None:
            idx = _checked_indices(choose, index.num_frames)
            try:
                frames = _SeekingDecoder(container, stream, index, short_side).decode(np.unique(idx))
                return np.stack([frames[i] for i in idx.tolist()])
            except _Irregular as e:
                log.debug("%s: %s; decoding it from the start", path, e)
                chosen = (index.num_frames, idx)
    return _decode_pyav_linear(path, choose, chosen, short_side)


def _checked_indices(choose: IndexFn, n: int) -> np.ndarray:
    idx = np.asarray(choose(n), dtype=np.int64)
    if idx.ndim != 1 or idx.size == 0 or idx.min() < 0 or idx.max() >= n:
        raise IndexError(f"the frame chooser returned {idx.tolist()[:8]} for a video of {n} frames; "
                         f"it must return a non-empty 1-D array of indices in [0, {n})")
    return idx


def _decode_pyav_linear(path: str, choose: IndexFn, chosen: tuple[int, np.ndarray] | None = None,
                        short_side: int | None = None) -> np.ndarray:
    """Exact for any stream, at the cost of decoding it twice: once to count the frames (no RGB
    conversion), once up to the last needed frame. ``chosen``: ``(frame count, indices)`` already
    chosen from the packets, reused when the count agrees (``choose`` may draw random numbers)."""
    import av

    with av.open(path) as container:
        n = sum(1 for _ in container.decode(video=0))
    if n == 0:
        raise VideoDecodeError("no frames")
    idx = chosen[1] if chosen is not None and chosen[0] == n else _checked_indices(choose, n)
    wanted, last, frames = set(idx.tolist()), int(idx.max()), {}
    with av.open(path) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i in wanted:
                frames[i] = frame_to_rgb(frame, short_side)
            if i == last:
                break
    return np.stack([frames[i] for i in idx.tolist()])


class _Irregular(Exception):
    """The decoded stream disagrees with its packets' timestamps: the caller decodes linearly."""


@dataclass
class _PacketIndex:
    """The video packets of a file in decode order, read without decoding them.

    A full decode outputs one frame per shown packet, in pts order, so frame ``i`` is the packet of
    the ``i``-th smallest pts: the packets alone give the frame count and each frame's index,
    exactly, without assuming a constant frame rate. Shapes: ``pts`` ``(P,)`` per packet in decode
    order; ``frame_pts``, ``frame_packet`` (its position) ``(N,)`` per frame; ``keyframes`` the
    positions of the keyframe packets.
    """

    pts: np.ndarray
    frame_pts: np.ndarray
    frame_packet: np.ndarray
    keyframes: np.ndarray
    position: dict[int, int]  # pts -> packet position
    frame_of: dict[int, int]  # pts -> frame index

    @property
    def num_frames(self) -> int:
        return len(self.frame_pts)

    @classmethod
    def read(cls, container, stream) -> _PacketIndex | None:
        """None when the packets cannot index the frames: a codec not known to give one frame per
        packet (VP8's hidden alt-ref frames), missing or repeated pts, a stream not starting with a
        keyframe, PyAV < 12."""
        if stream.codec_context.codec.canonical_name not in SEEKABLE_CODECS:
            return None
        pts, keyframe, shown = [], [], []
        for packet in container.demux(stream):
            if packet.size == 0:  # the empty packet that flushes the decoder at the end
                continue
            if packet.pts is None:
                return None
            # Discarded packets (cut by an MP4 edit list) are decoded but never output. PyAV < 12
            # does not tell them: such a file's frame indices cannot be had from its packets.
            discard = getattr(packet, "is_discard", None)
            if discard is None:
                return None
            pts.append(packet.pts)
            keyframe.append(packet.is_keyframe)
            shown.append(not discard)
        if not any(shown) or not keyframe[0] or len(set(pts)) < len(pts):
            return None
        pts, shown = np.array(pts, np.int64), np.flatnonzero(shown)
        frame_packet = shown[np.argsort(pts[shown], kind="stable")]
        return cls(pts, pts[frame_packet], frame_packet, np.flatnonzero(keyframe),
                   {p: k for k, p in enumerate(pts.tolist())},
                   {p: i for i, p in enumerate(pts[frame_packet].tolist())})

    def start_of(self, frame: int) -> int:
        """Packet position of the keyframe to decode ``frame`` from: the last keyframe before it in
        decode order that is not shown after it (an open GOP's I-frame is decoded before the
        B-frames shown ahead of it, which need the GOP before)."""
        j = int(np.searchsorted(self.keyframes, self.frame_packet[frame], side="right")) - 1
        while j >= 0 and self.pts[self.keyframes[j]] > self.frame_pts[frame]:
            j -= 1
        if j < 0:
            raise _Irregular(f"no keyframe before frame {frame}")
        return int(self.keyframes[j])


def indexed_frame_count(path: str) -> int | None:
    """The exact frame count of a video's first video stream from its packets, without decoding
    them (:class:`_PacketIndex`); None when its packets cannot index its frames."""
    import av

    with av.open(path) as container:
        index = _PacketIndex.read(container, container.streams.video[0]) if container.streams.video else None
    return index.num_frames if index is not None else None


class _SeekingDecoder:
    """Decodes the frames of a :class:`_PacketIndex` in increasing index order, seeking forward to a
    frame's keyframe when it lies ahead of the packets read, and checking that what the decoder
    outputs agrees with the index (every frame known, consecutive after a seek)."""

    def __init__(self, container, stream, index: _PacketIndex, short_side: int | None = None):
        self.container, self.stream, self.index, self.short_side = container, stream, index, short_side
        self.packets = None  # demuxer iterator; None until the first seek
        self.next_packet = 0  # position of the packet it yields next
        self.landing = None  # after a seek: (packet aimed at, last position to land on, retries so far)
        self.expect = None  # the frame index the decoder outputs next (None: after a seek, unknown)

    def decode(self, wanted: np.ndarray) -> dict[int, np.ndarray]:
        """RGB ``(H, W, 3)`` frames of the sorted, unique indices ``wanted``, by index."""
        frames: dict[int, np.ndarray] = {}
        todo = set(wanted.tolist())
        for t in wanted.tolist():
            if t in frames:
                continue
            start = self.index.start_of(t)
            if self.packets is None or start > self.next_packet + SEEK_MIN_PACKETS:
                self._seek(start)
            while t not in frames:
                self._decode_packet(todo, frames)
        return frames

    def _seek(self, position: int, limit: int | None = None, tries: int = 0) -> None:
        # By the keyframe's pts: MP4 and Matroska land on the keyframe itself (its dts lands a GOP
        # earlier in MP4). MPEG-PS lands a packet or two after it: _decode_packet aims again, at
        # earlier keyframes, until the first packet read is not after ``limit``.
        self.container.seek(int(self.index.pts[position]), backward=True, any_frame=False, stream=self.stream)
        if self.packets is not None:
            self.packets.close()
        self.packets = self.container.demux(self.stream)
        self.landing, self.expect = (position, position if limit is None else limit, tries), None

    def _decode_packet(self, todo: set[int], frames: dict[int, np.ndarray]) -> None:
        packet = next(self.packets, None)
        if packet is None:
            raise _Irregular("the stream ended before a needed frame")
        if packet.size:  # not the flush packet at the end
            position = self.index.position.get(packet.pts)
            if position is None:
                raise _Irregular(f"a packet (pts {packet.pts}) missing from the index")
            if self.landing is not None:
                aim, limit, tries = self.landing
                if position > limit:
                    earlier = self.index.keyframes[self.index.keyframes < aim]
                    if len(earlier) == 0 or tries == SEEK_RETRIES:
                        raise _Irregular(f"a seek to packet {limit} landed on packet {position}")
                    return self._seek(int(earlier[-1]), limit, tries + 1)
                # From the keyframe sought on, the decoder must output every frame, in order.
                # Frames shown before it (the previous GOP when the seek landed early, an open
                # GOP's leading B-frames) may be missing or broken: skipped, none is wanted.
                self.expect = int(np.searchsorted(self.index.frame_pts, self.index.pts[limit]))
                self.landing = None
            self.next_packet = position + 1
        for frame in packet.decode():
            i = self.index.frame_of.get(frame.pts)
            if i is None:
                raise _Irregular(f"a decoded frame's pts {frame.pts} is no packet's")
            if self.expect is None or i < self.expect:  # shown before the keyframe sought
                continue
            if i != self.expect:
                raise _Irregular(f"the decoder output frame {i} after frame {self.expect - 1}")
            self.expect = i + 1
            if i in todo:
                frames[i] = frame_to_rgb(frame, self.short_side)


BACKENDS = {"decord": _decode_decord, "pyav": _decode_pyav}


def read_frames(path: str | os.PathLike, choose: IndexFn, backends: tuple[str, ...] = ("decord", "pyav"),
                timeout: float | None = None, short_side: int | None = None) -> np.ndarray:
    """Decode the frames ``choose(num_frames)`` of a video as uint8 ``(T, H, W, 3)`` RGB.

    ``short_side``: frames whose short side is longer come out scaled down to :func:`scaled_size`
    (None: as stored).

    Tries each backend in order, each for at most ``timeout`` seconds (None: :data:`DECODE_TIMEOUT_S`,
    read at each call; 0: no limit); raises :class:`VideoDecodeError` naming the file and every
    backend's error when none can read it (a timeout included).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise VideoDecodeError(f"{path}: file not found")
    if os.path.getsize(path) == 0:
        raise VideoDecodeError(f"{path}: empty file (0 bytes)")
    timeout = DECODE_TIMEOUT_S if timeout is None else timeout
    if timeout < 0:
        raise ValueError(f"read_frames: timeout must be >= 0 seconds (0: no limit), got {timeout}")
    errors = []
    for name in backends:
        try:
            # Silenced here, not in the backend's thread: a thread left hanging must not keep the
            # process's stderr pointing at /dev/null.
            with native_stderr_silenced():
                frames = _call_with_timeout(partial(BACKENDS[name], short_side=short_side), path, choose, timeout)
            if frames.ndim != 4 or frames.shape[-1] != 3:
                raise VideoDecodeError(f"unexpected frame array shape {frames.shape}")
            return frames
        except ImportError as e:  # a backend that is not installed is skipped, not an error
            errors.append(f"{name}: not installed ({e})")
        except DecodeTimeout as e:
            errors.append(f"{name}: {e}")
        except Exception as e:  # noqa: BLE001 - decoders raise anything on corrupt input
            errors.append(f"{name}: {type(e).__name__}: {str(e).strip()[:200]}")
        if name != backends[-1]:
            log.debug("%s failed on %s, trying the next backend", name, path)
    raise VideoDecodeError(f"{path}: cannot decode ({'; '.join(errors)})")


def _call_with_timeout(backend, path: str, choose: IndexFn, timeout: float) -> np.ndarray:
    """``backend(path, choose)``, given up on after ``timeout`` seconds (0: never).

    It runs in a thread of its own: both decoders release the GIL in native code, where a hang
    happens, so the caller gets control back (a SIGALRM handler would only run once the native call
    returned). A thread that times out is left behind as a daemon, with the video's file open.
    """
    if not timeout:
        return backend(path, choose)
    result = {}

    def run():
        try:
            result["frames"] = backend(path, choose)
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            result["error"] = e

    thread = threading.Thread(target=run, name=f"decode {os.path.basename(path)}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise DecodeTimeout(f"decode timed out after {timeout:g} s")
    if "error" in result:
        raise result["error"]
    return result["frames"]
