"""Real-world files (tests/data/real, see its NOTICE.md) and crafted broken ones: every decoder returns
exactly the frames of a sequential decode of the chosen stream, whatever the index set, every time."""
import importlib.util

import numpy as np
import pytest

from helpers import ROOT
from video_sparse.data import decode, pyav_decode
from video_sparse.data.decode import decord_refusal, read_frames, video_info
from video_sparse.data.video_file import RGBConverter, scaled_size

av = pytest.importorskip("av")

REAL = ROOT / "tests" / "data" / "real"
# name -> (chosen stream, frames, fps) of the sequential decode: the files' provenance table
CLIPS = {
    "flipping_pancake.mkv": (0, 310, 30.0),
    "arm_wrestling.mp4": (0, 280, 28.0),
    "applying_makeup.avi": (0, 164, 25.0),
    "nasa_crane.mp4": (3, 390, 30000 / 1001),
}
DECODERS = ["auto", "pyav"] + (["decord"] if importlib.util.find_spec("decord") else [])
REPEATS = 20


def sequential_decode(path):
    """The ground truth: every frame a decode of FFmpeg's best video stream outputs, unscaled."""
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(container.streams.best("video"))])


@pytest.fixture(scope="module")
def truth():
    return {name: sequential_decode(REAL / name) for name in CLIPS}


def keyframe_frames(path):
    """Frame indices of the keyframes of the chosen stream (from its packets)."""
    with av.open(str(path)) as container:
        index = pyav_decode.PacketIndex.read(container, container.streams.best("video"))
    return sorted(index.frame_of[int(index.pts[k])] for k in index.keyframes)


def index_sets(path, n):
    rng = np.random.default_rng(n)
    sets = [rng.integers(0, n, 8) for _ in range(2)]  # unsorted, maybe repeated
    sets += [np.array([0, 1, n - 2, n - 1]), np.arange(n - 16, n), np.array([n - 1, 0, n - 1])]
    sets += [np.array([k + d]) for k in keyframe_frames(path) for d in (0, 1) if k + d < n]
    return sets


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("name", list(CLIPS))
def test_every_read_returns_the_sequential_decode_s_frames(truth, name, decoder):
    """Random sets, sets touching the first and last frames, single frames at and after each keyframe,
    each read 20 times, every time by a fresh decoder (decord returned a random frame for the last
    frame of the AVI in ~5 % of such reads before it was routed through PyAV)."""
    path, reference = REAL / name, truth[name]
    counts = set()
    for idx in index_sets(path, len(reference)):
        for _ in range(REPEATS if decoder != "auto" else 1):  # auto is PyAV (the next test), read 20x above
            frames = read_frames(path, lambda n: counts.add(n) or idx, decoder)
            np.testing.assert_array_equal(frames, reference[idx], err_msg=f"{name} frames {idx.tolist()}")
    assert counts == {len(reference)}


def test_auto_is_pyav():
    """auto picks the fastest decoder exact for the file: PyAV for every file measured
    (benchmarks/decoders.py); decord is only ever a guarded choice."""
    assert decode._CHAINS["auto"] == decode._CHAINS["pyav"] == ("pyav",)


@pytest.mark.parametrize("name", list(CLIPS))
def test_decoders_agree_on_stream_frames_and_fps(name):
    stream, frames, fps = CLIPS[name]
    infos = {d: video_info(REAL / name, d) for d in DECODERS}
    for info in infos.values():
        assert (info.stream, info.frames) == (stream, frames)
        assert info.fps == pytest.approx(fps, rel=1e-6)
    assert len({(i.stream, i.frames, i.width, i.height) for i in infos.values()}) == 1


def test_decord_is_trusted_only_with_files_it_reads_exactly():
    assert decord_refusal(str(REAL / "arm_wrestling.mp4")) == decord_refusal(str(REAL / "flipping_pancake.mkv")) == ""
    assert "AVI" in decord_refusal(str(REAL / "applying_makeup.avi"))
    assert "2 video streams" in decord_refusal(str(REAL / "nasa_crane.mp4"))


