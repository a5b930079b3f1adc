"""Check a dataset before training: ``python -m video_sparse.data.scan data=<dataset> data.root=...``.

Every video of the annotation lists is opened and its first, middle and last frames decoded
(decord, PyAV fallback) in parallel processes. Written to ``scan_report.csv`` in the run
directory: one row per video that is missing, unreadable, or shorter than one clip
(``data.frames`` x ``data.interval`` frames for dense sampling, ``data.frames`` otherwise; such
videos loop or repeat frames). A summary table is printed; the exit status is 1 when any video is
missing or unreadable, so that scripts can stop before a long run.
"""
from __future__ import annotations

import csv
import os
import sys
from multiprocessing import get_context
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from tqdm import tqdm

from ..config import ConfigError, _check, positive_int, validate_data
from .annotations import load_annotation
from .build import _under_root, resolve_data
from .decode import VideoDecodeError, read_frames
from .sampling import FrameSampler

STATUSES = ("ok", "short", "missing", "unreadable")


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


def scan(cfg: DictConfig, out_dir: str | Path) -> dict:
    """Scan ``cfg.data``'s annotation lists ``cfg.splits``; write the report; return the counts
    ``{split: {status: n}}``."""
    validate_data(cfg, need_train=False)
    _check(cfg, "workers", lambda v: v is None or positive_int(v), "an integer >= 1 or null", "8")
    data, info = resolve_data(cfg.data)
    need = FrameSampler(data.get("sampling", "uniform"), data.frames, data.get("interval", 1)).span
    jobs = []  # (split, path, label)
    rows, counts = [], {}
    for split in cfg.splits:
        ann = data.get(f"{split}_ann")
        if ann is None:
            continue
        records, missing = load_annotation(_under_root(data, ann), data.root, info.class_names if split != "test"
                                           else "ignored", class_source=info.class_source)
        counts[split] = dict.fromkeys(STATUSES, 0)
        counts[split]["missing"] = len(missing)
        rows += [(split, m, "missing", 0, "not on disk") for m in missing]
        jobs += [(split, r.path) for r in records]
    if not counts:
        raise ConfigError(f"none of the splits {list(cfg.splits)} has an annotation file set. "
                          "Fix: data.train_ann=... / data.val_ann=... / data.test_ann=...")
    workers = cfg.workers or os.cpu_count() or 1
    with get_context().Pool(workers) as pool:
        results = pool.imap(probe_video, [p for _, p in jobs], chunksize=4)
        for (split, path), (n, error) in tqdm(zip(jobs, results), total=len(jobs), desc="scan", unit="video"):
            status = "unreadable" if error else "short" if n < need else "ok"
            counts[split][status] += 1
            if status != "ok":
                rows.append((split, path, status, n, error or f"{n} frames < {need} of one clip"))
    report = Path(out_dir) / cfg.report
    with open(report, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["split", "path", "status", "frames", "detail"])
        w.writerows(rows)
    print(_table(counts, need))
    print(f"report: {report} ({len(rows)} videos listed)")
    return counts


def _table(counts: dict, need: int) -> str:
    lines = [f"{'split':<8}{'videos':>9}" + "".join(f"{s:>12}" for s in STATUSES)]
    for split, c in counts.items():
        lines.append(f"{split:<8}{sum(c.values()):>9}" + "".join(f"{c[s]:>12}" for s in STATUSES))
    lines.append(f"(short: fewer than {need} frames, the span of one clip)")
    return "\n".join(lines)


@hydra.main(version_base="1.3", config_path="../../conf", config_name="scan")
def main(cfg: DictConfig) -> None:
    from ..apps import run_app

    counts = run_app(scan, cfg, HydraConfig.get().runtime.output_dir)
    if any(c["missing"] or c["unreadable"] for c in counts.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
