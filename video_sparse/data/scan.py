"""Probing every video of a dataset before training: which are missing, unreadable, or shorter
than one clip. The command is ``python -m video_sparse.data.scan data=...`` (``apps/scan.py``)."""
from __future__ import annotations

import csv
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from ..errors import UserError
from .decode import VideoDecodeError, read_frames

STATUSES = ("ok", "short", "missing", "unreadable")
REPORT_COLUMNS = ("split", "path", "status", "frames", "detail")


def probe_video(path: str) -> tuple[int, str]:
    """``(frame count, "")`` when the first, middle and last frames decode, else ``(0, error)``."""
    count = 0

    def ends(n: int):
        nonlocal count
        count = n
        return [0, n // 2, n - 1]

    try:
        read_frames(path, ends)
    except VideoDecodeError as e:
        return 0, str(e)
    return count, ""


# A probe that does not return: the decoder killed its process (a segfault in FFmpeg, an abort).
CRASHED = "the decoding process died on this video (a decoder crash)"
# Crashes on this many videos in a row, none probed normally: the decoding libraries are broken,
# not the videos (reporting each of 10^5 videos as crashed would take hours of pool restarts).
MAX_CRASHES_FIRST = 5


class ScanError(UserError):
    """The scan cannot probe videos at all (the message says why and the fix)."""


def _pool_pass(probe: Callable[[str], tuple[int, str]], paths: list[str], workers: int,
               report: Callable[[int, tuple[int, str]], None]) -> list[int]:
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


def probe_all(paths: list[str], workers: int, probe: Callable[[str], tuple[int, str]] = probe_video,
              progress: bool = True) -> list[tuple[int, str]]:
    """``probe(path)`` of every path, in ``workers`` processes, in the order of ``paths``. A video
    whose probe kills its process is reported as :data:`CRASHED`: after a worker dies, the videos
    that were in flight are probed again one at a time, which names the culprit, and the rest go
    on in a fresh pool. ``probe`` must be picklable (a module-level function)."""
    results: list[tuple[int, str] | None] = [None] * len(paths)
    bar = tqdm(total=len(paths), desc="scan", unit="video", disable=not progress)
    todo, crashes = list(range(len(paths))), 0

    def done(subset: list[int]) -> Callable[[int, tuple[int, str]], None]:
        def report(k: int, result: tuple[int, str]) -> None:
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
                workers: int, probe: Callable[[str], tuple[int, str]] = probe_video) -> tuple[dict, list[tuple]]:
    """Probe ``videos`` (split -> paths) in ``workers`` processes; a video of fewer than ``need``
    frames is short. Returns ``{split: {status: count}}`` and the report rows of every video that
    is not ok (``missing``, split -> paths, come first). ``probe``: see :func:`probe_all`."""
    counts = {split: dict.fromkeys(STATUSES, 0) for split in videos}
    rows = [(split, m, "missing", 0, "not on disk") for split, gone in missing.items() for m in gone]
    for split, gone in missing.items():
        counts[split]["missing"] = len(gone)
    jobs = [(split, path) for split, paths in videos.items() for path in paths]
    results = probe_all([path for _, path in jobs], workers, probe)
    for (split, path), (n, error) in zip(jobs, results):
        status = "unreadable" if error else "short" if n < need else "ok"
        counts[split][status] += 1
        if status != "ok":
            rows.append((split, path, status, n, error or f"{n} frames < {need} of one clip"))
    return counts, rows


def write_report(rows: list[tuple], path: Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(REPORT_COLUMNS)
        w.writerows(rows)


def counts_table(counts: dict, need: int) -> str:
    lines = [f"{'split':<8}{'videos':>9}" + "".join(f"{s:>12}" for s in STATUSES)]
    for split, c in counts.items():
        lines.append(f"{split:<8}{sum(c.values()):>9}" + "".join(f"{c[s]:>12}" for s in STATUSES))
    lines.append(f"(short: fewer than {need} frames, the span of one clip)")
    return "\n".join(lines)


if __name__ == "__main__":  # the documented command name; the app lives with the others
    import runpy

    runpy.run_module("video_sparse.apps.scan", run_name="__main__", alter_sys=True)