@pytest.mark.parametrize("name", list(CLIPS))
@pytest.mark.parametrize("short_side", [128, 200])
def test_scaled_frames_of_both_decoders_agree(name, short_side):
    """The PyAV scaler is decord's filter: decord's own reader (not routed through PyAV) and PyAV give
    the same scaled frames, here to the bit (the acceptance bound is 2/255)."""
    decord = pytest.importorskip("decord")
    path, idx = str(REAL / name), [0, 5, 40]
    with av.open(path) as container:
        decoded = [f for _, f in zip(range(41), container.decode(container.streams.best("video")))]
    h, w = scaled_size(decoded[0].height, decoded[0].width, short_side)
    ours = np.stack([RGBConverter(short_side)(decoded[i]) for i in idx])
    theirs = decord.VideoReader(path, num_threads=1, width=w, height=h).get_batch(idx).asnumpy()
    assert ours.shape == theirs.shape == (3, h, w, 3)
    assert np.abs(ours.astype(int) - theirs).max() <= 2
    np.testing.assert_array_equal(read_frames(path, lambda n: np.array(idx), "pyav", short_side=short_side), ours)


# ----------------------------------------------------------------------------- broken seeks
def write_h264(path, frames=60, options=None):
    from helpers import write_video
    return write_video(path, frames, 48, 64, options=options)


def p_frames_flagged_as_keyframes(path):
    """MPEG-4 Part 2 in MP4 whose container marks some P-frames as keyframes: a decoder that starts
    there outputs garbage (max error ~200/255) with no corrupt flag and the right timestamps."""
    from helpers import write_video
    source = write_video(path.with_suffix(".avi"), 60, 48, 64, codec="mpeg4", options={"g": "30", "bf": "0"})
    with av.open(str(source)) as inp, av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream_from_template(inp.streams.video[0])
        for i, packet in enumerate(p for p in inp.demux(inp.streams.video[0]) if p.size):
            packet.stream = stream
            packet.is_keyframe = packet.is_keyframe or i % 10 == 5
            out.mux(packet)
    return path


BROKEN = {
    "fake_keyframes.mp4": p_frames_flagged_as_keyframes,
    # x264's periodic intra refresh: no IDR after the first frame; its "keyframes" are P-frames from
    # which a decoder recovers over a few frames (FFmpeg outputs none until then)
    "intra_refresh.mp4": lambda p: write_h264(p, options={"x264-params": "intra-refresh=1:keyint=20:bframes=0"}),
}


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    folder = tmp_path_factory.mktemp("broken")
    return {name: make(folder / name) for name, make in BROKEN.items()}


