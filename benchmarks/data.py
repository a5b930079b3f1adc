"""Clips/s of the full training data pipeline (decode + sample + augment + collate) against raw
decord decoding of the same frames, on generated Kinetics-like and SSv2-like files.

    python benchmarks/data.py [--videos 16] [--repeats 3] [--workers 0 1 2]

Kinetics-like: 10 s, 30 fps, 340x256 H.264 (the common resized K400 copies), dense 16 x 4 clips,
short side 256 -> random 224 crop + flip. SSv2-like: 4 s, 12 fps, 428x240 VP9 webm, 8-segment
clips, 224 crop + RandAugment (2, 27) and without it. Batches of 8 through a DataLoader with
0, 1, 2 workers (persistent, as in training). Prints a markdown table (median of ``--repeats``
epochs after one warm-up epoch; peak RSS of this process and its children).
"""
from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from video_sparse.data.annotations import VideoRecord  # noqa: E402
from video_sparse.data.dataset import VideoDataset  # noqa: E402
from video_sparse.data.decode import import_decord  # noqa: E402
from video_sparse.data.randaugment import ClipRandAugment  # noqa: E402
from video_sparse.data.sampling import FrameSampler  # noqa: E402
from video_sparse.data.transforms import ClipTransform  # noqa: E402
from video_sparse.engine.runtime import data_loader  # noqa: E402

KINETICS = dict(seconds=10, fps=30, width=340, height=256, codec="libx264", suffix=".mp4")
SSV2 = dict(seconds=4, fps=12, width=428, height=240, codec="libvpx-vp9", suffix=".webm")


def write_video(path: Path, seconds: int, fps: int, width: int, height: int, codec: str, suffix: str,
                seed: int = 0) -> None:
    """A textured scene panning across the frame (so that the encoder has real motion to code)."""
    import av

    rng = np.random.default_rng(seed)
    texture = rng.integers(0, 256, (height * 2, width * 2, 3), dtype=np.uint8)
    texture = np.repeat(np.repeat(texture[::8, ::8], 8, 0), 8, 1)  # 8-px blocks
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if codec == "libvpx-vp9":
            stream.options = {"deadline": "realtime", "cpu-used": "8", "crf": "32", "b:v": "0"}
        else:
            stream.options = {"crf": "23", "preset": "veryfast"}
        for t in range(seconds * fps):
            y, x = (2 * t) % height, (3 * t) % width
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(texture[y:y + height, x:x + width]),
                                               format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def raw_decord(paths: list[str], sampler: FrameSampler, seed: int) -> None:
    """The sampled frames of every video, decoded by decord alone (the floor of the pipeline)."""
    decord = import_decord()

    rng = np.random.default_rng(seed)
    for p in paths:
        reader = decord.VideoReader(p, num_threads=1)
        reader.get_batch(list(sampler.train_indices(len(reader), rng))).asnumpy()


def epoch_of(loader, dataset, epoch: int) -> None:
    dataset.set_epoch(epoch)
    for _ in loader:
        pass


def median_time(fn, repeats: int) -> float:
    fn(0)  # warm-up: worker start, decoder libraries, page cache
    times = []
    for r in range(1, repeats + 1):
        t = time.perf_counter()
        fn(r)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def peak_rss_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (own + children) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=16, help="videos per dataset (one epoch reads each once)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args()
    torch.set_num_threads(1)
    cpu = torch.device("cpu")
    setups = [
        ("Kinetics-like", KINETICS, FrameSampler("dense", 16, 4),
         [("dense 16x4, 256 -> 224 crop, flip", dict())]),
        ("SSv2-like", SSV2, FrameSampler("segment", 8),
         [("segment 8, 256 -> 224 crop", dict()),
          ("segment 8, 224 crop + RandAugment(2, 27)", dict(rand_augment=ClipRandAugment(2, 27)))]),
    ]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, spec, sampler, pipelines in setups:
            t = time.perf_counter()
            paths = []
            for i in range(args.videos):
                path = Path(tmp) / f"{name}_{i}{spec['suffix']}"
                write_video(path, seed=i, **spec)
                paths.append(str(path))
            size_mb = sum(Path(p).stat().st_size for p in paths) / len(paths) / 1e6
            print(f"{name}: {args.videos} videos generated in {time.perf_counter() - t:.0f} s "
                  f"({size_mb:.2f} MB each)", file=sys.stderr)
            raw = median_time(lambda r: raw_decord(paths, sampler, r), args.repeats)
            raw_cps = len(paths) / raw
            rows.append((name, "raw decord (sampled frames only)", "-", raw_cps, 1.0, peak_rss_mb()))
            for label, extra in pipelines:
                records = [VideoRecord(p, 0) for p in paths]
                for workers in args.workers:
                    ds = VideoDataset(records, ClipTransform(size=224, short_side=256, train=True, **extra),
                                      sampler.frames, train=True, sampling=sampler.kind, interval=sampler.interval,
                                      flip_labels=[0])
                    loader = data_loader(ds, args.batch, workers, cpu,
                                         torch.utils.data.RandomSampler(ds, generator=torch.Generator().manual_seed(0)),
                                         train=True)
                    sec = median_time(lambda r: epoch_of(loader, ds, r), args.repeats)
                    n = len(loader) * args.batch
                    rows.append((name, label, str(workers), n / sec, (n / sec) / raw_cps, peak_rss_mb()))
                    del loader
                    print(f"  {label}, {workers} workers: {n / sec:.1f} clips/s", file=sys.stderr)
    print(f"\n{args.videos} videos per dataset, batch {args.batch}, median of {args.repeats} epochs, "
          f"torch threads 1\n")
    print("| data | pipeline | workers | clips/s | vs raw decord | peak RSS (MiB) |")
    print("|---|---|---|---|---|---|")
    for name, label, workers, cps, ratio, rss in rows:
        print(f"| {name} | {label} | {workers} | {cps:.1f} | {ratio:.2f}x | {rss:.0f} |")


if __name__ == "__main__":
    main()
