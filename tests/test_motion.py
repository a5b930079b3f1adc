"""The motion benchmark: time-reversal symmetry, class semantics, no compression leak, caching."""
import json
from dataclasses import fields

import numpy as np
import pytest

from video_sparse.data.motion import (
    CLASS_NAMES, ROTATABLE_SHAPES, SHAPES, SYMMETRY_DEGREES, MotionSetSpec, MotionState, _shape_distance, class_pairs,
    prepare_motion_dataset, render_video, sample_video, write_mp4,
)
from video_sparse.data.decode import read_frames

SEEDS = range(40)


def _state_arrays(state: MotionState) -> dict:
    return {f.name: getattr(state, f.name) for f in fields(state)}


@pytest.mark.parametrize("pair", range(5))
def test_class_b_is_exact_time_reversal_of_class_a(pair):
    """Symmetry on the generator's parameters: for every seed, the class-B draw is the class-A draw
    with frames (and exposure sub-frames) in reverse order, and nothing else differs. Seeds are
    drawn independently of the class, so a video and its reversal are equally likely."""
    a, b = class_pairs()[pair]
    for seed in SEEDS:
        va, vb = sample_video(seed, a, frames=7, height=24, width=30), sample_video(seed, b, frames=7, height=24, width=30)
        sa, sb = _state_arrays(va.state), _state_arrays(vb.state)
        for name, arr in sa.items():
            expected = arr[::-1] if name == "noise" else arr[::-1, ::-1]
            np.testing.assert_array_equal(sb[name], expected, err_msg=name)
        assert va.shapes == vb.shapes
        np.testing.assert_array_equal(va.colours, vb.colours)
        np.testing.assert_array_equal(va.background, vb.background)


def test_renderer_is_time_equivariant():
    """Frame t is rendered from state t alone: rendering the reversed state reverses the video."""
    for seed in range(6):
        va, vb = sample_video(seed, 2 * (seed % 5)), sample_video(seed, 2 * (seed % 5) + 1)
        np.testing.assert_array_equal(render_video(vb), render_video(va)[::-1])


def test_subframe_instants_are_symmetric():
    """Motion blur integrates sub-frames placed symmetrically around each frame's instant; that
    symmetry is what keeps blurred frames identical under reversal."""
    from video_sparse.data.motion import _subframe_times
    t = _subframe_times(5, 5, 1.0)
    np.testing.assert_allclose(t[::-1, ::-1], 4 - t)


def _actor(seed, label, T=16):
    st = sample_video(seed, label, frames=T).state
    centre = st.cx.shape[1] // 2
    return {k: getattr(st, k)[:, centre, 0] for k in ("cx", "cy", "angle", "size", "alpha")}


@pytest.mark.parametrize("label,key,sign", [
    (0, "cx", -1), (1, "cx", 1), (2, "cy", -1), (3, "cy", 1), (4, "angle", 1), (5, "angle", -1),
    (6, "size", 1), (7, "size", -1), (8, "alpha", 1), (9, "alpha", -1)])
def test_actor_performs_its_class(label, key, sign):
    """The class's attribute changes monotonically in the named direction by a visible amount,
    and the other attributes stay constant (image y points down: 'up' decreases cy)."""
    for seed in SEEDS:
        a = _actor(seed, label)
        d = np.diff(a[key])
        assert np.all(sign * d > 0), (CLASS_NAMES[label], a[key])
        change = abs(a[key][-1] - a[key][0])
        assert change > {"cx": 10, "cy": 10, "angle": np.deg2rad(80), "size": 3, "alpha": 0.7}[key]
        for other in ("cx", "cy", "angle", "size", "alpha"):
            if other != key:
                assert np.ptp(a[other]) == 0, (CLASS_NAMES[label], other)


def _shape_mask(shape, degrees, n=201):
    """The unit shape turned by ``degrees``, rasterised on an n x n grid over [-1.5, 1.5]^2."""
    v, u = np.mgrid[-1.5:1.5:n * 1j, -1.5:1.5:n * 1j]
    a = np.deg2rad(degrees)
    return _shape_distance(shape, np.cos(a) * u + np.sin(a) * v, -np.sin(a) * u + np.cos(a) * v) < 0


