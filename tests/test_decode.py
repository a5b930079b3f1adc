"""video_sparse.data.decode: PyAV's seek decode gives exactly the frames of a full decode, the
per-video timeout, and PyAV's memory on a long high-resolution video."""
import importlib.util
import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from helpers import ROOT, write_video
from video_sparse.data import decode, pyav_decode
from video_sparse.data.dataset import VideoDataset, VideoRecord
from video_sparse.data.decode import VideoDecodeError, read_frames
from video_sparse.data.transforms import ClipTransform

av = pytest.importorskip("av")


def trimmed_copy(src, dst, frames=5):
    """``src`` remuxed with its first ``frames`` frames before time 0: MP4 writes an edit list, and
    those frames are decoded (they are references) but never output."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        stream = out.add_stream_from_template(inp.streams.video[0])
        step = int(1 / (inp.streams.video[0].average_rate * inp.streams.video[0].time_base))
        for packet in inp.demux(inp.streams.video[0]):
            if packet.size:
                packet.pts, packet.dts, packet.stream = packet.pts - frames * step, packet.dts - frames * step, stream
                out.mux(packet)
    return dst


X264_GOP = "keyint=12:min-keyint=12:scenecut=0:bframes=3"
# name -> (writer, whether PyAV seeks in it: False for streams that must decode linearly)
VIDEOS = {
    "h264_bframes.mp4": (lambda p: write_video(p, 60, options={"x264-params": X264_GOP}), True),
    "h264_open_gop.mp4": (lambda p: write_video(p, 60, options={"x264-params": X264_GOP + ":open-gop=1"}), True),
    "h264_odd_size.mp4": (lambda p: write_video(p, 30, 35, 47, options={"g": "7"}, pix_fmt="yuv444p"), True),
    "h264_vfr.mp4": (lambda p: write_video(p, 40, options={"g": "10"},
                                           pts=np.cumsum(np.random.default_rng(1).integers(10, 90, 40))), True),
    "hevc_open_gop.mp4": (lambda p: write_video(p, 50, codec="libx265", options={
        "x265-params": "keyint=16:min-keyint=16:bframes=4:open-gop=1:log-level=error"}), True),
    "vp9.webm": (lambda p: write_video(p, 40, codec="libvpx-vp9", options={
        "g": "10", "deadline": "realtime", "cpu-used": "8"}), True),
    "mpeg4_bframes.avi": (lambda p: write_video(p, 40, codec="mpeg4", options={"g": "10", "bf": "2"}), True),
    "vp8.webm": (lambda p: write_video(p, 30, codec="libvpx", options={"g": "10"}), False),  # linear
    "mpeg2.mpg": (lambda p: write_video(p, 40, codec="mpeg2video", options={"g": "10", "bf": "2"}), None),  # both
}


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("decode")
    for name, (write, _) in VIDEOS.items():
        try:
            write(folder / name)
        except (av.error.FFmpegError, ValueError):  # an encoder this PyAV build lacks (libx265, ...)
            (folder / name).unlink(missing_ok=True)
    trimmed_copy(folder / "h264_bframes.mp4", folder / "h264_trimmed.mp4")
    return folder


def full_decode(path):
    """The reference: every frame PyAV outputs, in order (what the PyAV backend used to keep)."""
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


@pytest.fixture
def linear_calls(monkeypatch):
    """Paths that PyAV decoded linearly (no seeking)."""
    calls, real = [], pyav_decode.decode_pyav_linear
    monkeypatch.setattr(pyav_decode, "decode_pyav_linear", lambda path, *a: calls.append(path) or real(path, *a))
    return calls


@pytest.mark.parametrize("name", [*VIDEOS, "h264_trimmed.mp4"])
def test_pyav_reads_equal_a_full_decode(videos, name, linear_calls):
    path = videos / name
    if not path.exists():
        pytest.skip(f"PyAV cannot encode {name} here")
    reference = full_decode(path)
    n = len(reference)
    counts = []

    def read(idx):
        return read_frames(path, lambda m: counts.append(m) or np.asarray(idx), "pyav", timeout=0)

    for i in range(n):  # every frame alone: a seek to its keyframe each time
        np.testing.assert_array_equal(read([i])[0], reference[i], err_msg=f"frame {i}")
    rng = np.random.default_rng(0)
    for _ in range(15):  # unsorted, repeated, spread over several keyframes
        idx = rng.integers(0, n, rng.integers(1, 12))
        np.testing.assert_array_equal(read(idx), reference[idx], err_msg=f"frames {idx}")
    np.testing.assert_array_equal(read(np.arange(n)[::-1]), reference[::-1])
    np.testing.assert_array_equal(read([0, n - 1, 0]), reference[[0, n - 1, 0]])
    assert set(counts) == {n}  # the frame count the packets give is the decoded count
    seeks = VIDEOS.get(name, (None, True))[1]
    if seeks is not None:
        assert (len(linear_calls) == 0) == seeks, linear_calls[:3]


def test_trimmed_mp4_counts_the_frames_it_shows(videos):
    """The container's frame count includes frames an edit list cuts; the decoded count does not."""
    path = videos / "h264_trimmed.mp4"
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames == 60
    counts = []
    read_frames(path, lambda n: counts.append(n) or [n - 1], "pyav")
    assert counts == [len(full_decode(path))] == [55]


