"""Video decoding: decord first (one thread), PyAV when decord fails on a file."""
from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import Callable, Iterator

import numpy as np

log = logging.getLogger(__name__)

# Frame-index chooser: given the video's frame count, return the indices to decode.
IndexFn = Callable[[int], np.ndarray]


SHORT_VIDEO_FRAMES = 32


class VideoDecodeError(RuntimeError):
    """A video file could not be read by any backend."""


def import_decord():
    """decord, imported after PyAV: decord bundles its own FFmpeg and libvpx, and whichever loads
    first serves both; with decord's, PyAV can no longer open its VP9 encoder in this process
    (writing .webm fails)."""
    try:
        import av  # noqa: F401
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


def _decode_decord(path: str, choose: IndexFn) -> np.ndarray:
    with native_stderr_silenced():
        return _read_decord(path, choose)


def _read_decord(path: str, choose: IndexFn) -> np.ndarray:
    decord = import_decord()

    # num_threads=1: decord's multi-threaded VP9 path crashes on some webm files (SSv2).
    reader = decord.VideoReader(path, num_threads=1, ctx=decord.cpu(0))
    n = len(reader)
    if n == 0:
        raise VideoDecodeError("no frames")
    idx = np.asarray(choose(n))
    lo, hi = int(idx.min()), int(idx.max())
    # decord seeks (flush + decode from a key frame) for every non-consecutive index. Short, small
    # videos (the motion set: 16 frames of 64 px) read faster as one span; on real videos the RGB
    # conversion of the skipped frames costs more than the seeks (benchmarks/data.py).
    if n <= SHORT_VIDEO_FRAMES and hi - lo + 1 <= 4 * len(np.unique(idx)):
        return reader.get_batch(list(range(lo, hi + 1))).asnumpy()[idx - lo]
    return reader.get_batch(list(idx)).asnumpy()


def _decode_pyav(path: str, choose: IndexFn) -> np.ndarray:
    import av

    with native_stderr_silenced(), av.open(path) as container:
        if not container.streams.video:
            raise VideoDecodeError("no video stream")
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    if not frames:
        raise VideoDecodeError("no frames")
    return np.stack([frames[i] for i in choose(len(frames))])


BACKENDS = {"decord": _decode_decord, "pyav": _decode_pyav}


def read_frames(path: str | os.PathLike, choose: IndexFn, backends: tuple[str, ...] = ("decord", "pyav")) -> np.ndarray:
    """Decode the frames ``choose(num_frames)`` of a video as uint8 ``(T, H, W, 3)`` RGB.

    Tries each backend in order; raises :class:`VideoDecodeError` naming the file and every
    backend's error when none can read it.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise VideoDecodeError(f"{path}: file not found")
    if os.path.getsize(path) == 0:
        raise VideoDecodeError(f"{path}: empty file (0 bytes)")
    errors = []
    for name in backends:
        try:
            frames = BACKENDS[name](path, choose)
            if frames.ndim != 4 or frames.shape[-1] != 3:
                raise VideoDecodeError(f"unexpected frame array shape {frames.shape}")
            return frames
        except ImportError as e:  # a backend that is not installed is skipped, not an error
            errors.append(f"{name}: not installed ({e})")
        except Exception as e:  # noqa: BLE001 - decoders raise anything on corrupt input
            errors.append(f"{name}: {type(e).__name__}: {str(e).strip()[:200]}")
            if name != backends[-1]:
                log.debug("%s failed on %s, trying the next backend", name, path)
    raise VideoDecodeError(f"{path}: cannot decode ({'; '.join(errors)})")
