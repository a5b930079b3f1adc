"""The PyAV backend: exactly the frames of a sequential decode, reading only what a clip needs.

One pass over the packets (no decoding) gives the frame count and each frame's keyframe
(:class:`PacketIndex`); the decoder then seeks to the keyframe before the needed frames and
converts only those to RGB, so its memory does not grow with the video's length.

A seek is trusted only while the decoder proves it right: after a seek the frame of the keyframe
sought must come out first, as a key frame, every later frame in order, none flagged corrupt and
no packet failing to decode. Anything else — a stream whose keyframes are not decodable on their
own (periodic intra refresh, P-frames flagged as keyframes), an H.264 stream that decodes to
garbage without the first frame's encoder information, packed B-frames whose timestamps do not
follow the frames — sends the file to a linear decode from the first packet, remembered for the
rest of the process (:func:`needs_linear_decode`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .video_file import RGBConverter, VideoDecodeError, file_key, video_stream

log = logging.getLogger(__name__)

# Frame-index chooser: given the video's frame count, return the indices to decode.
IndexFn = Callable[[int], np.ndarray]

# Codecs that give exactly one frame per packet, with the packet's pts: for these the packets index
# the frames. Others (VP8 may store hidden alt-ref frames as packets of their own) decode linearly.
SEEKABLE_CODECS = frozenset({"h264", "hevc", "vp9", "av1", "mpeg4", "mpeg1video", "mpeg2video", "mjpeg"})

# A keyframe at most this many packets ahead is decoded up to rather than sought, which spares
# all-intra videos a seek per frame (0, 4 and 16 measured alike on the benchmark's videos).
SEEK_MIN_PACKETS = 4
# A seek that lands after its keyframe is retried this many times, each aimed a keyframe earlier
# (then the stream decodes linearly).
SEEK_RETRIES = 3

# Files of this process whose seeks were found wrong, and why: read linearly from then on.
_LINEAR_FILES: dict[tuple[str, int, int], str] = {}


def open_stream(container):
    """The chosen video stream of an open container, set to decode on one thread (a DataLoader
    worker is one core; decord runs one thread too)."""
    stream = video_stream(container)
    stream.codec_context.thread_count = 1
    return stream


def checked_indices(choose: IndexFn, n: int) -> np.ndarray:
    idx = np.asarray(choose(n), dtype=np.int64)
    if idx.ndim != 1 or idx.size == 0 or idx.min() < 0 or idx.max() >= n:
        raise IndexError(f"the frame chooser returned {idx.tolist()[:8]} for a video of {n} frames; "
                         f"it must return a non-empty 1-D array of indices in [0, {n})")
    return idx


def decode_pyav(path: str, choose: IndexFn, short_side: int | None = None) -> np.ndarray:
    """RGB frames ``choose(n)`` ``(T, H, W, 3)`` of the chosen stream: sought through the packet
    index, or decoded from the start when the packets cannot index the frames or seeking in this
    file was found wrong."""
    import av

    chosen = None
    if file_key(path) not in _LINEAR_FILES:
        with av.open(path) as container:
            stream = open_stream(container)
            index = PacketIndex.read(container, stream)
            if index is not None:
                idx = checked_indices(choose, index.num_frames)
                try:
                    frames = SeekingDecoder(container, stream, index, RGBConverter(short_side)).decode(np.unique(idx))
                    return np.stack([frames[i] for i in idx.tolist()])
                except Irregular as e:
                    _LINEAR_FILES[file_key(path)] = str(e)
                    log.debug("%s: %s; decoding it from the start from now on", path, e)
                    chosen = (index.num_frames, idx)
    return decode_pyav_linear(path, choose, chosen, short_side)


def decode_pyav_linear(path: str, choose: IndexFn, chosen: tuple[int, np.ndarray] | None = None,
                       short_side: int | None = None) -> np.ndarray:
    """Exact for any stream, at the cost of decoding it twice: once to count the frames (no RGB
    conversion), once up to the last needed frame. ``chosen``: ``(frame count, indices)`` already
    chosen from the packets, reused when the count agrees (``choose`` may draw random numbers)."""
    import av

    n = _decoded_count(path)
    if n == 0:
        raise VideoDecodeError("no frames")
    idx = chosen[1] if chosen is not None and chosen[0] == n else checked_indices(choose, n)
    wanted, last, frames, convert = set(idx.tolist()), int(idx.max()), {}, RGBConverter(short_side)
    with av.open(path) as container:
        for i, frame in enumerate(container.decode(open_stream(container))):
            if i in wanted:
                frames[i] = convert(frame)
            if i == last:
                break
    return np.stack([frames[i] for i in idx.tolist()])


def _decoded_count(path: str) -> int:
    """Frames of a sequential decode of the chosen stream, counted without RGB conversion."""
    import av

    with av.open(path) as container:
        return sum(1 for _ in container.decode(open_stream(container)))


def frame_count(path: str) -> int:
    """The number of frames a sequential decode of the chosen stream gives (from the packets when
    they index the frames, else by decoding)."""
    import av

    with av.open(path) as container:
        stream = open_stream(container)
        index = PacketIndex.read(container, stream)
    return index.num_frames if index is not None else _decoded_count(path)


def seek_verdict(path: str) -> tuple[str, int]:
    """``(why seeking in this file cannot give the frames of a sequential decode, '' when it can;
    the frame count its packets give, 0 when they do not index its frames)``: every keyframe after
    the first is sought and its frame and the next decoded, with the checks of
    :class:`SeekingDecoder`. A wrong verdict is remembered for the process (reads of the file then
    decode from the start). Raises what PyAV raises on a file it cannot open."""
    import av

    key = file_key(path)
    if key in _LINEAR_FILES:
        return _LINEAR_FILES[key], 0
    with av.open(path) as container:
        stream = open_stream(container)
        index = PacketIndex.read(container, stream)
        if index is None:
            return f"its {stream.codec_context.name} packets do not index its frames", 0
        starts = [index.frame_of[int(index.pts[k])] for k in index.keyframes[1:]]
        wanted = np.unique([i for s in starts for i in (s, s + 1) if i < index.num_frames])
        try:
            SeekingDecoder(container, stream, index, convert=lambda frame: None, seek_min_packets=0).decode(wanted)
        except Irregular as e:
            _LINEAR_FILES[key] = str(e)
            return str(e), 0
    return "", index.num_frames


def needs_linear_decode(path: str) -> str:
    """Why seeking in this file cannot give the frames of a sequential decode ('' when it can; see
    :func:`seek_verdict`)."""
    return seek_verdict(path)[0]


class Irregular(Exception):
    """The decoded stream disagrees with its packets or is broken after a seek: decode linearly."""


@dataclass
class PacketIndex:
    """The video packets of a file in decode order, read without decoding them.

    A full decode outputs one frame per shown packet, in pts order, so frame ``i`` is the packet of
    the ``i``-th smallest pts: the packets alone give the frame count, each frame's index and its
    presentation time, exactly, without assuming a constant frame rate. Shapes: ``pts`` ``(P,)``
    per packet in decode order; ``frame_pts``, ``frame_packet`` (its position) ``(N,)`` per frame;
    ``keyframes`` the positions of the keyframe packets.
    """

    pts: np.ndarray
    frame_pts: np.ndarray
    frame_packet: np.ndarray
    keyframes: np.ndarray
    position: dict[int, int]  # pts -> packet position
    frame_of: dict[int, int]  # pts -> frame index
    time_base: float

    @property
    def num_frames(self) -> int:
        return len(self.frame_pts)

    def frame_time(self, i: int) -> float:
        """Seconds at which frame ``i`` is shown."""
        return float(self.frame_pts[i]) * self.time_base

    @classmethod
    def read(cls, container, stream) -> PacketIndex | None:
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
                   {p: i for i, p in enumerate(pts[frame_packet].tolist())}, float(stream.time_base))

    def start_of(self, frame: int) -> int:
        """Packet position of the keyframe to decode ``frame`` from: the last keyframe before it in
        decode order that is not shown after it (an open GOP's I-frame is decoded before the
        B-frames shown ahead of it, which need the GOP before)."""
        j = int(np.searchsorted(self.keyframes, self.frame_packet[frame], side="right")) - 1
        while j >= 0 and self.pts[self.keyframes[j]] > self.frame_pts[frame]:
            j -= 1
        if j < 0:
            raise Irregular(f"no keyframe before frame {frame}")
        return int(self.keyframes[j])


class SeekingDecoder:
    """Decodes the frames of a :class:`PacketIndex` in increasing index order, seeking forward to a
    frame's keyframe when it lies more than ``seek_min_packets`` ahead of the packets read, and
    checking what the decoder outputs against the index: after a seek the keyframe's frame comes
    first and is a key frame, then every frame in order; no frame is flagged corrupt and no packet
    fails to decode. ``convert`` turns a wanted frame into what :meth:`decode` returns for it."""

    def __init__(self, container, stream, index: PacketIndex, convert: Callable, seek_min_packets: int = SEEK_MIN_PACKETS):
        self.container, self.stream, self.index, self.convert = container, stream, index, convert
        self.seek_min_packets = seek_min_packets
        self.packets = None  # demuxer iterator; None until the first seek
        self.next_packet = 0  # position of the packet it yields next
        self.landing = None  # after a seek: (packet aimed at, last position to land on, retries so far)
        self.expect = None  # the frame index the decoder outputs next (None: after a seek, unknown)
        self.keyframe = None  # after a seek: the frame index that must come out as a key frame

    def decode(self, wanted: np.ndarray) -> dict[int, object]:
        """``convert(frame)`` of the sorted, unique indices ``wanted``, by index."""
        frames: dict[int, object] = {}
        todo = set(wanted.tolist())
        for t in wanted.tolist():
            if t in frames:
                continue
            start = self.index.start_of(t)
            if self.packets is None or start > self.next_packet + self.seek_min_packets:
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

    def _decode_packet(self, todo: set[int], frames: dict[int, object]) -> None:
        packet = next(self.packets, None)
        if packet is None:
            raise Irregular("the stream ended before a needed frame")
        if packet.size:  # not the flush packet at the end
            position = self.index.position.get(packet.pts)
            if position is None:
                raise Irregular(f"a packet (pts {packet.pts}) missing from the index")
            if self.landing is not None:
                aim, limit, tries = self.landing
                if position > limit:
                    earlier = self.index.keyframes[self.index.keyframes < aim]
                    if len(earlier) == 0 or tries == SEEK_RETRIES:
                        raise Irregular(f"a seek to packet {limit} landed on packet {position}")
                    return self._seek(int(earlier[-1]), limit, tries + 1)
                # From the keyframe sought on, the decoder must output every frame, in order.
                # Frames shown before it (the previous GOP when the seek landed early, an open
                # GOP's leading B-frames) may be missing or broken: skipped, none is wanted.
                self.expect = int(np.searchsorted(self.index.frame_pts, self.index.pts[limit]))
                self.keyframe = self.index.frame_of.get(int(self.index.pts[limit]))  # None: cut by an edit list
                self.landing = None
            self.next_packet = position + 1
        try:
            decoded = packet.decode()
        except Exception as e:  # noqa: BLE001 - FFmpeg raises anything on data it cannot decode
            raise Irregular(f"a packet after a seek failed to decode ({type(e).__name__}: {e})") from e
        for frame in decoded:
            self._accept(frame, todo, frames)

    def _accept(self, frame, todo: set[int], frames: dict[int, object]) -> None:
        i = self.index.frame_of.get(frame.pts)
        if i is None:
            raise Irregular(f"a decoded frame's pts {frame.pts} is no packet's")
        if self.expect is None or i < self.expect:  # shown before the keyframe sought
            return
        if i != self.expect:
            raise Irregular(f"the decoder output frame {i} after frame {self.expect - 1}")
        if frame.is_corrupt:
            raise Irregular(f"frame {i} decoded after a seek is flagged corrupt")
        if i == self.keyframe and not frame.key_frame:
            raise Irregular(f"the keyframe packet of frame {i} decodes to a frame that is not a key frame")
        self.expect = i + 1
        if i in todo:
            frames[i] = self.convert(frame)