def test_fallback_to_a_linear_decode_reuses_the_chosen_indices(videos, monkeypatch, linear_calls):
    """When the decoder disagrees with the packets, the video decodes from the start; ``choose``
    (which may draw random numbers) is not asked again when the frame counts agree."""
    def disagree(self, wanted):
        raise pyav_decode.Irregular("test")

    monkeypatch.setattr(pyav_decode.SeekingDecoder, "decode", disagree)
    path, calls = videos / "h264_bframes.mp4", []
    frames = read_frames(path, lambda n: calls.append(n) or np.array([50, 3, 3]), "pyav")
    np.testing.assert_array_equal(frames, full_decode(path)[[50, 3, 3]])
    assert calls == [60] and len(linear_calls) == 1


def test_chooser_out_of_range_is_one_clear_error(videos):
    with pytest.raises(VideoDecodeError, match=r"h264_bframes.mp4: cannot decode \(pyav: IndexError: .*\[0, 60\)"):
        read_frames(videos / "h264_bframes.mp4", lambda n: np.array([0, n]), "pyav")


# ----------------------------------------------------------------------------- timeout
@pytest.fixture
def hang(monkeypatch):
    """The "pyav" backend blocks on videos named bad*, else reads as PyAV does; returns PyAV's own."""
    release, real = threading.Event(), decode.BACKENDS["pyav"]

    def backend(path, choose, short_side=None):
        if "bad" in path:
            release.wait(60)
            raise RuntimeError("released")
        return real(path, choose, short_side)

    monkeypatch.setitem(decode.BACKENDS, "pyav", backend)
    yield real
    release.set()  # lets the abandoned threads end


@pytest.fixture
def bad_video(videos, tmp_path):
    path = tmp_path / "bad.mp4"
    path.write_bytes((videos / "h264_bframes.mp4").read_bytes())
    return path


def test_a_hanging_decoder_times_out_as_an_unreadable_video(bad_video, hang, capfd):
    start = time.monotonic()
    with pytest.raises(VideoDecodeError, match=r"bad.mp4: cannot decode \(pyav: decode timed out after 0.3 s\)"):
        read_frames(bad_video, lambda n: [0], "pyav", timeout=0.3)
    assert time.monotonic() - start < 5
    os.write(2, b"stderr is back")  # file descriptor 2 is not left silenced by the hanging thread
    assert "stderr is back" in capfd.readouterr().err


def test_after_a_timeout_the_next_backend_reads_the_video(bad_video, monkeypatch, hang):
    monkeypatch.setitem(decode.BACKENDS, "decord", decode.BACKENDS["pyav"])
    monkeypatch.setitem(decode.BACKENDS, "pyav", hang)
    frames = read_frames(bad_video, lambda n: [0, n - 1], "decord", timeout=0.3)
    np.testing.assert_array_equal(frames, full_decode(bad_video)[[0, -1]])


def test_timeout_default_and_bad_value(bad_video, monkeypatch, hang):
    monkeypatch.setattr(decode, "DECODE_TIMEOUT_S", 0.2)  # read at each call
    with pytest.raises(VideoDecodeError, match="timed out after 0.2 s"):
        read_frames(bad_video, lambda n: [0], "pyav")
    with pytest.raises(ValueError, match="timeout must be >= 0 seconds"):
        read_frames(bad_video, lambda n: [0], "pyav", timeout=-1)


@pytest.mark.parametrize("train", [True, False])
def test_dataset_treats_a_timed_out_video_as_unreadable(videos, bad_video, monkeypatch, hang, train):
    monkeypatch.setattr(decode, "DECODE_TIMEOUT_S", 0.3)
    records = [VideoRecord(str(bad_video), 0), VideoRecord(str(videos / "h264_bframes.mp4"), 1)]
    ds = VideoDataset(records, ClipTransform(size=32, short_side=32, train=train), frames=4, train=train,
                      decoder="pyav")
    sample = ds[0]
    assert sample["failed"] >= 1
    if train:  # replaced by the readable video
        assert sample["valid"] and sample["index"] == 1
    else:  # reported, not replaced
        assert not sample["valid"] and sample["index"] == 0


# ----------------------------------------------------------------------------- memory on a long video
MEMORY_CHECK = """
import json, sys
from pathlib import Path
import numpy as np
from video_sparse.data.decode import read_frames
from video_sparse.data.sampling import FrameSampler

def status(key):
    return next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith(key + ":"))

path = sys.argv[1]
read_frames(path, lambda n: np.array([0]), "pyav")  # loads the libraries
rss = status("VmRSS")
try:
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS; else the growth is an upper bound
except OSError:
    pass
counts, shapes = [], []
choosers = [lambda n: counts.append(n) or np.array([0, n - 1]), lambda n: FrameSampler("segment", 8).eval_indices(n)]
choosers += [lambda n, v=v: FrameSampler("dense", 16, 4).eval_indices(n, v, 10) for v in range(10)]
for choose in choosers:
    shapes.append(read_frames(path, choose, "pyav").shape)
shapes.append(read_frames(path, choosers[-1], "pyav", short_side=256).shape)  # scaled while decoding
print(json.dumps({"growth": status("VmHWM") - rss, "shapes": shapes, "frames": counts[0]}))
"""


