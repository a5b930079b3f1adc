"""Clips of a timeline (``eval.py predict.window``) from a long video: the one decoding pass of
``WindowClips`` against reading every window on its own as evaluation reads a video (``read_frames``:
PyAV's seek decode, decord), model excluded.

    python benchmarks/timeline.py [--seconds 60] [--window 2.56] [--stride 1] [--repeats 3]

The video is benchmarks/decode.py's (MPEG-4 720p at 25 fps, a keyframe every 50 frames). Windows are
sampled as a Kinetics model's (16 frames 4 apart, short side 256, 224 centre crop). Each method runs
in a fresh process, so that its peak memory is its own (VmHWM minus the RSS once the libraries are
loaded). Prints a markdown table: median of ``--repeats`` runs, windows per second, speed against
per-window PyAV reads, peak RSS growth.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from decode import proc_status_bytes, write_long_video  # noqa: E402  (benchmarks/decode.py)

from video_sparse.data.decode import read_frames  # noqa: E402
from video_sparse.data.sampling import FrameSampler  # noqa: E402
from video_sparse.data.timeline import WindowClips, window_frames, window_starts  # noqa: E402
from video_sparse.data.transforms import ClipTransform  # noqa: E402

METHODS = ("one pass (WindowClips)", "per window, pyav seek", "per window, decord")
PER_WINDOW_PYAV = METHODS[1]
SAMPLER = FrameSampler("dense", 16, 4)
TRANSFORM = ClipTransform(size=224, short_side=256)


def clips_one_pass(path: str, window: float, stride: float) -> int:
    return sum(1 for _ in WindowClips(path, SAMPLER, TRANSFORM, window, stride))


def clips_per_window(path: str, window: float, stride: float, backend: str) -> int:
    import av

    with av.open(path) as container:
        stream = container.streams.video[0]
        fps, n = float(stream.average_rate), stream.frames
    length, step = window_frames(window, stride, fps)
    starts = window_starts(n, length, step)
    for start in starts:
        frames = read_frames(path, lambda _: start + SAMPLER.eval_indices(length), backend,
                             short_side=TRANSFORM.decode_short_side)
        TRANSFORM(frames)
    return len(starts)


def run_child(method: str, path: str, window: float, stride: float, repeats: int) -> None:
    read_frames(path, lambda n: [0], "decord")  # loads the libraries
    rss = proc_status_bytes("VmRSS")
    try:  # resets VmHWM to the current RSS (Linux >= 4.0)
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    times, windows = [], 0
    for _ in range(repeats):
        t = time.perf_counter()
        if method == METHODS[0]:
            windows = clips_one_pass(path, window, stride)
        else:
            windows = clips_per_window(path, window, stride, "pyav" if method == PER_WINDOW_PYAV else "decord")
        times.append(time.perf_counter() - t)
    print(json.dumps({"seconds": times, "windows": windows, "peak_growth": proc_status_bytes("VmHWM") - rss}))


def measure(method: str, path: str, window: float, stride: float, repeats: int) -> tuple[float, int, float]:
    proc = subprocess.run([sys.executable, __file__, "--child", method, path, str(window), str(stride), str(repeats)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{method} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return statistics.median(result["seconds"]), result["windows"], result["peak_growth"] / 2**20


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        method, path, window, stride, repeats = sys.argv[2:7]
        return run_child(method, path, float(window), float(stride), int(repeats))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--window", type=float, default=2.56, help="seconds (2.56 s = 64 frames at 25 fps)")
    ap.add_argument("--stride", type=float, default=1.0, help="seconds")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "long.mp4")
        write_long_video(path, args.seconds)
        for method in METHODS:
            sec, windows, mib = measure(method, path, args.window, args.stride, args.repeats)
            rows.append((method, sec, windows, mib))
            print(f"  {method}: {sec:.2f} s, {windows} windows, {mib:.0f} MiB", file=sys.stderr)
    reference = next(sec for method, sec, _, _ in rows if method == PER_WINDOW_PYAV)
    print(f"\n{args.seconds} s of 1280x720 at 25 fps (MPEG-4, keyframe every 50 frames); windows of {args.window:g} s "
          f"every {args.stride:g} s, 16 frames 4 apart, short side 256, 224 crop; median of {args.repeats}, a fresh "
          "process per row\n")
    print("| method | seconds | windows | windows/s | speed vs per-window PyAV | peak RSS growth (MiB) |")
    print("|---|---|---|---|---|---|")
    for method, sec, windows, mib in rows:
        print(f"| {method} | {sec:.2f} | {windows} | {windows / sec:.1f} | {reference / sec:.2f}x | {mib:.0f} |")


if __name__ == "__main__":
    main()
