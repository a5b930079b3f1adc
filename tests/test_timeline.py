"""Timelines of long videos (eval.py predict=<video> predict.window=<s> predict.stride=<s>): windows
slid over the whole video, each scored as a video of its frames, from one decoding pass."""
import csv
import re

import numpy as np
import pytest
import torch

from helpers import compose
from helpers import write_video
from video_sparse import build_model
from video_sparse.data import FrameSampler
from video_sparse.data import timeline as T
from video_sparse.data.decode import VideoDecodeError, read_frames
from video_sparse.data.timeline import WindowClips, window_frames, window_starts
from video_sparse.data.transforms import ClipTransform
from video_sparse.engine.timeline import segments, top_classes, video_timeline


@pytest.mark.parametrize("n, length, stride, starts", [
    (100, 30, 20, [0, 20, 40, 60, 70]),  # the last one ends at the last frame
    (100, 30, 35, [0, 35, 70]),          # stride > window: frames between windows are not scored
    (90, 30, 30, [0, 30, 60]),           # the regular windows end at the last frame: none added
    (20, 30, 10, [0]),                   # shorter than a window: the whole video
    (30, 30, 10, [0]),
])
def test_window_starts(n, length, stride, starts):
    assert window_starts(n, length, stride) == starts


def test_window_frames_from_seconds():
    assert window_frames(2.0, 1.0, 29.97) == (60, 30)
    assert window_frames(0.01, 0.01, 25) == (1, 1)


def _expected_views(path, sampler, transform, start, length, clips, crops):
    views = []
    for c in range(clips):
        idx = start + sampler.eval_indices(length, view=c, num_views=clips)
        frames = read_frames(path, lambda n: idx, decoder="pyav", short_side=transform.decode_short_side)
        views += [transform(frames, crop=k, num_crops=crops) for k in range(crops)]
    return torch.stack(views)


class CountingContainer:
    """A PyAV container whose decoded frames are recorded in ``decoded``."""

    def __init__(self, container, decoded):
        self.container, self.decoded = container, decoded

    def decode(self, *args):
        for frame in self.container.decode(*args):
            self.decoded.append(frame.pts)
            yield frame

    def close(self):
        self.container.close()


@pytest.mark.parametrize("sampling, frames, interval", [("dense", 4, 2), ("segment", 3, 1)])
@pytest.mark.parametrize("indexed", [True, False])
def test_window_clips_equal_clips_read_from_the_file_and_decode_once(tmp_path, monkeypatch, sampling, frames,
                                                                     interval, indexed):
    """With the frame count from the packets (planned windows) and without (VP8: found at the end)."""
    path = str(write_video(tmp_path / "long.mp4", num_frames=43, height=40, width=56, fps=25))
    sampler = FrameSampler(sampling, frames, interval)
    transform = ClipTransform(size=24, short_side=28)
    converted, decoded = [], []
    real = T.RGBConverter.__call__
    monkeypatch.setattr(T.RGBConverter, "__call__", lambda self, frame: converted.append(frame.pts) or real(self, frame))
    if not indexed:
        monkeypatch.setattr(T.PacketIndex, "read", classmethod(lambda cls, container, stream: None))
    clips = WindowClips(path, sampler, transform, window_s=0.5, stride_s=0.3, clips=2, crops=3)
    clips.container = CountingContainer(clips.container, decoded)
    assert (clips.fps, clips.length, clips.stride) == (25.0, 12, 8)  # 12.5 -> 12 frames, 7.5 -> 8
    got = list(clips)
    assert len(decoded) == len(set(decoded)) == 43  # every frame decoded once
    sampled = {int(i) for w, _ in got for idx in clips._indices(w.start, 12) for i in idx}
    assert len(converted) == len(set(converted)) == (len(sampled) if indexed else 43)  # RGB: the sampled ones
    starts = window_starts(43, 12, 8)
    assert [w.start for w, _ in got] == starts == [0, 8, 16, 24, 31]
    assert clips.windows == (len(starts) if indexed else None) and clips.error is None
    assert [w.stop - w.start for w, _ in got] == [12] * 5
    assert got[0][0].start_s == 0.0 and got[-1][0].end_s == pytest.approx(43 / 25)
    for window, views in got:
        assert views.shape == (6, frames, 24, 24, 3) and views.dtype == torch.uint8
        torch.testing.assert_close(views, _expected_views(path, sampler, transform, window.start, 12, 2, 3),
                                   rtol=0, atol=0)


class BreakingContainer(CountingContainer):
    """Its decoder raises after ``after`` frames, as FFmpeg does on a corrupt packet."""

    def __init__(self, container, after):
        super().__init__(container, [])
        self.after = after

    def decode(self, *args):
        for frame in super().decode(*args):
            if len(self.decoded) > self.after:
                raise ValueError("Invalid data found when processing input")
            yield frame