def test_pyav_memory_on_a_long_720p_video_stays_small(tmp_path):
    """60 s of 1280x720 at 25 fps: 1500 frames, 4.1 GB as RGB, which the old PyAV path held in
    memory at once (for every test clip). Reading the first/last frames, 8 segments and 10 dense
    test clips must grow the peak RSS by less than 1 GiB."""
    spec = importlib.util.spec_from_file_location("benchmark_decode", ROOT / "benchmarks" / "decode.py")
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    path = tmp_path / "long.mp4"
    benchmark.write_long_video(path, seconds=60, fps=25, width=1280, height=720, gop=50)
    proc = subprocess.run([sys.executable, "-c", MEMORY_CHECK, str(path)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["frames"] == 1500
    assert [tuple(s) for s in result["shapes"]] == ([(2, 720, 1280, 3), (8, 720, 1280, 3)] + [(16, 720, 1280, 3)] * 10
                                                    + [(16, 256, 455, 3)])
    assert result["growth"] < 2**30, f"peak RSS grew by {result['growth'] / 2**20:.0f} MiB"


@pytest.mark.parametrize("backend", ["pyav", "decord"])
@pytest.mark.parametrize("name", ["h264_bframes.mp4", "h264_odd_size.mp4", "vp8.webm"])
def test_frames_larger_than_the_clip_needs_are_scaled_down_while_decoding(videos, name, backend):
    """With ``short_side`` a backend returns the frames at the size ClipTransform resizes to (so it
    does not resize again) and close to resizing the full frames; frames already small enough come
    out exactly as stored."""
    import torch

    if backend == "decord":
        pytest.importorskip("decord")
    path, idx = videos / name, np.array([3, 0, 17, 17, 9])
    full = read_frames(path, lambda n: idx, backend, timeout=0)
    h, w = full.shape[1:3]
    short = min(h, w) * 2 // 3
    small = read_frames(path, lambda n: idx, backend, timeout=0, short_side=short)
    assert small.shape == (len(idx), *decode.scaled_size(h, w, short), 3)
    assert min(small.shape[1:3]) == short
    transform = ClipTransform(size=short, short_side=short)
    resized = transform.resize(torch.from_numpy(full).permute(0, 3, 1, 2))
    assert transform.resize(torch.from_numpy(small).permute(0, 3, 1, 2)).shape == resized.shape  # no second resize
    diff = np.abs(small.astype(np.float64) - resized.permute(0, 2, 3, 1).numpy())
    assert diff.mean() < 6, f"mean |scaled while decoding - resized after| = {diff.mean():.1f} of 255"
    for short_side in (min(h, w), min(h, w) + 50):
        np.testing.assert_array_equal(read_frames(path, lambda n: idx, backend, timeout=0,
                                                  short_side=short_side), full)


def test_a_transform_names_the_short_side_frames_may_be_decoded_at():
    assert ClipTransform(size=32, short_side=40).decode_short_side == 40
    assert ClipTransform(size=32, short_side=40, train=True, scale_jitter=(36, 64)).decode_short_side == 64
    assert ClipTransform(size=32, short_side=40, train=True, resized_crop_area=(0.08, 1.0)).decode_short_side is None


def test_the_dataset_decodes_at_the_clip_s_short_side(videos, monkeypatch):
    """Evaluation clips equal those made from full-size frames up to the scaler's rounding; the
    frames the decoder returns are already at the transform's size."""
    import torch

    shapes, real = [], pyav_decode.decode_pyav
    monkeypatch.setattr(decode, "BACKENDS", dict(decode.BACKENDS, pyav=lambda *a, **k: (
        lambda f: shapes.append(f.shape) or f)(real(*a, **k))))
    records = [VideoRecord(str(videos / "h264_bframes.mp4"), 0)]
    clips = {}
    for short_side in (32, None):
        transform = ClipTransform(size=32, short_side=32)
        monkeypatch.setattr(ClipTransform, "decode_short_side", property(lambda self, s=short_side: s))
        dataset = VideoDataset(records, transform, frames=4, train=False, clips=2, crops=3, decoder="pyav")
        clips[short_side] = dataset[0]["video"]
    assert shapes[0][1:] == (32, 43, 3) and shapes[-1][1:] == (48, 64, 3)
    assert clips[32].shape == clips[None].shape == (6, 4, 32, 32, 3)
    assert (clips[32].double() - clips[None].double()).abs().mean() < 8
    assert not torch.equal(clips[32], clips[None])
