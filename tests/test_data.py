"""Samplers, transforms, annotation lists, decoding fallbacks and the dataset failure policy."""
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from video_sparse.data.dataset import AnnotationError, VideoDataset, VideoRecord, read_class_names, read_path_label_list
from video_sparse.data.decode import VideoDecodeError, read_frames
from video_sparse.data.motion import write_mp4
from video_sparse.data.sampling import uniform_indices
from video_sparse.data.randaugment import ClipRandAugment
from video_sparse.data.transforms import ClipTransform, crop_origins


# ----------------------------------------------------------------------------- sampling
def test_uniform_indices_cover_video_in_order():
    idx = uniform_indices(16, 8)
    np.testing.assert_array_equal(idx, [0, 2, 4, 6, 9, 11, 13, 15])  # ties go away from the middle
    np.testing.assert_array_equal(uniform_indices(16, 16), np.arange(16))
    np.testing.assert_array_equal(uniform_indices(100, 4), [12, 37, 62, 87])


def test_evaluation_indices_of_a_reversed_video_are_the_reversed_indices():
    """Reference: mirror the indices by hand. Every (frames, clip) pair, views included (view v of
    the reversed video mirrors view V-1-v), except the middle frame of an odd clip of an even video."""
    for n in range(1, 70):
        for k in range(1, 20):
            for views in (1, 2, 3):
                for v in range(views):
                    idx = uniform_indices(n, k, view=v, num_views=views)
                    mirrored = n - 1 - uniform_indices(n, k, view=views - 1 - v, num_views=views)[::-1]
                    if k % 2 == 1 and n % 2 == 0 and views % 2 == 1 and v == views // 2:
                        idx, mirrored = np.delete(idx, k // 2), np.delete(mirrored, k // 2)
                    np.testing.assert_array_equal(idx, mirrored, err_msg=f"{n} frames, clip {k}, view {v}/{views}")


def test_uniform_indices_views_shift_evenly_and_stay_in_range():
    views = [uniform_indices(30, 5, view=v, num_views=3) for v in range(3)]
    np.testing.assert_array_equal(views[0], [0, 6, 12, 19, 25])  # 6k + 0.5: ties away from the middle frame
    np.testing.assert_array_equal(views[2], [4, 10, 17, 23, 29])  # view 0 mirrored
    for n in (1, 3, 7, 31):
        for v in range(4):
            idx = uniform_indices(n, 8, view=v, num_views=4)
            assert idx.min() >= 0 and idx.max() < n and np.all(np.diff(idx) >= 0)


def test_uniform_indices_random_jitter_stays_in_segments():
    rng = np.random.default_rng(0)
    for _ in range(50):
        idx = uniform_indices(40, 8, rng=rng)
        assert np.all(idx // 5 == np.arange(8))


def test_uniform_indices_reject_bad_input():
    with pytest.raises(ValueError, match="no frames"):
        uniform_indices(0, 8)
    with pytest.raises(ValueError, match="data.frames"):
        uniform_indices(10, 0)


# ----------------------------------------------------------------------------- transforms
def _frames(T=4, H=40, W=60):
    return np.random.default_rng(0).integers(0, 256, (T, H, W, 3), dtype=np.uint8)


def test_transform_shapes_and_normalisation():
    t = ClipTransform(size=32, short_side=36, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    out = t(_frames())
    assert out.shape == (4, 32, 32, 3) and out.dtype == torch.uint8  # workers hand over uint8
    x = t.to_model(torch.stack([out, out]))
    assert x.shape == (2, 3, 4, 32, 32) and x.dtype == torch.float32 and x.is_contiguous()
    assert x.min() >= -1 and x.max() <= 1
    white = t.to_model(t(np.full((2, 36, 36, 3), 255, np.uint8)))
    torch.testing.assert_close(white, torch.ones_like(white))


def test_to_model_matches_float64_normalisation():
    """The fast in-place normalisation against the formula, on odd shapes with leading axes."""
    mean, std = (0.3, 0.5, 0.7), (0.2, 0.25, 0.4)
    t = ClipTransform(size=5, short_side=5, mean=mean, std=std)
    video = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (2, 3, 3, 7, 5, 3), dtype=np.uint8))
    expected = (video.double().permute(0, 1, 5, 2, 3, 4) / 255 - torch.tensor(mean, dtype=torch.float64).view(3, 1, 1, 1)) \
        / torch.tensor(std, dtype=torch.float64).view(3, 1, 1, 1)
    torch.testing.assert_close(t.to_model(video).double(), expected, atol=1e-5, rtol=0)


def test_random_erasing_is_one_noise_box_in_every_frame():
    t = ClipTransform(size=24, short_side=24, train=True, mean=(0, 0, 0), std=(1, 1, 1), erase_prob=1.0)
    clip = t(np.zeros((5, 24, 24, 3), np.uint8), np.random.default_rng(0))
    draws = torch.stack([t.draw_erase(np.random.default_rng(s)) for s in range(4)])
    assert (draws[:, 2] > 0).all()
    out = t.to_model(torch.stack([clip] * 4), draws)
    for i, (top, left, h, w, _) in enumerate(draws.tolist()):
        box = torch.zeros(24, 24, dtype=torch.bool)
        box[top:top + h, left:left + w] = True
        assert (out[i][:, :, ~box] == 0).all() and (out[i][:, :, box] != 0).all()
        for k in range(1, 5):
            torch.testing.assert_close(out[i][:, k], out[i][:, 0])
    torch.testing.assert_close(out, t.to_model(torch.stack([clip] * 4), draws))  # the seed fixes the noise
    never = ClipTransform(size=24, short_side=24, train=True, erase_prob=0.0)
    assert not never.draw_erase(np.random.default_rng(0)).any()
    torch.testing.assert_close(t.to_model(clip[None], never.draw_erase(np.random.default_rng(0))[None]),
                               t.to_model(clip[None]))


ALL_AUGMENTATIONS = [dict(), dict(scale_jitter=(24, 48)), dict(resized_crop_area=(0.08, 1.0)),
                     dict(rand_augment=ClipRandAugment(4, 27), erase_prob=1.0),
                     dict(scale_jitter=(30, 40), rand_augment=ClipRandAugment(2, 15), erase_prob=0.5)]


@pytest.mark.parametrize("augment", ALL_AUGMENTATIONS)
def test_train_augmentations_are_identical_for_all_frames(augment):
    frame = _frames(T=1)[0]
    clip = np.stack([frame] * 5)  # same frame 5 times: every output frame must be equal too
    t = ClipTransform(size=24, short_side=40, train=True, **augment)
    for seed in range(10):
        rng = np.random.default_rng(seed)
        out = t.to_model(t(clip, rng, flip=seed % 2 == 1)[None], t.draw_erase(rng)[None])[0]
        assert out.shape == (3, 5, 24, 24)
        for k in range(1, 5):
            torch.testing.assert_close(out[:, k], out[:, 0])


@pytest.mark.parametrize("augment", ALL_AUGMENTATIONS)
def test_train_transform_is_reproducible_from_rng(augment):
    t = ClipTransform(size=24, short_side=40, train=True, **augment)

    def sample(seed):
        rng = np.random.default_rng(seed)
        return t.to_model(t(_frames(), rng, flip=True)[None], t.draw_erase(rng)[None])

    a, b = sample(5), sample(5)
    torch.testing.assert_close(a, b)
    assert any(not torch.equal(a, sample(s)) for s in range(6, 9))


def test_flip_mirrors_every_frame():
    t = ClipTransform(size=40, short_side=40, train=True)
    frames = _frames(W=40)
    torch.testing.assert_close(t(frames, np.random.default_rng(0), flip=True),
                               t(frames, np.random.default_rng(0)).flip(-2))


def test_eval_crops_are_evenly_spaced_along_long_side():
    assert crop_origins(100, 40, 3) == [0, 30, 60]
    assert crop_origins(100, 40, 1) == [30]
    frames = np.zeros((1, 40, 120, 3), np.uint8)
    frames[..., :40, :] = 255  # left third white
    t = ClipTransform(size=40, short_side=40, mean=(0, 0, 0), std=(1, 1, 1))
    assert t(frames, crop=0, num_crops=3).min() == 255
    assert t(frames, crop=2, num_crops=3).max() == 0


def test_transform_rejects_short_side_below_crop():
    with pytest.raises(ValueError, match="short_side"):
        ClipTransform(size=64, short_side=32)


# ----------------------------------------------------------------------------- annotations
def test_path_label_list_with_spaces_and_comments(tmp_path):
    ann = tmp_path / "train.txt"
    ann.write_text("# comment\nvideos/a b.mp4 3\n\nvideos/c.mp4 0\n")
    recs = read_path_label_list(ann, tmp_path / "root")
    assert recs == [VideoRecord(str(tmp_path / "root/videos/a b.mp4"), 3),
                    VideoRecord(str(tmp_path / "root/videos/c.mp4"), 0)]


@pytest.mark.parametrize("content,match", [("a.mp4\n", "train.txt:1"), ("a.mp4 x\n", "integer label"), ("\n", "no videos")])
def test_bad_annotation_lists_name_file_and_line(tmp_path, content, match):
    ann = tmp_path / "train.txt"
    ann.write_text(content)
    with pytest.raises(AnnotationError, match=match):
        read_path_label_list(ann)


def test_missing_annotation_and_class_files(tmp_path):
    with pytest.raises(AnnotationError, match="not found"):
        read_path_label_list(tmp_path / "nope.txt")
    with pytest.raises(AnnotationError, match="not found"):
        read_class_names(tmp_path / "classes.txt")


# ----------------------------------------------------------------------------- decoding and failure policy
@pytest.fixture
def video_dir(tmp_path):
    """Two good videos and the kinds of bad file a dataset meets: zero bytes, not a video, truncated,
    missing, no decodable frame, no video stream."""
    rng = np.random.default_rng(0)
    for name in ("good0", "good1"):
        write_mp4(tmp_path / f"{name}.mp4", rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8))
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "random.mp4").write_bytes(rng.integers(0, 256, 5000, dtype=np.uint8).tobytes())
    data = (tmp_path / "good0.mp4").read_bytes()
    (tmp_path / "truncated.mp4").write_bytes(data[: len(data) // 3])
    zeroed = bytearray(data)  # container intact, every coded frame zeroed: no decodable frame
    start, end = zeroed.find(b"mdat") + 4, zeroed.find(b"moov") - 4
    zeroed[start:end] = bytes(end - start)
    (tmp_path / "undecodable.mp4").write_bytes(zeroed)
    _write_audio_only(tmp_path / "audio.mp4")
    return tmp_path


def _write_audio_only(path):
    """An MP4 with an AAC stream and no video stream."""
    import av
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        stream.layout = "mono"
        for i in range(5):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


BAD = ("empty", "random", "truncated", "missing", "undecodable", "audio")


@pytest.mark.parametrize("decoder", ["auto", "pyav", "decord"])
def test_read_frames_good_video(video_dir, decoder):
    frames = read_frames(video_dir / "good0.mp4", lambda n: np.array([0, n - 1]), decoder)
    assert frames.shape == (2, 32, 32, 3) and frames.dtype == np.uint8


@pytest.mark.parametrize("name", BAD)
def test_read_frames_bad_files_raise_one_clear_error(video_dir, name):
    with pytest.raises(VideoDecodeError, match=f"{name}.mp4"):
        read_frames(video_dir / f"{name}.mp4", lambda n: np.arange(n))


def test_decoding_with_decord_keeps_pyav_able_to_write_vp9(video_dir, tmp_path):
    """decord and PyAV bundle different libvpx builds; after our decoder ran, PyAV must still open
    its VP9 encoder (a fresh process: the import order is what is tested)."""
    import subprocess
    import sys
    code = f"""
import numpy as np
from video_sparse.data.decode import read_frames
read_frames({str(video_dir / "good0.mp4")!r}, lambda n: np.arange(n), "decord")  # decord loads here
import av
with av.open({str(tmp_path / "out.webm")!r}, "w") as c:
    s = c.add_stream("libvpx-vp9", rate=8)
    s.width = s.height = 32
    s.pix_fmt = "yuv420p"
    for p in s.encode(av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")):
        c.mux(p)
    for p in s.encode():
        c.mux(p)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "out.webm").stat().st_size > 0


def test_pyav_fallback_when_decord_fails(video_dir, monkeypatch):
    from video_sparse.data import decode

    def broken(path, choose, short_side=None):
        raise RuntimeError("decord cannot read this")

    monkeypatch.setitem(decode.BACKENDS, "decord", broken)
    frames = read_frames(video_dir / "good1.mp4", lambda n: np.arange(n))
    assert frames.shape == (6, 32, 32, 3)


def _dataset(video_dir, names, train, **kw):
    recs = [VideoRecord(str(video_dir / f"{n}.mp4"), i) for i, n in enumerate(names)]
    return VideoDataset(recs, ClipTransform(size=32, short_side=32, train=train), frames=4, train=train, **kw)


def test_training_replaces_unreadable_videos_and_counts_them(video_dir):
    names = ["good0", *BAD, "good1"]
    ds = _dataset(video_dir, names, train=True)
    failed = 0
    for i in range(len(ds)):
        s = ds[i]
        assert s["video"].shape == (4, 32, 32, 3) and s["valid"]
        assert "good" in s["path"]
        failed += s["failed"]
    assert failed >= len(BAD)
    batch = next(iter(DataLoader(ds, batch_size=len(ds), num_workers=0)))
    assert batch["video"].shape == (len(names), 4, 32, 32, 3)
    assert int(batch["failed"].sum()) >= len(BAD)


def test_training_gives_up_with_clear_error_when_everything_is_bad(video_dir):
    ds = _dataset(video_dir, list(BAD), train=True, max_retries=5)
    with pytest.raises(RuntimeError, match="unreadable videos in a row"):
        ds[0]


def test_evaluation_reports_unreadable_videos_instead_of_replacing(video_dir):
    names = ["good0", *BAD]
    ds = _dataset(video_dir, names, train=False, clips=2, crops=1)
    samples = [ds[i] for i in range(len(ds))]
    assert [s["valid"] for s in samples] == [True] + [False] * len(BAD)
    assert [s["path"] for s in samples] == [str(video_dir / f"{n}.mp4") for n in names]
    assert samples[0]["video"].shape == (2, 4, 32, 32, 3)


def test_dataset_samples_are_deterministic_per_epoch_and_index(video_dir):
    recs = [VideoRecord(str(video_dir / "good0.mp4"), 0)]
    ds = VideoDataset(recs, ClipTransform(size=16, short_side=32, train=True), frames=4, train=True, seed=1,
                      flip_labels=[0])
    a, b = ds[0]["video"], ds[0]["video"]
    torch.testing.assert_close(a, b)
    crops = set()
    for epoch in range(8):
        ds.set_epoch(epoch)
        crops.add(ds[0]["video"].sum().item())
    assert len(crops) > 1


def test_persistent_workers_see_each_epoch_and_match_the_main_process(video_dir):
    """Two persistent workers, three epochs: every batch equals the in-process one of that epoch
    (the epoch reaches the workers; no worker repeats another's augmentation)."""
    from video_sparse.engine.runtime import data_loader
    recs = [VideoRecord(str(video_dir / "good0.mp4"), 0)] * 6
    ds = VideoDataset(recs, ClipTransform(size=16, short_side=32, train=True, scale_jitter=(20, 32)), frames=4,
                      train=True, seed=1, flip_labels=[0])
    loader = data_loader(ds, batch_size=3, num_workers=2, device=torch.device("cpu"))
    assert loader.persistent_workers
    epochs = []
    for epoch in range(3):
        ds.set_epoch(epoch)
        videos = torch.cat([b["video"] for b in loader])
        torch.testing.assert_close(videos, torch.stack([ds[i]["video"] for i in range(6)]))
        epochs.append(videos)
        assert len({v.sum().item() for v in videos}) == 6  # the same video, six different augmentations
    assert not torch.equal(epochs[0], epochs[1]) and not torch.equal(epochs[1], epochs[2])


# ----------------------------------------------------------------------------- decoded-frame cache
def _cached_dataset(video_dir, names, train, views=1, frame_shape=(4, 32, 32, 3), **kw):
    from video_sparse.data.frame_cache import FrameCache
    return _dataset(video_dir, names, train, frame_cache=FrameCache(len(names), views, frame_shape), **kw)


@pytest.mark.parametrize("train", [True, False])
def test_frame_cache_gives_the_same_samples_and_decodes_once(video_dir, train, monkeypatch):
    from video_sparse.data import dataset as dataset_module
    names = ["good0", "good1"]
    kw = {} if train else {"clips": 2, "crops": 3}
    plain = _dataset(video_dir, names, train, **kw)
    cached = _cached_dataset(video_dir, names, train, views=1 if train else 2, **kw)
    calls = []
    real = dataset_module.read_frames
    monkeypatch.setattr(dataset_module, "read_frames", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    for epoch in range(3):
        plain.set_epoch(epoch)
        cached.set_epoch(epoch)
        for i in range(len(names)):
            torch.testing.assert_close(cached[i]["video"], plain[i]["video"], rtol=0, atol=0)
    views = 1 if train else 2
    # The plain dataset decodes every view of every video every epoch; the cached one each view once.
    assert len(calls) == 3 * len(names) * views + len(names) * views


def test_frame_cache_is_shared_by_dataloader_workers(video_dir):
    ds = _cached_dataset(video_dir, ["good0", "good1", "good0", "good1"], train=True)
    assert not ds.frame_cache.filled.any()
    for _ in DataLoader(ds, batch_size=1, num_workers=2):
        pass
    # Filled by the worker processes, seen by the main process (and by the next epoch's workers).
    assert ds.frame_cache.filled.all()
    torch.testing.assert_close(ds.frame_cache.frames[0, 0], ds.frame_cache.frames[2, 0], rtol=0, atol=0)
    assert ds.frame_cache.frames[0, 0].float().std() > 10  # real pixels, not the zero initialisation


def test_frame_cache_skips_clips_of_another_size_and_unreadable_videos(video_dir):
    ds = _cached_dataset(video_dir, ["good0", "truncated"], train=False, frame_shape=(4, 16, 16, 3))
    assert ds[0]["valid"] and not ds[1]["valid"]
    assert not ds.frame_cache.filled.any()


def test_frame_cache_refuses_random_sampling(video_dir):
    with pytest.raises(ValueError, match="uniform"):
        _cached_dataset(video_dir, ["good0"], train=True, sampling="segment")