def test_a_video_that_breaks_off_keeps_the_windows_before(tmp_path):
    path = str(write_video(tmp_path / "long.mp4", num_frames=40, fps=10))
    clips = WindowClips(path, FrameSampler("dense", 4, 1), ClipTransform(size=32, short_side=48), 1.0, 1.0)
    clips.container = BreakingContainer(clips.container, after=25)
    assert [w.start for w, _ in clips] == [0, 10]  # [20, 30) needed frames 20..29
    assert clips.error == "decoding stopped at frame 25 (ValueError: Invalid data found when processing input)"
    clips = WindowClips(path, FrameSampler("dense", 4, 1), ClipTransform(size=32, short_side=48), 1.0, 1.0)
    clips.container = BreakingContainer(clips.container, after=0)
    with pytest.raises(VideoDecodeError, match="long.mp4: cannot decode \\(ValueError: Invalid data"):
        list(clips)


def test_a_video_shorter_than_a_window_is_one_window(tmp_path):
    path = str(write_video(tmp_path / "short.mp4", num_frames=9, fps=10))
    sampler, transform = FrameSampler("dense", 4, 4), ClipTransform(size=32, short_side=48)
    got = list(WindowClips(path, sampler, transform, window_s=3.0, stride_s=1.0))
    assert len(got) == 1 and (got[0][0].start, got[0][0].stop) == (0, 9)
    torch.testing.assert_close(got[0][1], _expected_views(path, sampler, transform, 0, 9, 1, 1), rtol=0, atol=0)


def test_window_probabilities_csv_and_plot(tmp_path):
    from video_sparse.engine.timeline import plot_timeline

    path = str(write_video(tmp_path / "long.mp4", num_frames=30, height=32, width=32, fps=10))
    sampler, transform = FrameSampler("dense", 4, 1), ClipTransform(size=32, short_side=32)
    torch.manual_seed(0)
    model = build_model("sifa_small", 4).eval()
    classes = ["w", "x", "y", "z"]
    windows, probs = video_timeline(model, WindowClips(path, sampler, transform, 1.0, 0.5), classes,
                                    tmp_path / "t.csv", batch_size=2, device=torch.device("cpu"), progress=False)
    assert [w.start for w in windows] == [0, 5, 10, 15, 20] and probs.shape == (5, 4)
    with torch.no_grad():  # each window is scored as evaluation scores a video: both heads' softmaxes averaged
        for w, p in zip(windows, probs):
            main, dual = model(transform.to_model(_expected_views(path, sampler, transform, w.start, 10, 1, 1)))
            expected = (main.softmax(1) + dual.softmax(1)).mean(0) / 2
            np.testing.assert_allclose(p, expected.numpy(), rtol=1e-5, atol=1e-6)
    rows = list(csv.DictReader(open(tmp_path / "t.csv")))
    assert [int(r["start_frame"]) for r in rows] == [0, 5, 10, 15, 20] and rows[1]["start_s"] == "0.500"
    assert rows[0]["top1"] == classes[int(probs[0].argmax())]
    np.testing.assert_allclose([[float(r[c]) for c in classes] for r in rows], probs, atol=1e-6)
    plot_timeline(windows, probs, classes, tmp_path / "t.png", k=2)
    assert (tmp_path / "t.png").stat().st_size > 10_000


def test_top_classes_and_segments():
    probs = np.array([[0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.1, 0.2, 0.7], [0.1, 0.5, 0.4]])
    assert top_classes(probs, 2) == [0, 2]  # top-1 in two windows, then in one (2 more probable than 1 on average)
    windows = [T.Window(i, i, i + 2, float(i), float(i + 2)) for i in range(4)]
    assert segments(windows, probs) == [(0.0, 3.0, 0, pytest.approx(0.65)), (2.0, 4.0, 2, 0.7), (3.0, 5.0, 1, 0.5)]


def test_eval_timeline_command(trained_run, tmp_path, capsys):
    """The README command: a CSV and a PNG per video, the segments printed; a broken file is said."""
    from video_sparse.engine.evaluator import evaluate_checkpoint

    long = write_video(tmp_path / "long.mp4", num_frames=60, height=32, width=32, fps=10)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 100)
    cfg = compose("eval", [f"checkpoint={trained_run}/checkpoints/best.pt", f"predict=[{long},{broken}]",
                           "predict.window=2", "predict.stride=1", "logger.mode=disabled", "trainer.device=cpu"])
    (tmp_path / "run").mkdir()
    result = evaluate_checkpoint(cfg, tmp_path / "run")
    assert result == {"num_videos": 1, "num_failed": 1}
    rows = list(csv.DictReader(open(tmp_path / "run" / "long.timeline.csv")))
    assert [r["start_s"] for r in rows] == ["0.000", "1.000", "2.000", "3.000", "4.000"]
    assert (tmp_path / "run" / "long.timeline.png").is_file()
    out = capsys.readouterr().out
    assert f"{long}: 5 windows" in out and "timeline:" in out
    assert f"{broken}\n    (no timeline: {broken}: cannot" in out


