"""``python -m video_sparse.data.scan data=<dataset> data.root=...``: check a dataset before a run.

Every video of the annotation lists is opened and its first, middle and last frames decoded
(decord, PyAV fallback) in parallel processes; a video whose decoder kills its process is reported
as unreadable. A test list may be unlabelled; labels are checked where given. Written to ``scan_report.csv`` in the run
directory: one row per video that is missing, unreadable, or shorter than one clip
(``data.frames`` x ``data.interval`` frames for dense sampling, ``data.frames`` otherwise; such
videos loop or repeat frames). A summary table is printed; the exit status is 1 when any video is
missing or unreadable, so that scripts can stop before a long run.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from omegaconf import DictConfig

from . import launch
from .checks import ConfigError, check_scan


def scan(cfg: DictConfig, out_dir: Path) -> dict:
    """Scan ``cfg.data``'s annotation lists ``cfg.splits``; write the report; return the counts
    ``{split: {status: n}}``."""
    from ..data.annotations import load_annotation
    from ..data.build import resolve_data, under_root
    from ..data.sampling import FrameSampler
    from ..data.scan import counts_table, scan_videos, write_report

    data, info = resolve_data(cfg.data)
    need = FrameSampler(data.sampling, data.frames, data.interval).span
    videos, missing = {}, {}
    for split in cfg.splits:
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
        raise ConfigError(f"none of the splits {list(cfg.splits)} has an annotation file set. "
                          "Fix: data.train_ann=... / data.val_ann=... / data.test_ann=...")
    counts, rows = scan_videos(videos, missing, need, cfg.workers or os.cpu_count() or 1)
    report = Path(out_dir) / cfg.report
    write_report(rows, report)
    print(counts_table(counts, need))
    print(f"report: {report} ({len(rows)} videos listed)")
    return counts


def scan_command(cfg: DictConfig, out_dir: Path) -> None:
    """:func:`scan`, exiting with status 1 when any video is missing or unreadable."""
    if any(c["missing"] or c["unreadable"] for c in scan(cfg, out_dir).values()):
        sys.exit(1)


def main() -> None:
    launch.main("scan", scan_command, check_scan)


if __name__ == "__main__":
    main()
