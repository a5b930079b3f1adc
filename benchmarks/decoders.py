"""Clips/s of each decoder on the real clips (tests/data/real) and the motion set, and of the data
loader against raw decoding of the same clips with one and two workers.

    python benchmarks/decoders.py [--repeats 5] [--workers 1 2]

Decoders: ``pyav`` (= ``auto``), ``decord`` as the project runs it (files it reads wrong go to
PyAV), and decord alone (``decord, unguarded``: its own frames, wrong on some of these files; the
floor the guard costs against). Samplings: Kinetics dense 16 x 4 and SSv2 8 segments (training
indices, a new draw per read), frames scaled to a short side of 256 while decoding as the
dataset asks; the motion set: 4 of 16 frames at 64 px. One process, one decoder thread. Loader
rows: ``VideoDataset`` + ``DataLoader`` (decode, sample, crop 224, collate uint8 clips; persistent
workers) over the real clips repeated, against raw ``read_frames`` of the same clips in this
process; and ``ClipTransform.to_model`` (the normalisation into float that follows on the model's
device) run on this CPU, batches of 4. Prints markdown tables (median of ``--repeats``).
"""
from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from video_sparse.data.annotations import VideoRecord  # noqa: E402
from video_sparse.data.dataset import VideoDataset  # noqa: E402
from video_sparse.data.decode import import_decord, read_frames, scaled_size  # noqa: E402
from video_sparse.data.sampling import FrameSampler  # noqa: E402
from video_sparse.data.transforms import ClipTransform  # noqa: E402
from video_sparse.engine.runtime import data_loader  # noqa: E402

REAL = sorted((ROOT / "tests" / "data" / "real").glob("*.[am][pvk][4iv]"))
SAMPLINGS = {"Kinetics 16x4": FrameSampler("dense", 16, 4), "SSv2 8 segments": FrameSampler("segment", 8)}


def decord_unguarded(path: str, choose, short_side: int | None) -> None:
    decord = import_decord()
    reader = decord.VideoReader(path, num_threads=1)
    if short_side:  # as the guarded backend does: the size from the first frame, reopened if larger
        h, w = reader[0].shape[:2]
        if min(h, w) > short_side:
            height, width = scaled_size(h, w, short_side)
            reader = decord.VideoReader(path, num_threads=1, width=width, height=height)
    reader.get_batch(list(choose(len(reader)))).asnumpy()


READERS = {
    "pyav (= auto)": lambda p, choose, side: read_frames(p, choose, "pyav", short_side=side),
    "decord (guarded)": lambda p, choose, side: read_frames(p, choose, "decord", short_side=side),
    "decord, unguarded": decord_unguarded,
}


def seconds(epoch, r: int) -> float:
    t = time.perf_counter()
    epoch(r)
    return time.perf_counter() - t


def median_seconds(epoch, repeats: int) -> float:
    """Median time of ``epoch(r)`` for r = 1..repeats, after a warm-up ``epoch(0)`` (libraries, page
    cache, the per-file verdicts, worker start)."""
    epoch(0)
    return statistics.median(seconds(epoch, r) for r in range(1, repeats + 1))


def clips_per_second(paths: list[str], sampler: FrameSampler, reader, short_side: int | None, repeats: int,
                     reads: int = 4) -> float:
    """Clips/s reading each path ``reads`` times with fresh random training indices."""
    def epoch(seed):
        rng = np.random.default_rng(seed)
        for _ in range(reads):
            for p in paths:
                reader(p, lambda n: sampler.train_indices(n, rng), short_side)

    return reads * len(paths) / median_seconds(epoch, repeats)


def motion_videos(folder: Path, count: int = 24) -> list[str]:
    from video_sparse.data.motion import render_video, sample_video, write_mp4

    paths = []
    for i in range(count):
        path = folder / f"motion{i}.mp4"
        write_mp4(path, render_video(sample_video(i, i % 10)))
        paths.append(str(path))
    return paths


