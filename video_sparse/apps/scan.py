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
from .checks import ConfigError, check_scan


def scan(cfg: DictConfig, out_dir: Path) -> dict:
    """Scan ``cfg.videos``, or ``cfg.data``'s annotation lists ``cfg.splits``; write the report;
    return the counts ``{split: {status: n}}``."""
    from functools import partial

    from ..data.sampling import FrameSampler
    from ..data.scan import counts_table, probe_video, scan_videos, videos_table, write_report

    data = cfg.data
    need = FrameSampler(data.sampling, data.frames, data.interval).span
    videos, missing = _listed_videos(cfg) if cfg.videos is None else ({"videos": _files(cfg.videos)}, {})
    counts, rows = scan_videos(videos, missing, need, cfg.workers or os.cpu_count() or 1,
                               partial(probe_video, decoder=data.decoder))
    report = Path(out_dir) / cfg.report
    write_report(rows, report)
    if cfg.videos is not None:
        print(videos_table(rows))
    print(counts_table(counts, need))
    print(f"report: {report} ({len(rows)} videos)")
    return counts


def _listed_videos(cfg: DictConfig) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """``({split: video paths}, {split: missing paths})`` of the annotation lists ``cfg.splits``."""
    from ..data.annotations import load_annotation
    from ..data.build import resolve_data, under_root

    data, info = resolve_data(cfg.data)
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
                          "Fix: data.train_ann=... / data.val_ann=... / data.test_ann=..., or videos=[files]")
    return videos, missing


def _files(paths: list[str]) -> list[str]:
    """The files of ``videos=``: each file as given, and the video files of each folder (those with the
    extension of a container FFmpeg reads; sorted, not recursive)."""
    from ..data.annotations import VIDEO_EXTENSIONS

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


def scan_command(cfg: DictConfig, out_dir: Path) -> None:
    """:func:`scan`, exiting with status 1 when any video is missing or unreadable."""
    if any(c["missing"] or c["unreadable"] for c in scan(cfg, out_dir).values()):
        sys.exit(1)


def main() -> None:
    launch.main("scan", scan_command, check_scan)


if __name__ == "__main__":
    main()
