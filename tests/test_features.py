"""eval.py features=true: pooled pre-classifier features of every video (per view and averaged, every
head), streamed to one array file with an index, resumable. The 2-process torchrun extraction is
compared with a single-process one in test_distributed.py."""
import csv
import json

import numpy as np
import pytest
import torch

from helpers import compose
from helpers import write_video
from video_sparse import build_model
from video_sparse.data import build_predict_dataset
from video_sparse.engine.features import FeatureError, extract_features, pooled_inputs


@pytest.mark.parametrize("name, kwargs, size", [
    ("sifa_small", {}, 32),                                 # C2D ResNet, dual branch, pool head
    ("sifa_biformer_nano", {}, 64),                         # per-frame transformer, dual branch, spatial head
    ("x3d_nano", {"crop_size": 32}, 64),                    # pytorchvideo head: windows averaged (fully conv.)
])
def test_pooled_features_give_each_heads_logits(name, kwargs, size):
    """The feature of a head is what its classifier maps to its logits: fc(feature) == logits."""
    torch.manual_seed(0)
    model = build_model(name, 5, **kwargs).eval()
    x = torch.randn(2, 3, 4, size, size)
    with torch.no_grad(), pooled_inputs(model.classifiers()) as seen:
        out = model(x)
    outs = out if isinstance(out, tuple) else (out,)
    heads = model.classifiers()
    assert list(seen) == list(heads) == ["main", "dual"][:len(outs)]
    for logits, (head, fc) in zip(outs, heads.items()):
        assert seen[head].shape == (2, fc.in_features)
        torch.testing.assert_close(fc(seen[head]), logits, rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("feature_videos")
    paths = [write_video(root / f"v{i}.mp4", num_frames=10 + i, height=36, width=44) for i in range(5)]
    bad = root / "broken.mp4"
    bad.write_bytes(b"not a video")
    return [str(p) for p in paths[:3]] + [str(bad)] + [str(p) for p in paths[3:]]


def _dataset(videos, cfg):
    return build_predict_dataset(cfg.data, videos, clips=2, crops=1)


@pytest.fixture(scope="module")
def data_cfg():
    return compose("train", ["data=list", "data.root=/", "data.train_ann=x", "data.val_ann=x", "data.labels=x",
                             "data.frames=4", "data.size=32", "data.short_side=32"])


class Interrupted(Exception):
    pass


class StopAfter(torch.nn.Module):
    """The model, but its forward raises after ``n`` calls (a kill in the middle of the extraction)."""

    def __init__(self, model, n):
        super().__init__()
        self.model, self.n, self.calls = model, n, 0

    def classifiers(self):
        return self.model.classifiers()

    def forward(self, x):
        if self.calls == self.n:
            raise Interrupted
        self.calls += 1
        return self.model(x)


def test_features_layout_index_and_resume(videos, data_cfg, tmp_path):
    torch.manual_seed(0)
    model = build_model("sifa_small", 3).eval()
    classes = ["a", "b", "c"]
    kw = dict(batch_size=2, num_workers=0, device=torch.device("cpu"), progress=False, about={"model": "sifa_small"})
    summary = extract_features(model, _dataset(videos, data_cfg), tmp_path / "whole", classes, **kw)
    feats = np.load(tmp_path / "whole" / "features.npy")
    fc = model.classifiers()
    dim = fc["main"].in_features + fc["dual"].in_features
    assert feats.shape == (6, 3, dim) and feats.dtype == np.float32 and summary["dim"] == dim
    meta = json.loads((tmp_path / "whole" / "features.json").read_text())
    assert meta["complete"] and meta["heads"] == {"main": [0, fc["main"].in_features], "dual": [fc["main"].in_features, dim]}
    assert meta["views"] == {"clips": 2, "crops": 1} and meta["videos"] == 6
    rows = list(csv.DictReader(open(tmp_path / "whole" / "features.csv")))
    assert [r["path"] for r in rows] == videos and [r["valid"] for r in rows] == ["1", "1", "1", "0", "1", "1"]
    assert np.isnan(feats[3]).all() and not np.isnan(np.delete(feats, 3, 0)).any()
    np.testing.assert_allclose(feats[:, 2], feats[:, :2].mean(1), rtol=1e-6)  # the last view is the mean
    # a video's features are those of its clips: its two views through the model, one at a time
    dataset = _dataset(videos, data_cfg)
    clip = dataset[4]["video"]
    with torch.no_grad(), pooled_inputs(fc) as seen:
        model(dataset.transform.to_model(clip))
        expected = torch.cat([seen["main"], seen["dual"]], 1).numpy()
    np.testing.assert_allclose(feats[4, :2], expected, rtol=1e-4, atol=1e-5)
    assert not list((tmp_path / "whole").glob("*part*"))

    # killed after two batches, then the same call: only the rest is computed, the result is the same
    with pytest.raises(Interrupted):
        extract_features(StopAfter(model, 2), _dataset(videos, data_cfg), tmp_path / "resumed", classes, **kw)
    assert not json.loads((tmp_path / "resumed" / "features.json").read_text())["complete"]
    assert not (tmp_path / "resumed" / "features.npy").exists()
    again = StopAfter(model, 99)
    extract_features(again, _dataset(videos, data_cfg), tmp_path / "resumed", classes, **kw)
    assert again.calls == 1  # 2 of 3 batches were on disk
    np.testing.assert_allclose(np.load(tmp_path / "resumed" / "features.npy"), feats, rtol=1e-5, atol=1e-6)
    assert (tmp_path / "resumed" / "features.csv").read_text() == (tmp_path / "whole" / "features.csv").read_text()
    # a finished extraction is not redone
    done = StopAfter(model, 0)
    extract_features(done, _dataset(videos, data_cfg), tmp_path / "resumed", classes, **kw)
    assert done.calls == 0


def test_features_dir_of_another_extraction_is_refused(videos, data_cfg, tmp_path):
    model = build_model("c2d_small", 3).eval()
    kw = dict(batch_size=4, num_workers=0, device=torch.device("cpu"), progress=False)
    extract_features(model, _dataset(videos[:2], data_cfg), tmp_path, ["a", "b", "c"], about={"model": "c2d_small"},
                     **kw)
    with pytest.raises(FeatureError, match=r"belongs to another extraction \(model, videos, video_list_sha256 differ\)\. "
                                           r"Fix: features_dir=<another directory>"):
        extract_features(model, _dataset(videos, data_cfg), tmp_path, ["a", "b", "c"], about={"model": "other"}, **kw)


def test_a_resume_over_a_rewritten_video_list_is_refused(videos, data_cfg, tmp_path):
    """The same number of videos, another list at the same path: resuming would mix the two."""
    model = build_model("c2d_small", 3).eval()
    kw = dict(batch_size=2, num_workers=0, device=torch.device("cpu"), progress=False, about={"model": "c2d_small"})
    with pytest.raises(Interrupted):
        extract_features(StopAfter(model, 1), _dataset(videos, data_cfg), tmp_path, ["a", "b", "c"], **kw)
    with pytest.raises(FeatureError, match=r"another extraction \(video_list_sha256 differ\)"):
        extract_features(model, _dataset(videos[::-1], data_cfg), tmp_path, ["a", "b", "c"], **kw)


def test_a_checkpoint_rewritten_at_the_same_path_is_another_extraction(trained_run, tmp_path):
    """A run that kept training rewrites best.pt: features of the new weights do not join the old ones."""
    from video_sparse.engine.evaluator import evaluate_checkpoint

    ckpt = tmp_path / "best.pt"
    ckpt.write_bytes((trained_run / "checkpoints" / "best.pt").read_bytes())
    args = [f"checkpoint={ckpt}", "features=true", f"features_dir={tmp_path / 'features'}", "logger.mode=disabled",
            "trainer.device=cpu", f"predict=[{next(iter(_val_paths(trained_run)))}]"]
    evaluate_checkpoint(compose("eval", args), tmp_path)
    state = torch.load(ckpt, weights_only=True)
    state["model"] = {k: v + 1 if v.is_floating_point() else v for k, v in state["model"].items()}
    torch.save(state, ckpt)
    with pytest.raises(FeatureError, match=r"another extraction \(checkpoint_sha256 differ\)"):
        evaluate_checkpoint(compose("eval", args), tmp_path)


def _val_paths(run_dir):
    return [r["path"] for r in csv.DictReader(open(run_dir / "predictions.csv"))]


def test_eval_features_of_a_checkpoint(trained_run, tmp_path):
    """eval.py checkpoint=... features=true on the run's validation set (the README command)."""
    from video_sparse.engine.evaluator import evaluate_checkpoint

    cfg = compose("eval", [f"checkpoint={trained_run}/checkpoints/best.pt", "features=true", "logger.mode=disabled",
                           "trainer.device=cpu", "trainer.num_workers=0", "test.clips=2"])
    summary = evaluate_checkpoint(cfg, tmp_path)
    feats = np.load(tmp_path / "features.npy", mmap_mode="r")
    assert summary["num_videos"] == 10 and feats.shape[:2] == (10, 3)
    rows = list(csv.DictReader(open(tmp_path / "features.csv")))
    predictions = list(csv.DictReader(open(trained_run / "predictions.csv")))
    assert sorted((r["path"], r["class"]) for r in rows) == sorted((r["path"], r["label_name"]) for r in predictions)
    meta = json.loads((tmp_path / "features.json").read_text())
    assert meta["model"] == "sifa_small" and meta["weights"] == "model" and set(meta["heads"]) == {"main", "dual"}


def test_features_rows_follow_the_dataset_under_sharding(videos, data_cfg, tmp_path, monkeypatch):
    """Two ranks' parts gathered by hand as rank 0 gathers them equal one process's file."""
    from video_sparse.engine import features as F
    from video_sparse.engine.distributed import World

    model = build_model("c2d_small", 3).eval()
    kw = dict(batch_size=2, num_workers=0, device=torch.device("cpu"), progress=False, about={})
    extract_features(model, _dataset(videos, data_cfg), tmp_path / "one", ["a", "b", "c"], **kw)
    monkeypatch.setattr(F, "barrier", lambda: None)
    gather = F._gather
    monkeypatch.setattr(F, "_gather", lambda *args: None)
    for rank in (0, 1, 0):  # rank 0 starts the files; it gathers (the second time) once both parts are there
        if rank == 0 and (tmp_path / "two").is_dir():
            monkeypatch.setattr(F, "_gather", gather)
        monkeypatch.setattr(F, "current_world", lambda rank=rank: World(rank, rank, 2))
        extract_features(model, _dataset(videos, data_cfg), tmp_path / "two", ["a", "b", "c"], **kw)
    np.testing.assert_allclose(np.load(tmp_path / "two" / "features.npy"), np.load(tmp_path / "one" / "features.npy"),
                               rtol=1e-5, atol=1e-6)
    assert (tmp_path / "two" / "features.csv").read_text() == (tmp_path / "one" / "features.csv").read_text()
    assert json.loads((tmp_path / "two" / "features.json").read_text())["processes"] == 2



def test_a_features_dir_in_use_by_a_live_extraction_is_refused(trained_run, tmp_path):
    from video_sparse.engine.evaluator import evaluate_checkpoint
    from video_sparse.engine.run_lock import DirectoryInUse, DirectoryLock

    out = tmp_path / "features"
    args = [f"checkpoint={trained_run}/checkpoints/best.pt", "features=true", f"features_dir={out}",
            "logger.mode=disabled", "trainer.device=cpu", f"predict=[{_val_paths(trained_run)[0]}]"]
    with DirectoryLock(out, "features_dir"):  # another extraction, live
        with pytest.raises(DirectoryInUse, match=r"features: another live process \(pid \d+\) is writing into this "
                                                 r"directory. Fix: wait until it ends, or features_dir=<another"):
            evaluate_checkpoint(compose("eval", args), tmp_path)
    assert not (out / "features.json").exists()
    evaluate_checkpoint(compose("eval", args), tmp_path)  # once it has ended
    assert (out / "features.npy").is_file()