def decoder_table(motion: list[str], repeats: int) -> list[str]:
    rows = ["| files | sampling | decoder | clips/s | vs pyav |", "|---|---|---|---|---|"]
    cases = [(p.name, [str(p)], name, s, 256) for p in REAL for name, s in SAMPLINGS.items()]
    cases.append(("motion set (24 videos)", motion, "uniform 4 of 16", FrameSampler("uniform", 4), None))
    for files, paths, sampling, sampler, side in cases:
        speeds = {name: clips_per_second(paths, sampler, reader, side, repeats) for name, reader in READERS.items()}
        for name, cps in speeds.items():
            rows.append(f"| {files} | {sampling} | {name} | {cps:.1f} | {cps / speeds['pyav (= auto)']:.2f}x |")
        print(rows[-1], file=sys.stderr)
    return rows


def _read_sampled(job: tuple) -> None:
    """Raw decoding of the frames the dataset samples for ``(path, sampler, seed, epoch, index)``."""
    path, sampler, seed, epoch, index = job
    rng = np.random.default_rng([seed, epoch, index])  # the dataset's first draw is the frame indices
    read_frames(path, lambda n: sampler.train_indices(n, rng), "auto", short_side=256)


def loader_table(workers: list[int], repeats: int, copies: int) -> list[str]:
    """The loader over the real clips (each listed ``copies`` times) against raw decoding of exactly
    the frames it samples, in as many processes as it has workers (what the machine's cores give
    decoding alone: two processes on two cores do not run at twice one). Raw and loader epochs
    alternate, and the ratio is the median of each pair's, so a busy minute slows both."""
    rows = ["| sampling | workers | raw read_frames clips/s | loader clips/s | per worker vs raw |",
            "|---|---|---|---|---|"]
    records = [VideoRecord(str(p), 0) for p in REAL] * copies
    for name, sampler in SAMPLINGS.items():
        ds = VideoDataset(records, ClipTransform(size=224, short_side=256, train=True), sampler.frames, train=True,
                          sampling=sampler.kind, interval=sampler.interval)
        for w in workers:
            loader = data_loader(ds, 4, w, torch.device("cpu"),
                                 torch.utils.data.RandomSampler(ds, generator=torch.Generator().manual_seed(0)),
                                 train=True)
            with multiprocessing.get_context("fork").Pool(max(w, 1)) as pool:
                def raw_epoch(e, pool=pool, sampler=sampler):
                    jobs = [(r.path, sampler, ds.seed, e, i) for i, r in enumerate(ds.records)]
                    if w <= 1:
                        list(map(_read_sampled, jobs))
                    else:
                        pool.map(_read_sampled, jobs, chunksize=1)

                def loader_epoch(e, loader=loader):
                    ds.set_epoch(e)
                    for _ in loader:
                        pass

                raw_epoch(0), loader_epoch(0)  # warm-up: libraries, page cache, verdicts, workers
                pairs = [(seconds(raw_epoch, r), seconds(loader_epoch, r)) for r in range(1, repeats + 1)]
            raw, cps = (len(ds) / statistics.median(t) for t in zip(*pairs))
            ratio = statistics.median(r / t for r, t in pairs)
            rows.append(f"| {name} | {w} | {raw:.1f} | {cps:.1f} | {ratio:.2f}x |")
            print(rows[-1], file=sys.stderr)
            del loader, loader_epoch  # ends its workers before the next loader starts
        batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))["video"]
        cps = 4 / median_seconds(lambda e: ds.transform.to_model(batch), max(repeats, 20))
        rows.append(f"| {name} | to_model on this CPU (the float normalisation, main process) | - | {cps:.0f} | - |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--loader-only", action="store_true", help="only the data loader table")
    ap.add_argument("--copies", type=int, default=16, help="times each real clip is listed in the loader's epoch")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if not args.loader_only:
        with tempfile.TemporaryDirectory() as tmp:
            rows = decoder_table(motion_videos(Path(tmp)), args.repeats)
        print(f"\nDecoders, one process, median of {args.repeats}\n")
        print("\n".join(rows))
    print(f"\nData loader over the real clips, batch 4, median of {args.repeats} epochs\n")
    print("\n".join(loader_table(args.workers, args.repeats, args.copies)))


if __name__ == "__main__":
    main()