@pytest.mark.parametrize("overrides, message", [
    (["predict.window=2"], "predict.window=2.0: a timeline needs a video. Fix: predict=/path/long.mp4 predict.window"),
    (["predict.stride=1"], "predict.stride=1.0 needs predict.window (seconds per window). Fix: add predict.window="),
    (["predict.window=0"], "predict.window"),
    (["features=true", "predict.window=2", "predict={video}"], "features=true and predict.window"),
])
def test_timeline_config_mistakes(trained_run, tmp_path, overrides, message):
    from video_sparse.apps.checks import check_eval
    from video_sparse.options import ConfigError

    video = write_video(tmp_path / "v.mp4", num_frames=5)
    cfg = compose("eval", [f"checkpoint={trained_run}/checkpoints/best.pt",
                           *(o.format(video=video) for o in overrides)])
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        check_eval(cfg)


def test_timelines_of_videos_with_the_same_name_keep_both(trained_run, tmp_path):
    from video_sparse.engine.evaluator import evaluate_checkpoint, timeline_names

    assert timeline_names(["a/clip.mp4", "b/clip.mp4", "c/other.webm"]) == ["clip.1", "clip.2", "other"]
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
    first = write_video(tmp_path / "a" / "clip.mp4", num_frames=30, height=32, width=32, fps=10)
    second = write_video(tmp_path / "b" / "clip.mp4", num_frames=40, height=32, width=32, fps=10)
    cfg = compose("eval", [f"checkpoint={trained_run}/checkpoints/best.pt", f"predict=[{first},{second}]",
                           "predict.window=2", "logger.mode=disabled", "trainer.device=cpu"])
    (tmp_path / "run").mkdir()
    assert evaluate_checkpoint(cfg, tmp_path / "run") == {"num_videos": 2, "num_failed": 0}
    ends = [list(csv.DictReader(open(tmp_path / "run" / f"clip.{i}.timeline.csv")))[-1]["end_frame"] for i in (1, 2)]
    assert ends == ["30", "40"] and (tmp_path / "run" / "clip.2.timeline.png").is_file()


@pytest.mark.parametrize("timeline", [False, True])
def test_eval_predict_exits_1_when_no_video_could_be_read(trained_run, tmp_path, timeline):
    """Like a scan that finds unreadable files: a script can tell that predict= read nothing."""
    from helpers import run_app

    broken = [tmp_path / "zeros.mp4", tmp_path / "text.webm"]
    broken[0].write_bytes(b"\x00" * 100)
    broken[1].write_text("not a video")
    proc = run_app("eval.py", [f"checkpoint={trained_run}/checkpoints/best.pt", f"predict=[{broken[0]},{broken[1]}]",
                               *(["predict.window=2"] if timeline else []), "logger.mode=disabled", "trainer.device=cpu",
                               f"hydra.run.dir={tmp_path}/run"], tmp_path, check=False)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == ("error: none of the 2 videos of predict= could be read (each is "
                                                    "named above)")


@pytest.mark.parametrize("container", ["mkv", "live.mkv"])
def test_a_timeline_of_a_damaged_mkv_says_where_it_ends(trained_run, tmp_path, capsys, container):
    """Bytes zeroed in the middle of a Matroska file (with its index, and as a live stream without
    one): the demuxer skips to the next readable cluster, and the timeline (eval.py and the
    Recognizer) says which seconds have no frames instead of joining them silently."""
    import subprocess

    from video_sparse.engine.evaluator import evaluate_checkpoint

    whole = write_video(tmp_path / "whole.mkv", num_frames=200, height=32, width=32, fps=25)
    if container == "live.mkv":
        subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(whole), "-c", "copy", "-live", "1", "-f", "matroska",
                        str(tmp_path / "live.mkv")], check=True)
        whole = tmp_path / "live.mkv"
    data = bytearray(whole.read_bytes())
    data[len(data) // 2: len(data) // 2 + 3000] = bytes(3000)
    damaged = tmp_path / f"damaged.{container}"
    damaged.write_bytes(bytes(data))
    cfg = compose("eval", [f"checkpoint={trained_run}/checkpoints/best.pt", f"predict=[{damaged}]",
                           "predict.window=1", "logger.mode=disabled", "trainer.device=cpu"])
    (tmp_path / "run").mkdir()
    evaluate_checkpoint(cfg, tmp_path / "run")
    out = capsys.readouterr().out
    gap = re.search(r"\(damaged frames: no frames from (\d+\.\d+) s to (\d+\.\d+) s \(a damaged or paused stream\): a "
                    r"window across it joins the frames either side", out)
    assert gap and 2 < float(gap[1]) < float(gap[2]) < 8, out  # the demuxer skipped the damaged cluster(s)

    from video_sparse import Recognizer
    recognizer = Recognizer.from_checkpoint(f"{trained_run}/checkpoints/best.pt", device="cpu")
    with pytest.warns(UserWarning, match=f"{damaged}: no frames from {gap[1]} s to {gap[2]} s"):
        recognizer.timeline(damaged, window=1.0)