def frames_after_a_seek(path, frame_pts):
    """``{pts: RGB}`` of what a plain seek to ``frame_pts`` and 6 decoded frames give."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        container.seek(frame_pts, backward=True, any_frame=False, stream=stream)
        return {f.pts: f.to_ndarray(format="rgb24") for _, f in zip(range(6), container.decode(stream))}


@pytest.mark.parametrize("name", list(BROKEN))
def test_a_stream_whose_seeks_go_wrong_is_decoded_linearly_and_exactly(broken, name):
    path, reference = broken[name], sequential_decode(broken[name])
    with av.open(str(path)) as container:
        index = pyav_decode.PacketIndex.read(container, container.streams.video[0])
    later = [index.frame_of[int(index.pts[k])] for k in index.keyframes[1:]]
    # What a seek gives there: the keyframe's frame missing or garbage (what was returned before)
    sought = frames_after_a_seek(path, int(index.frame_pts[later[0]]))
    first = int(index.frame_pts[later[0]])
    assert first not in sought or np.abs(sought[first].astype(int) - reference[later[0]]).max() > 50
    assert pyav_decode.needs_linear_decode(str(path))
    for decoder in DECODERS:
        for i in later + [k + 1 for k in later] + [len(reference) - 1]:
            np.testing.assert_array_equal(read_frames(path, lambda n: [i], decoder)[0], reference[i],
                                          err_msg=f"{decoder} frame {i}")


class Flagged:
    """A PyAV frame flagged corrupt."""

    def __init__(self, frame):
        self.frame, self.is_corrupt = frame, True

    def __getattr__(self, name):
        return getattr(self.frame, name)


def test_frames_flagged_corrupt_after_a_seek_send_the_file_to_a_linear_decode(tmp_path, monkeypatch):
    """FFmpeg flags what it could not decode properly (an old x264's 4:4:4 stream decoded from a later
    keyframe comes out solid green, flagged): one such frame after a seek is enough, and the file is
    decoded from the start from then on."""
    path = write_h264(tmp_path / "gop.mp4", options={"x264-params": "keyint=10:min-keyint=10:scenecut=0"})
    reference = sequential_decode(path)
    accept, linear = pyav_decode.SeekingDecoder._accept, pyav_decode.decode_pyav_linear
    monkeypatch.setattr(pyav_decode.SeekingDecoder, "_accept", lambda self, frame, todo, frames: accept(
        self, Flagged(frame) if self.keyframe else frame, todo, frames))  # after a seek to a later keyframe
    calls = []
    monkeypatch.setattr(pyav_decode, "decode_pyav_linear", lambda *a: calls.append(a[0]) or linear(*a))
    np.testing.assert_array_equal(read_frames(path, lambda n: [3, 25], "pyav"), reference[[3, 25]])
    assert len(calls) == 1  # frame 3 sought from frame 0 (not flagged), frame 25 from 20: flagged
    monkeypatch.setattr(pyav_decode.SeekingDecoder, "_accept", accept)
    np.testing.assert_array_equal(read_frames(path, lambda n: [25], "pyav"), reference[[25]])
    assert len(calls) == 2  # remembered: straight to the linear decode
    assert "flagged corrupt" in pyav_decode.needs_linear_decode(str(path))  # the remembered reason


def test_decoder_names_are_checked():
    with pytest.raises(ValueError, match="unknown decoder 'ffmpeg'; choose one of auto, pyav, decord"):
        read_frames(REAL / "arm_wrestling.mp4", lambda n: [0], "ffmpeg")
    assert set(decode.DECODERS) == {"auto", "pyav", "decord"}


# ----------------------------------------------------------------------------- scan
def test_scan_lists_each_real_clip_with_its_stream_frames_fps_and_status(tmp_path):
    """The README command over tests/data/real (its NOTICE.md is no video: left out of the folder)."""
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, "-m", "video_sparse.data.scan", "videos=[tests/data/real]",
                           f"hydra.run.dir={tmp_path}"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    lines = {line.split()[0]: line.split() for line in proc.stdout.splitlines() if line.split()
             and line.split()[0] in CLIPS}
    for name, (stream, frames, fps) in CLIPS.items():
        assert lines[name][1:4] == [str(stream), str(frames), str(round(fps, 3))], lines[name]
    assert {name: line[4] for name, line in lines.items()} == {
        "flipping_pancake.mkv": "ok", "arm_wrestling.mp4": "ok", "nasa_crane.mp4": "ok",
        "applying_makeup.avi": "needs_linear_decode"}  # its packed B-frames' timestamps do not follow the frames
    assert "report:" in proc.stdout and (tmp_path / "scan_report.csv").is_file()


def test_scan_reports_files_whose_seeks_go_wrong(broken, tmp_path):
    from helpers import compose
    from video_sparse.apps.scan import scan
    counts = scan(compose("scan", [f"videos=[{','.join(map(str, broken.values()))}]", "data.frames=4", "workers=1"]),
                  tmp_path)
    assert counts == {"videos": {"ok": 0, "needs_linear_decode": 2, "short": 0, "missing": 0, "unreadable": 0}}
    report = (tmp_path / "scan_report.csv").read_text()
    assert "not a key frame" in report and "decoded from the start" in report


# ----------------------------------------------------------------------------- timelines
def test_timeline_windows_report_their_frames_presentation_times():
    """The AVI's decoder labels frame 50 with timestamp 52 (packed B-frames); the frame is shown at
    the 51st timestamp, 2.040 s, which the window starting there reports (times from the packets)."""
    from video_sparse.data import timeline
    from video_sparse.data.sampling import FrameSampler
    from video_sparse.data.transforms import ClipTransform
    clips = timeline.WindowClips(str(REAL / "applying_makeup.avi"), FrameSampler("uniform", 4),
                                 ClipTransform(size=32, short_side=32), window_s=2.0, stride_s=2.0)
    windows = [w for w, _ in clips]
    assert [(w.start, w.stop) for w in windows] == [(0, 50), (50, 100), (100, 150), (114, 164)]
    assert [(w.start_s, w.end_s) for w in windows] == [(0.04, 2.04), (2.04, 4.04), (4.04, 6.04), (4.6, 6.6)]


FORK_AFTER_SCALING = """
import sys, torch
from video_sparse.data.annotations import VideoRecord
from video_sparse.data.dataset import VideoDataset
from video_sparse.data.decode import read_frames
from video_sparse.data.transforms import ClipTransform
path = sys.argv[1]
read_frames(path, lambda n: [0, 5], "pyav", short_side=128)  # a filter graph in this process
ds = VideoDataset([VideoRecord(path, 0)] * 2, ClipTransform(size=112, short_side=128, train=True), 4, train=True)
print(len(list(torch.utils.data.DataLoader(ds, batch_size=2, num_workers=1))))
"""


def test_a_worker_forked_after_scaling_in_this_process_does_not_hang():
    """FFmpeg's slice threads in the scaler's filter graph held locks a forked DataLoader worker
    inherited: it hung at start-up. The graph runs on one thread."""
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, "-c", FORK_AFTER_SCALING, str(REAL / "arm_wrestling.mp4")], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.split()[-1] == "1", proc.stderr[-2000:]


def test_scan_videos_mistakes_are_one_line_each(tmp_path):
    from helpers import compose
    from video_sparse.apps.checks import ConfigError, check_scan
    from video_sparse.apps.scan import scan
    with pytest.raises(ConfigError, match=r"videos: .*gone.mp4 is neither a file nor a folder. Fix: videos="):
        scan(compose("scan", [f"videos=[{tmp_path / 'gone.mp4'}]"]), tmp_path)
    (tmp_path / "notes.txt").write_text("no video")
    with pytest.raises(ConfigError, match=r"videos: no file in .*Fix: videos="):
        scan(compose("scan", [f"videos=[{tmp_path}]"]), tmp_path)
    with pytest.raises(ConfigError, match=r"data.decoder must be one of auto, pyav, decord, got ffmpeg"):
        check_scan(compose("scan", [f"videos=[{tmp_path}]", "data.decoder=ffmpeg"]))


def test_eval_s_decoder_override_replaces_the_run_s():
    from helpers import compose
    from video_sparse.engine.loading import checkpoint_data_config
    run = {"name": "list", "root": "/v", "decoder": "decord", "frames": 8}
    assert checkpoint_data_config(run, compose("eval", ["checkpoint=x.pt"]).data).decoder == "decord"
    assert checkpoint_data_config(run, compose("eval", ["checkpoint=x.pt", "data.decoder=pyav"]).data).decoder == "pyav"
    assert checkpoint_data_config({"name": "list"}, compose("eval", ["checkpoint=x.pt"]).data).decoder == "auto"


@pytest.mark.parametrize("name", sorted(CLIPS))
def test_a_timeline_of_an_intact_real_clip_reports_no_damage(name):
    """The gap and corrupt-frame report of timelines (a damaged stream the demuxer resynchronised
    after) stays silent on intact real files: packed B-frames, two streams, a 29.97 fps stream."""
    from video_sparse.data import timeline
    from video_sparse.data.sampling import FrameSampler
    from video_sparse.data.transforms import ClipTransform
    clips = timeline.WindowClips(str(REAL / name), FrameSampler("uniform", 4), ClipTransform(size=32, short_side=32),
                                 window_s=2.0, stride_s=2.0)
    assert [w for w, _ in clips] and clips.error is None
    assert clips.damage() is None and clips.gaps == [] and clips.corrupt == 0
