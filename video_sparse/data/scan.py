"""Probing every video of a dataset before training: which are missing, unreadable, or shorter
than one clip. The command is ``python -m video_sparse.data.scan data=...`` (``apps/scan.py``)."""
from __future__ import annotations

import csv
from multiprocessing import get_context
from pathlib import Path

from tqdm import tqdm

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


def scan_videos(videos: dict[str, list[str]], missing: dict[str, list[str]], need: int,
                workers: int) -> tuple[dict, list[tuple]]:
    """Probe ``videos`` (split -> paths) in ``workers`` processes; a video of fewer than ``need``
    frames is short. Returns ``{split: {status: count}}`` and the report rows of every video that
    is not ok (``missing``, split -> paths, come first)."""
    counts = {split: dict.fromkeys(STATUSES, 0) for split in videos}
    rows = [(split, m, "missing", 0, "not on disk") for split, gone in missing.items() for m in gone]
    for split, gone in missing.items():
        counts[split]["missing"] = len(gone)
    jobs = [(split, path) for split, paths in videos.items() for path in paths]
    with get_context().Pool(workers) as pool:
        results = pool.imap(probe_video, [p for _, p in jobs], chunksize=4)
        for (split, path), (n, error) in tqdm(zip(jobs, results), total=len(jobs), desc="scan", unit="video"):
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
