"""``python -m video_sparse.data.scan data=<dataset> data.root=...``: check a dataset before a run.

Every video of the annotation lists (or of ``videos=[files or folders]``) is opened with
``data.decoder`` and its first, middle and last frames decoded, and every keyframe seek checked, in
parallel processes; a video whose decoder kills its process is reported as unreadable. A test list
may be unlabelled; labels are checked where given. Written to ``scan_report.csv`` in the run
directory: one row per video with its status — ok, needs_linear_decode (seeking in it does not give
the frames of a sequential decode: it is read from the start, exact but slower), short (fewer than
one clip: ``data.frames`` x ``data.interval`` frames for dense sampling, ``data.frames`` otherwise;
such videos loop or repeat frames), missing, unreadable — its chosen stream, frame count and fps. A
summary table is printed (with ``videos=``, one line per video); the exit status is 1 when any video
is missing or unreadable, so that scripts can stop before a long run.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from omegaconf import DictConfig

from . import launch
from .checks import check_scan


def scan(cfg: DictConfig, out_dir: Path) -> dict:
    """Scan ``cfg.videos``, or ``cfg.data``'s annotation lists ``cfg.splits``; write the report;
    return the counts ``{split: {status: n}}``."""
    from functools import partial

    from ..data.sampling import FrameSampler
    from ..data.scan import counts_table, listed_videos, probe_video, scan_videos, video_files, videos_table, write_report

    data = cfg.data
    need = FrameSampler(data.sampling, data.frames, data.interval).span
    videos, missing = (listed_videos(data, cfg.splits) if cfg.videos is None
                       else ({"videos": video_files(cfg.videos)}, {}))
    counts, rows = scan_videos(videos, missing, need, cfg.workers or os.cpu_count() or 1,
                               partial(probe_video, decoder=data.decoder))
    report = Path(out_dir) / cfg.report
    write_report(rows, report)
    if cfg.videos is not None:
        print(videos_table(rows))
    print(counts_table(counts, need))
    print(f"report: {report} ({len(rows)} videos)")
    return counts


def scan_command(cfg: DictConfig, out_dir: Path) -> None:
    """:func:`scan`, exiting with status 1 when any video is missing or unreadable."""
    if any(c["missing"] or c["unreadable"] for c in scan(cfg, out_dir).values()):
        sys.exit(1)


def main() -> None:
    launch.main("scan", scan_command, check_scan)


if __name__ == "__main__":
    main()