@pytest.mark.parametrize("shape", SHAPES)
def test_symmetry_table_is_each_shapes_smallest_self_mapping_turn(shape):
    base = _shape_mask(shape, 0)

    def same(deg):  # allow the raster's boundary pixels to differ
        return (base != _shape_mask(shape, deg % 360)).mean() < 0.005

    sym = SYMMETRY_DEGREES[shape]
    if sym == 0:
        assert all(same(d) for d in (17, 45, 90, 133))
        return
    assert same(sym) and not any(same(d) for d in range(10, sym, 5)), shape


def test_rotating_actor_has_no_symmetry_shorter_than_half_a_turn():
    shapes = {sample_video(seed, 4).shapes[0] for seed in range(200)}
    assert shapes == set(ROTATABLE_SHAPES) and all(SYMMETRY_DEGREES[s] >= 180 for s in shapes)


def test_default_clip_of_a_reversed_video_is_the_reversed_clip():
    """The symmetry property must survive frame sampling: the frames a clip takes from a class-B video
    are exactly those of its class-A twin, reversed, so the order-blind ceiling of 50 % holds for
    clips, not only for whole videos."""
    from helpers import compose
    from video_sparse.data.sampling import FrameSampler
    data = compose("train", []).data
    sampler = FrameSampler(data.sampling, data.frames, data.interval)
    idx = sampler.train_indices(data.video_frames, np.random.default_rng(0))
    np.testing.assert_array_equal(idx, data.video_frames - 1 - idx[::-1])
    a = render_video(sample_video(3, 8, frames=data.video_frames))  # fading in
    b = render_video(sample_video(3, 9, frames=data.video_frames))  # the same draw, fading out
    np.testing.assert_array_equal(a[idx], b[idx][::-1])


@pytest.mark.parametrize("frames", [3, 4, 5, 8, 16])
def test_rotation_step_of_sampled_clips_cannot_alias(frames):
    """Clips of ``frames`` >= 3 frames of the default video (uniform sampling) turn the actor by less
    than half the symmetry angle of every rotatable shape per step, so a clockwise turn never looks
    like a shorter counter-clockwise one; and by enough to be seen. (A 2-frame clip, frames 3 and
    12, turns a bar by up to 99 degrees: direction is ambiguous there.)"""
    from helpers import compose
    from video_sparse.data.sampling import uniform_indices
    data = compose("train", []).data
    idx = uniform_indices(data.video_frames, frames)
    half = min(SYMMETRY_DEGREES[s] for s in ROTATABLE_SHAPES) / 2
    for seed in range(200):
        angle = sample_video(seed, 4, frames=data.video_frames).state.angle[:, :, 0].mean(1)  # frame centres
        steps = np.rad2deg(np.diff(angle[idx]))
        assert (steps > 5).all() and (steps < half).all(), steps


def test_nuisances_have_time_symmetric_law():
    """Distractor and background displacements carry no direction: their mean net displacement is
    ~0 and the sign of the net horizontal displacement is a fair coin, in every class."""
    net, signs = [], []
    for seed in range(400):
        st = sample_video(seed, seed % 10).state
        net.append(st.bg_shift[-1, 2] - st.bg_shift[0, 2])
        for o in range(1, st.cx.shape[2]):
            signs.append(np.sign(st.cx[-1, 2, o] - st.cx[0, 2, o]))
    net = np.array(net)
    assert abs(net[:, 1].mean()) < 3 * net[:, 1].std() / np.sqrt(len(net))
    signs = np.array(signs)
    assert len(signs) > 200
    assert abs(signs.mean()) < 3 / np.sqrt(len(signs))


def test_videos_are_in_frame_and_visible():
    for seed in range(30):
        video = sample_video(seed, seed % 10)
        frames = render_video(video)
        assert frames.shape == (16, 64, 64, 3) and frames.dtype == np.uint8
        st = video.state
        assert (st.cx[..., 0] > 0).all() and (st.cx[..., 0] < 64).all()
        assert (st.cy[..., 0] > 0).all() and (st.cy[..., 0] < 64).all()
        # The actor contrasts with the background.
        assert abs(video.colours[0].mean() - video.background.mean()) > 0.25


