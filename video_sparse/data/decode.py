"""Reading a clip's frames from a video file: ``read_frames(path, choose, decoder)``.

Every decoder returns exactly the frames a sequential decode of the file's chosen video stream gives
(:func:`~.video_file.video_stream`: FFmpeg's best video stream), frame ``i`` being the ``i``-th frame
that decode outputs, unscaled or scaled by one filter (:class:`~.video_file.RGBConverter`):

* ``pyav`` (:mod:`.pyav_decode`): seeks through a packet index and proves every seek right on the
  decoder's output, else decodes the file from the start.
* ``decord`` (one thread): used for a file only once PyAV has shown that decord reads it exactly —
  one video stream, not AVI (decord returns wrong frames near the end of AVI files, at random),
  seeks that give the sequential decode's frames (:func:`~.pyav_decode.seek_verdict`), the
  same frame count. Any other file, and any file decord fails on, is read by PyAV. The verdict is
  remembered per process.
* ``auto`` (the default): the fastest decoder that is exact for the file. PyAV measured as fast as
  decord or faster on every file type benchmarked (``benchmarks/decoders.py``), and it checks what
  it returns, so ``auto`` is PyAV.

Each decoder runs under a timeout (:data:`DECODE_TIMEOUT_S`): a decoder that hangs costs one
unreadable video, not the run.
"""
from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
import threading
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Iterator

import numpy as np

from .pyav_decode import IndexFn, decode_pyav, frame_count, open_stream, seek_verdict
from .video_file import VideoDecodeError, file_key, scaled_size  # noqa: F401 - the module's API

log = logging.getLogger(__name__)

SHORT_VIDEO_FRAMES = 32

# Seconds one backend may spend on one video before the video counts as unreadable. Generous: a
# 10-s clip decodes in well under a second, PyAV's linear fallback decodes 60 s of 720p twice in a
# few seconds; a hang (a decoder looping on a corrupt file, a stalled network mount) never ends.
DECODE_TIMEOUT_S = 120.0

DECODERS = ("auto", "pyav", "decord")
# The backends each decoder tries, in order (the next one when a backend cannot read the file).
_CHAINS = {"auto": ("pyav",), "pyav": ("pyav",), "decord": ("decord", "pyav")}


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


@lru_cache(maxsize=1 << 16)
def _decord_verdict(key: tuple[str, int, int]) -> tuple[str, int]:
    """``(why decord must not read the file, '' when it may; the sequential decode's frame count)``."""
    import av

    path = key[0]
    with av.open(path) as container:
        if "avi" in container.format.name.split(","):
            return "an AVI file (decord returns wrong frames near the end of AVI files)", 0
        if len(container.streams.video) > 1:
            return f"{len(container.streams.video)} video streams (decord cannot be told which to read)", 0
    reason, frames = seek_verdict(path)
    return (f"seeking in it is not exact: {reason}", 0) if reason else ("", frames)


def decord_refusal(path: str) -> str:
    """Why decord cannot be trusted with this file ('' when it can; see the module docstring)."""
    return _decord_verdict(file_key(path))[0]


def _decode_decord(path: str, choose: IndexFn, short_side: int | None = None) -> np.ndarray:
    reason, frames = _decord_verdict(file_key(path))
    if reason:
        log.debug("%s: read by PyAV instead of decord: %s", path, reason)
        return decode_pyav(path, choose, short_side)
    decord = import_decord()

    # num_threads=1: decord's multi-threaded VP9 path crashes on some webm files (SSv2).
    reader = decord.VideoReader(path, num_threads=1, ctx=decord.cpu(0))
    n = len(reader)
    if n != frames:
        log.debug("%s: read by PyAV instead of decord: decord counts %d frames, a sequential decode %d", path, n, frames)
        return decode_pyav(path, choose, short_side)
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


BACKENDS = {"pyav": decode_pyav, "decord": _decode_decord}


def check_decoder(decoder: str) -> None:
    if decoder not in DECODERS:
        raise ValueError(f"unknown decoder {decoder!r}; choose one of {', '.join(DECODERS)}")


def read_frames(path: str | os.PathLike, choose: IndexFn, decoder: str = "auto", timeout: float | None = None,
                short_side: int | None = None) -> np.ndarray:
    """Decode the frames ``choose(num_frames)`` of a video as uint8 ``(T, H, W, 3)`` RGB.

    ``decoder``: one of :data:`DECODERS` (see the module docstring). ``short_side``: frames whose
    short side is longer come out scaled down to :func:`scaled_size` (None: as stored).

    Each backend of the decoder is given at most ``timeout`` seconds (None: :data:`DECODE_TIMEOUT_S`,
    read at each call; 0: no limit); raises :class:`VideoDecodeError` naming the file and every
    backend's error when none can read it (a timeout included).
    """
    check_decoder(decoder)
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise VideoDecodeError(f"{path}: file not found")
    if os.path.getsize(path) == 0:
        raise VideoDecodeError(f"{path}: empty file (0 bytes)")
    timeout = DECODE_TIMEOUT_S if timeout is None else timeout
    if timeout < 0:
        raise ValueError(f"read_frames: timeout must be >= 0 seconds (0: no limit), got {timeout}")
    errors, backends = [], _CHAINS[decoder]
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


@dataclass(frozen=True)
class VideoInfo:
    """The chosen video stream of a file as a decoder sees it."""

    stream: int  # the stream's index in the container
    frames: int  # frames of a sequential decode
    fps: float  # the stream's average frame rate
    width: int
    height: int
    codec: str
    container: str


def video_info(path: str | os.PathLike, decoder: str = "auto") -> VideoInfo:
    """Stream, frame count, fps and size of the video ``decoder`` reads from ``path`` (decord's own
    count and rate when it is trusted with the file)."""
    import av

    check_decoder(decoder)
    path = os.fspath(path)
    with av.open(path) as container:
        stream = open_stream(container)
        info = VideoInfo(stream.index, 0, float(stream.average_rate or stream.guessed_rate or 0), stream.width,
                         stream.height, stream.codec_context.name, container.format.name)
    if decoder == "decord" and not decord_refusal(path):
        reader = import_decord().VideoReader(path, num_threads=1)
        return VideoInfo(info.stream, len(reader), float(reader.get_avg_fps()), info.width, info.height, info.codec,
                         info.container)
    return VideoInfo(info.stream, frame_count(path), info.fps, info.width, info.height, info.codec, info.container)
