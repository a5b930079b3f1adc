"""Probing every video of a dataset before training: which are missing, unreadable, shorter than
one clip, or decoded from the start because seeking in them does not give the frames of a sequential
decode. The command is ``python -m video_sparse.data.scan data=...`` (``apps/scan.py``)."""
from __future__ import annotations

import csv
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from pathlib import Path
from typing import Callable, NamedTuple

from tqdm import tqdm

from ..errors import UserError
from ..options import ConfigError
from .decode import VideoDecodeError, read_frames, video_info
from .pyav_decode import needs_linear_decode

STATUSES = ("ok", "needs_linear_decode", "short", "missing", "unreadable")
REPORT_COLUMNS = ("split", "path", "status", "frames", "stream", "fps", "detail")


class Probe(NamedTuple):
    """What the scan learns of one video: its frame count, the error that made it unreadable ('' if
    none), the chosen stream's index and frame rate, and why it is decoded from the start ('' if
    seeks in it are exact)."""

    frames: int
    error: str
    stream: int = -1
    fps: float = 0.0
    linear: str = ""


def probe_video(path: str, decoder: str = "auto") -> Probe:
    """Decode the first, middle and last frames of ``path`` with ``decoder``; read its chosen stream's
    index and frame rate; check every keyframe seek
    (:func:`~.pyav_decode.needs_linear_decode`)."""
    count = 0

    def ends(n: int):
        nonlocal count
        count = n
        return [0, n // 2, n - 1]

    try:
        read_frames(path, ends, decoder)
        info = video_info(path, decoder)
        linear = needs_linear_decode(path)
    except VideoDecodeError as e:
        return Probe(0, str(e))
    except Exception as e:  # noqa: BLE001 - FFmpeg raises anything on a file it cannot read
        return Probe(0, f"{type(e).__name__}: {str(e).strip()[:200]}")
    return Probe(count, "", info.stream, round(info.fps, 3), linear)


# A probe that does not return: the decoder killed its process (a segfault in FFmpeg, an abort).
CRASHED = "the decoding process died on this video (a decoder crash)"
# Crashes on this many videos in a row, none probed normally: the decoding libraries are broken,
# not the videos (reporting each of 10^5 videos as crashed would take hours of pool restarts).
MAX_CRASHES_FIRST = 5


class ScanError(UserError):
    """The scan cannot probe videos at all (the message says why and the fix)."""


def _pool_pass(probe: Callable[[str], tuple], paths: list[str], workers: int,
               report: Callable[[int, tuple], None]) -> list[int]:
    """Probe ``paths`` in one pool of ``workers`` processes, calling ``report(i, result)`` as each
    finishes (an exception in ``probe`` is that video's error). Returns the indices not probed, in
    order, when a worker process died (which breaks the pool), else []. Probes are handed out in
    order, so the process died on one of the first ``2 * workers + 1`` indices returned (running,
    or in the executor's queue of ``workers + 1``)."""
    pending: dict[Future, int] = {}
    sent = 0  # paths[:sent] were handed to the pool
    broken = False
    with ProcessPoolExecutor(workers, mp_context=get_context()) as pool:
        while not broken and (pending or sent < len(paths)):
            # A bounded window of probes in flight: 10^5 futures at once would waste memory.
            while sent < len(paths) and len(pending) < 4 * workers:
                try:
                    pending[pool.submit(probe, paths[sent])] = sent
                except BrokenProcessPool:
                    broken = True
                    break
                sent += 1
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                error = future.exception()
                if isinstance(error, BrokenProcessPool):
                    broken = True
                else:
                    report(pending.pop(future), future.result() if error is None else
                           (0, f"{type(error).__name__}: {error}"))
    if not broken:
        return []
    for future, i in list(pending.items()):  # finished before the pool broke: keep their results
        if future.done() and future.exception() is None:
            report(pending.pop(future), future.result())
    return sorted(pending.values()) + list(range(sent, len(paths)))


def probe_all(paths: list[str], workers: int, probe: Callable[[str], tuple] = probe_video,
              progress: bool = True) -> list[tuple]:
    """``probe(path)`` of every path, in ``workers`` processes, in the order of ``paths``. A video
    whose probe kills its process is reported as :data:`CRASHED`: after a worker dies, the videos
    that were in flight are probed again one at a time, which names the culprit, and the rest go
    on in a fresh pool. ``probe`` must be picklable (a module-level function)."""
    results: list[tuple | None] = [None] * len(paths)
    bar = tqdm(total=len(paths), desc="scan", unit="video", disable=not progress)
    todo, crashes = list(range(len(paths))), 0

    def done(subset: list[int]) -> Callable[[int, tuple], None]:
        def report(k: int, result: tuple) -> None:
            results[subset[k]] = result
            bar.update()
        return report

    while todo:
        left = [todo[k] for k in _pool_pass(probe, [paths[i] for i in todo], workers, done(todo))]
        suspects, todo = left[:2 * workers + 1], left[2 * workers + 1:]
        while suspects:  # one process: the first video not probed is the one it died on
            unprobed = _pool_pass(probe, [paths[i] for i in suspects], 1, done(suspects))
            if not unprobed:
                break
            done(suspects)(unprobed[0], (0, CRASHED))
            crashes += 1
            if crashes >= MAX_CRASHES_FIRST and crashes == sum(r is not None for r in results):
                raise ScanError(f"the decoding process died on each of the first {crashes} videos scanned (e.g. "
                                f"{paths[suspects[unprobed[0]]]}): the video libraries are broken, not the videos. "
                                "Fix: check the install with python -c 'import decord, av' (pip install -e . "
                                "reinstalls them)")
            suspects = [suspects[k] for k in unprobed[1:]]
    bar.close()
    return results


def scan_videos(videos: dict[str, list[str]], missing: dict[str, list[str]], need: int,
                workers: int, probe: Callable[[str], tuple] = probe_video) -> tuple[dict, list[tuple]]:
    """Probe ``videos`` (split -> paths) in ``workers`` processes; a video of fewer than ``need``
    frames is short. Returns ``{split: {status: count}}`` and a report row for every video
    (``missing``, split -> paths, first). ``probe``: see :func:`probe_all` (a :class:`Probe`, or
    its first fields)."""
    counts = {split: dict.fromkeys(STATUSES, 0) for split in videos}
    rows = [(split, m, "missing", 0, "", "", "not on disk") for split, gone in missing.items() for m in gone]
    for split, gone in missing.items():
        counts[split]["missing"] = len(gone)
    jobs = [(split, path) for split, paths in videos.items() for path in paths]
    results = probe_all([path for _, path in jobs], workers, probe)
    for (split, path), result in zip(jobs, results):
        n, error, stream, fps, linear = Probe(*result)
        short = f"{n} frames < {need} of one clip" if n < need else ""
        status = ("unreadable" if error else "short" if short else "needs_linear_decode" if linear else "ok")
        counts[split][status] += 1
        detail = error or "; ".join(d for d in (short, linear and f"decoded from the start: {linear}") if d)
        rows.append((split, path, status, n, "" if error else stream, "" if error else fps, detail))
    return counts, rows


def write_report(rows: list[tuple], path: Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(REPORT_COLUMNS)
        w.writerows(rows)


def counts_table(counts: dict, need: int) -> str:
    width = max(map(len, STATUSES)) + 2
    lines = [f"{'split':<8}{'videos':>9}" + "".join(f"{s:>{width}}" for s in STATUSES)]
    for split, c in counts.items():
        lines.append(f"{split:<8}{sum(c.values()):>9}" + "".join(f"{c[s]:>{width}}" for s in STATUSES))
    lines.append(f"(short: fewer than {need} frames, the span of one clip; needs_linear_decode: seeking in it does "
                 "not give the frames of a sequential decode, so it is read from the start: exact, slower)")
    return "\n".join(lines)


def videos_table(rows: list[tuple]) -> str:
    """One line per video: stream, frames, fps, status and why."""
    lines = [f"{'video':<40} {'stream':>6} {'frames':>7} {'fps':>8}  status"]
    for _, path, status, frames, stream, fps, detail in rows:
        name = Path(path).name
        lines.append(f"{name[-40:]:<40} {stream!s:>6} {frames:>7} {fps!s:>8}  {status}"
                     + (f" ({detail})" if detail else ""))
    return "\n".join(lines)


def listed_videos(data_cfg, splits: list[str]) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """``({split: video paths}, {split: missing paths})`` of the annotation lists ``splits`` of a
    data config (``scan``)."""
    from .annotations import load_annotation
    from .build import resolve_data, under_root

    data, info = resolve_data(data_cfg)
    videos, missing = {}, {}
    for split in splits:
        ann = data.get(f"{split}_ann")  # None when unset or ???
        if ann is None:
            continue
        # A test list may be unlabelled (official Kinetics and SSv2 test files are): labels are
        # checked where given, and an entry without one is fine.
        records, missing[split] = load_annotation(under_root(data, ann), data.root, info.class_names,
                                                  labels="optional" if split == "test" else "required",
                                                  class_source=info.class_source, confine=data.confine_to_root)
        videos[split] = [r.path for r in records]
    if not videos:
        raise ConfigError(f"none of the splits {list(splits)} has an annotation file set. "
                          "Fix: data.train_ann=... / data.val_ann=... / data.test_ann=..., or videos=[files]")
    return videos, missing


def video_files(paths: list[str]) -> list[str]:
    """The files of scan's ``videos=``: each file as given, and the video files of each folder (those
    with the extension of a container FFmpeg reads; sorted, not recursive)."""
    from .annotations import VIDEO_EXTENSIONS

    files = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(str(f) for f in p.iterdir() if f.is_file() and f.suffix[1:].lower() in VIDEO_EXTENSIONS)
        elif p.is_file():
            files.append(str(p))
        else:
            raise ConfigError(f"videos: {p} is neither a file nor a folder. Fix: videos=[/path/a.mp4,/path/folder]")
    if not files:
        raise ConfigError(f"videos: no file in {list(paths)}. Fix: videos=[/path/a.mp4,/path/folder]")
    return files


if __name__ == "__main__":  # the documented command name; the app lives with the others
    import runpy

    runpy.run_module("video_sparse.apps.scan", run_name="__main__", alter_sys=True)