def test_compression_quality_does_not_depend_on_frame_index(tmp_path):
    """GOP compression makes key frames sharper, which would leak time's direction (a growing
    object is sharp when small). The files are intra-only: per-frame error shows no trend."""
    errors = []
    for seed in range(12):
        frames = render_video(sample_video(seed, seed % 10))
        path = tmp_path / f"{seed}.mp4"
        write_mp4(path, frames)
        decoded = read_frames(path, lambda n: np.arange(n))
        assert decoded.shape == frames.shape
        errors.append(np.abs(decoded.astype(float) - frames).mean(axis=(1, 2, 3)))
    per_frame = np.mean(errors, axis=0)
    assert per_frame.max() / per_frame.min() < 1.15, per_frame
    first_half, second_half = per_frame[:8].mean(), per_frame[8:].mean()
    assert abs(first_half - second_half) / per_frame.mean() < 0.05
    import av
    with av.open(str(tmp_path / "0.mp4")) as c:
        assert all(f.key_frame for f in c.decode(video=0))


def test_prepare_generates_caches_and_regenerates(tmp_path):
    spec = MotionSetSpec(train_size=12, val_size=6, frames=8, height=32, width=32, seed=3)
    folder = prepare_motion_dataset(spec, tmp_path, workers=1, progress=False)
    lines = (folder / "train.txt").read_text().split("\n")[:-1]
    assert len(lines) == 12 and len((folder / "val.txt").read_text().split("\n")[:-1]) == 6
    assert (folder / "classes.txt").read_text().split("\n")[:-1] == list(CLASS_NAMES)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["spec"]["seed"] == 3 and manifest["pairs"] == [list(p) for p in class_pairs()]
    path, label = lines[0].split()
    frames = read_frames(folder / path, lambda n: np.arange(n))
    assert frames.shape == (8, 32, 32, 3)
    # Deterministic content: regenerating the same spec elsewhere gives the same pixels.
    again = prepare_motion_dataset(spec, tmp_path / "other", workers=2, progress=False)
    np.testing.assert_array_equal(read_frames(again / path, lambda n: np.arange(n)), frames)
    # Cached: a second call reuses the folder without rewriting it.
    mtime = (folder / path).stat().st_mtime_ns
    assert prepare_motion_dataset(spec, tmp_path, progress=False) == folder
    assert (folder / path).stat().st_mtime_ns == mtime
    # A corrupted manifest forces regeneration; other parameters get another folder.
    (folder / "manifest.json").write_text("{broken")
    assert prepare_motion_dataset(spec, tmp_path, workers=1, progress=False) == folder
    assert json.loads((folder / "manifest.json").read_text())["spec"]["seed"] == 3
    other = prepare_motion_dataset(MotionSetSpec(**{**spec.__dict__, "seed": 4}), tmp_path, workers=1, progress=False)
    assert other != folder


def test_labels_are_balanced():
    from video_sparse.data.motion import _video_jobs
    jobs = _video_jobs(MotionSetSpec(train_size=100, val_size=50))
    train = [label for split, _, label, _ in jobs if split == "train"]
    assert np.bincount(train).tolist() == [10] * 10


def test_odd_sizes_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="even"):
        prepare_motion_dataset(MotionSetSpec(height=63), tmp_path)


# Generates one tiny set once every process of the test has started (a barrier on files), like the
# jobs of a sweep started together on a cold cache. argv: cache dir, this process's id, process
# count, "flock" or "none" (a file system without flock: only the rename fallback protects).
GENERATE_TOGETHER = """
import contextlib, sys, time
from pathlib import Path
from video_sparse.data import motion
cache, me, count, lock = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
if lock == "none":
    motion._generation_lock = lambda cache, key: contextlib.nullcontext()
(cache.parent / f"ready-{me}").touch()
while len(list(cache.parent.glob("ready-*"))) < count:
    time.sleep(0.01)
spec = motion.MotionSetSpec(train_size=12, val_size=6, frames=8, height=32, width=32, seed=5)
print(motion.prepare_motion_dataset(spec, cache, workers=1, progress=False))
"""


