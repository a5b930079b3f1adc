"""PyAV on a long video: the full decode the PyAV fallback used to do (every frame to RGB, then the
clip's frames picked out) against today's packet-indexed seek decode, with decord for reference;
both also with the frames scaled to a short side of 256 while decoding (what the dataset asks for
when its clips are resized to 256).

    python benchmarks/decode.py [--seconds 60] [--fps 25] [--width 1280] [--height 720] [--gop 50] [--repeats 3]

The video is MPEG-4 Part 2 (cheap to generate), a keyframe every ``--gop`` frames. Clips: the first
and last frame; 8 segments over the whole video (TSN/SSv2 sampling); 10 test clips of 16 frames
every 4th (Kinetics' dense evaluation views, one read per clip as the dataset does). Each method and
clip runs in a fresh process, so that its peak memory is its own: peak RSS growth is VmHWM minus the
RSS after the libraries were loaded. Prints a markdown table: median of ``--repeats`` runs, time
ratio against the full decode.
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

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from video_sparse.data.decode import read_frames  # noqa: E402
from video_sparse.data.sampling import FrameSampler  # noqa: E402

# name -> (backend, short side the frames are decoded at; None: as stored). 256: Kinetics' test scale.
METHODS = {"full decode (before)": ("pyav", None), "pyav seek": ("pyav", None), "pyav seek, short side 256": ("pyav", 256),
           "decord": ("decord", None), "decord, short side 256": ("decord", 256)}
FULL_DECODE = "full decode (before)"
CLIPS = {
    "first + last frame": (1, lambda n, view: np.array([0, n - 1])),
    "8 segments": (1, lambda n, view: FrameSampler("segment", 8).eval_indices(n)),
    "10 test clips, 16 x 4": (10, lambda n, view: FrameSampler("dense", 16, 4).eval_indices(n, view, 10)),
}


def write_long_video(path: str | Path, seconds: int = 60, fps: int = 25, width: int = 1280, height: int = 720,
                     gop: int = 50) -> None:
    """MPEG-4 Part 2 at qscale 31, a keyframe every ``gop`` frames: a luma texture of 16-px blocks
    panning across the frame (real motion for the P-frames) on flat chroma, fed as yuv420p (no RGB
    conversion), so that 60 s of 720p encode in about 10 s on two cores."""
    import av

    rng = np.random.default_rng(0)
    texture = rng.integers(16, 236, (height // 16 * 2 + 1, width // 16 * 2 + 1), dtype=np.uint8)
    texture = np.repeat(np.repeat(texture, 16, 0), 16, 1)
    chroma = np.full(height * width // 2, 128, np.uint8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"g": str(gop), "qscale": "31"}
        for t in range(seconds * fps):
            y, x = (2 * t) % height, (4 * t) % width
            plane = np.concatenate([texture[y:y + height, x:x + width].reshape(-1), chroma])
            frame = av.VideoFrame.from_ndarray(plane.reshape(height * 3 // 2, width), format="yuv420p")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def full_decode(path: str, choose) -> np.ndarray:
    """The PyAV fallback before issue 20: every frame converted to RGB and kept."""
    import av

    with av.open(path) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return np.stack([frames[i] for i in choose(len(frames))])


def proc_status_bytes(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def run_child(method: str, clip: str, path: str, repeats: int) -> None:
    """One method and clip in this (fresh) process; prints ``{"seconds": [...], "peak_growth": bytes}``."""
    backend, short_side = METHODS[method]
    read_frames(path, lambda n: np.array([0]), backend)  # loads the libraries
    rss = proc_status_bytes("VmRSS")
    try:  # resets VmHWM to the current RSS (Linux >= 4.0); else the growth is an upper bound
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    calls, chooser = CLIPS[clip]
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        for view in range(calls):
            def choose(n):
                return chooser(n, view)
            if method == FULL_DECODE:
                frames = full_decode(path, choose)
            else:
                frames = read_frames(path, choose, backend, short_side=short_side)
            del frames
        times.append(time.perf_counter() - t)
    print(json.dumps({"seconds": times, "peak_growth": proc_status_bytes("VmHWM") - rss}))


def measure(method: str, clip: str, path: str, repeats: int) -> tuple[float, float]:
    """Median seconds and peak RSS growth (MiB) of ``method`` on ``clip``, in a fresh process."""
    proc = subprocess.run([sys.executable, __file__, "--child", method, clip, path, str(repeats)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{method} / {clip} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return statistics.median(result["seconds"]), result["peak_growth"] / 2**20


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        method, clip, path, repeats = sys.argv[2:6]
        return run_child(method, clip, path, int(repeats))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--gop", type=int, default=50, help="frames between keyframes")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "long.mp4")
        t = time.perf_counter()
        write_long_video(path, args.seconds, args.fps, args.width, args.height, args.gop)
        print(f"video generated in {time.perf_counter() - t:.1f} s ({Path(path).stat().st_size / 1e6:.1f} MB)",
              file=sys.stderr)
        for clip in CLIPS:
            reference = None
            for method in args.methods:
                sec, mib = measure(method, clip, path, args.repeats)
                reference = sec if method == FULL_DECODE else reference
                ratio = f"{reference / sec:.1f}x" if reference else "-"
                rows.append((clip, method, sec, ratio, mib))
                print(f"  {clip}, {method}: {sec:.3f} s, {mib:.0f} MiB", file=sys.stderr)
    print(f"\n{args.seconds} s of {args.width}x{args.height} at {args.fps} fps (MPEG-4, keyframe every {args.gop} "
          f"frames), median of {args.repeats}, a fresh process per row\n")
    print("| clip | method | seconds | speed-up vs full decode | peak RSS growth (MiB) |")
    print("|---|---|---|---|---|")
    for clip, method, sec, ratio, mib in rows:
        print(f"| {clip} | {method} | {sec:.3f} | {ratio} | {mib:.0f} |")


if __name__ == "__main__":
    main()
