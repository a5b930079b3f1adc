"""Throughput of the motion benchmark's pipeline: generation, decoding per backend, dataset
samples and the training step of the small models.

    python benchmarks/data_pipeline.py [--videos 2500] [--repeats 5] [--models c2d_small sifa_small]

Prints a markdown table (median of repeats; peak RSS of this process for memory) to paste into
docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from video_sparse import build_model  # noqa: E402
from video_sparse.data.dataset import VideoDataset, read_path_label_list  # noqa: E402
from video_sparse.data.decode import read_frames  # noqa: E402
from video_sparse.data.frame_cache import FrameCache  # noqa: E402
from video_sparse.data.motion import MotionSetSpec, prepare_motion_dataset  # noqa: E402
from video_sparse.data.sampling import uniform_indices  # noqa: E402
from video_sparse.data.transforms import ClipTransform  # noqa: E402
from video_sparse.engine.metrics import multi_head_loss  # noqa: E402


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=2500,
                    help="videos generated (4/5 train, 1/5 val; default: the size of the default set)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--frames", type=int, default=4, help="clip frames (data.frames)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--models", nargs="+", default=["c2d_small", "sifa_small"])
    args = ap.parse_args()
    torch.set_num_threads(max(torch.get_num_threads(), 1))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        spec = MotionSetSpec(train_size=args.videos - args.videos // 5, val_size=args.videos // 5, seed=123)
        t = time.perf_counter()
        folder = prepare_motion_dataset(spec, tmp, progress=False)  # the workers train.py gets
        gen = time.perf_counter() - t
        rows.append((f"generate {args.videos} videos", f"{args.videos / gen:.1f} videos/s", f"{gen:.0f} s"))
        records = read_path_label_list(folder / "train.txt")
        paths = [r.path for r in records[:100]]
        for backend in ("decord", "pyav"):
            dt = median_time(lambda: [read_frames(p, lambda n: uniform_indices(n, args.frames), backend)
                                      for p in paths], args.repeats)
            rows.append((f"decode {args.frames} frames ({backend}, 1 thread)", f"{len(paths) / dt:.0f} clips/s",
                         f"{dt / len(paths) * 1e3:.2f} ms/clip"))
        ds = VideoDataset(records, ClipTransform(size=64, short_side=64, train=True), args.frames, train=True)
        n = min(100, len(ds))
        dt = median_time(lambda: [ds[i] for i in range(n)], args.repeats)
        rows.append(("dataset sample (decode + transform)", f"{n / dt:.0f} clips/s", f"{dt / n * 1e3:.2f} ms/clip"))
        cache = FrameCache(n, 1, (args.frames, spec.height, spec.width, 3))
        cached = VideoDataset(records[:n], ClipTransform(size=64, short_side=64, train=True), args.frames, train=True,
                              frame_cache=cache)
        [cached[i] for i in range(n)]  # fills the cache (the first epoch)
        dt = median_time(lambda: [cached[i] for i in range(n)], args.repeats)
        rows.append(("dataset sample from the frame cache (later epochs)", f"{n / dt:.0f} clips/s",
                     f"{dt / n * 1e3:.2f} ms/clip"))

    for name in args.models:
        model = build_model(name, num_classes=10)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        x = torch.randn(args.batch, 3, args.frames, 64, 64)
        y = torch.randint(0, 10, (args.batch,))

        def step():
            loss = multi_head_loss(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()

        step()
        dt = median_time(step, args.repeats)
        params = sum(p.numel() for p in model.parameters())
        rows.append((f"train step {name} ({params / 1e6:.2f}M params), batch {args.batch}x{args.frames}x64²",
                     f"{args.batch / dt:.0f} clips/s", f"{dt * 1e3:.0f} ms/step"))

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, peak RSS {peak_rss_mib():.0f} MiB\n")
    print("| what | throughput | time |\n|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} |")


if __name__ == "__main__":
    main()