@pytest.mark.parametrize("lock", ["flock", "none"])
def test_concurrent_generation_of_one_set_leaves_one_copy(tmp_path, lock):
    import subprocess
    import sys
    cache = tmp_path / "cache"
    procs = [subprocess.Popen([sys.executable, "-c", GENERATE_TOGETHER, str(cache), str(i), "2", lock],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
    (folder,) = {out.strip() for out, _ in outs}
    key = MotionSetSpec(train_size=12, val_size=6, frames=8, height=32, width=32, seed=5).key()
    expected = [key, f"{key}.lock"] if lock == "flock" else [key]
    assert sorted(p.name for p in cache.iterdir()) == expected  # no temporary folder left
    assert folder == str(cache / key)
    assert len((cache / key / "train.txt").read_text().splitlines()) == 12
    assert len(list((cache / key / "train").iterdir())) == 12


def test_install_keeps_the_copy_another_process_finished(tmp_path):
    import shutil
    from video_sparse.data.motion import _install
    spec = MotionSetSpec(train_size=10, val_size=2, frames=4, height=16, width=16)
    folder = prepare_motion_dataset(spec, tmp_path, workers=1, progress=False)
    tmp = tmp_path / ".copy"
    shutil.copytree(folder, tmp)
    _install(tmp, folder, spec)
    assert not tmp.exists() and json.loads((folder / "manifest.json").read_text())["spec"]["seed"] == 0
    # An incomplete folder in the way is not taken for a finished set.
    (folder / "manifest.json").unlink()
    shutil.copytree(tmp_path / spec.key(), tmp)
    with pytest.raises(OSError):
        _install(tmp, folder, spec)


def test_a_full_disk_while_generating_is_one_error_naming_the_cache_and_leaves_nothing(tmp_path, monkeypatch):
    import errno

    from video_sparse.data import motion

    spec = MotionSetSpec(train_size=10, val_size=2, frames=4, height=16, width=16)
    (tmp_path / f".{spec.key()}-killed").mkdir()  # what a SIGKILLed generation leaves
    real, calls = motion._generate_one, []

    def disk_full_at_video_3(job):
        calls.append(job)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(job)
    monkeypatch.setattr(motion, "_generate_one", disk_full_at_video_3)
    with pytest.raises(motion.MotionSetError) as e:
        prepare_motion_dataset(spec, tmp_path, workers=1, progress=False)
    assert str(e.value) == (f"data.cache_dir: cannot write the motion set into {tmp_path} (No space left on device); "
                            "the partial set was removed. Fix: free space there, or data.cache_dir=<a writable folder "
                            "with room>")
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{spec.key()}.lock"]


@pytest.mark.parametrize("umask, mode", [(0o022, 0o755), (0o002, 0o775), (0o077, 0o700)])
def test_the_motion_set_folder_has_the_umasks_permissions(tmp_path, umask, mode):
    import os
    spec = MotionSetSpec(train_size=10, val_size=2, frames=4, height=16, width=16)
    previous = os.umask(umask)
    try:
        folder = prepare_motion_dataset(spec, tmp_path, workers=1, progress=False)
    finally:
        os.umask(previous)
    assert folder.stat().st_mode & 0o777 == mode


SLOW_GENERATION = """
import sys, time
from video_sparse.data import motion
real = motion._generate_one
motion._generate_one = lambda job: (time.sleep(0.3), real(job))[1]
motion.prepare_motion_dataset(motion.MotionSetSpec(train_size=20, val_size=2, frames=4, height=16, width=16),
                              sys.argv[1], workers=1, progress=False)
"""


def test_sigterm_while_generating_removes_the_partial_set(tmp_path):
    import signal
    import subprocess
    import sys
    import time
    proc = subprocess.Popen([sys.executable, "-c", SLOW_GENERATION, str(tmp_path)], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not list(tmp_path.glob(".*/train/*.mp4")) and time.time() < deadline:
        time.sleep(0.05)
    assert list(tmp_path.glob(".*/train/*.mp4")), "generation did not start"
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == 128 + signal.SIGTERM and "Traceback" not in err, err
    key = MotionSetSpec(train_size=20, val_size=2, frames=4, height=16, width=16).key()
    assert [p.name for p in tmp_path.iterdir()] == [f"{key}.lock"]
