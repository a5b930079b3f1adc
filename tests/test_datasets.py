"""Real-dataset readers and samplers on tiny datasets in the official formats, built in tmp_path:
Kinetics CSVs (flat and per-label folder layouts), path-label lists, SSv2 JSONs with VP9 webm
videos; class ids, missing videos, error messages, dense/segment frame indices, and the apps."""
import csv
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from helpers import compose, run_app
from video_sparse.apps.checks import ConfigError, check_train
from video_sparse.data import build_dataset, build_predict_dataset, resolve_data
from video_sparse.data.annotations import (AnnotationError, VideoRecord, annotation_class_names, load_annotation,
                                           read_class_names)
from video_sparse.data.dataset import VideoDataset
from video_sparse.data.motion import write_mp4
from video_sparse.data.sampling import FrameSampler, dense_indices, segment_indices
from video_sparse.data.transforms import ClipTransform

FRAMES, SIZE = 8, 32


@pytest.fixture(autouse=True)
def fresh_missing_reports(monkeypatch):
    """Missing and duplicate videos are reported once per process; each test starts with none reported."""
    from video_sparse.data import annotations
    monkeypatch.setattr(annotations, "_REPORTED", set())


def write_video(path, num_frames=FRAMES, gray_step=None):
    """A tiny video: H.264 for .mp4/.mkv, VP9 (SSv2's codec) for .webm. With ``gray_step`` frame
    ``i`` is a flat gray ``i * gray_step``, so a decoded frame tells its index."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if gray_step is None:
        frames = np.random.default_rng(len(path.name)).integers(0, 256, (num_frames, SIZE, SIZE, 3), dtype=np.uint8)
    else:
        frames = np.repeat((np.arange(num_frames, dtype=np.uint8) * gray_step)[:, None, None, None],
                           SIZE * SIZE * 3).reshape(num_frames, SIZE, SIZE, 3)
    if path.suffix != ".webm":
        write_mp4(path, frames)
        return
    import av
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libvpx-vp9", rate=8)
        stream.width, stream.height, stream.pix_fmt = SIZE, SIZE, "yuv420p"
        stream.options = {"deadline": "realtime", "cpu-used": "8", "crf": "30", "b:v": "0"}
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        if header:
            w.writerow(header)
        w.writerows(rows)
    return path


# ============================================================================= Kinetics
# Labels as the official CSVs write them: spaces, parentheses; sorted order differs from file order.
K_TRAIN = [("zumba", "zz1", 0, 10), ("playing guitar", "-abc_1", 14, 24), ("abseiling", "a0", 3, 13),
           ("passing American football (in game)", "pf_2", 100, 110), ("zumba", "zz2", 5, 15),
           ("abseiling", "gone", 0, 10)]  # "gone" is never written to disk
K_CLASSES = sorted({row[0] for row in K_TRAIN})
K_VAL = [("playing guitar", "v1", 1, 11), ("zumba", "v2", 20, 30)]
K_TEST = [("t1", 0, 10), ("t2", 7, 17)]
HEADER = ["label", "youtube_id", "time_start", "time_end", "split"]


def _clip_name(youtube_id, start, end):
    return f"{youtube_id}_{start:06d}_{end:06d}"


@pytest.fixture(scope="module")
def kinetics(tmp_path_factory):
    """The official CSVs plus the same videos in three folder layouts (flat, per-label folders
    named as the label, and with spaces replaced by underscores); .mp4, .webm and .mkv mixed."""
    base = tmp_path_factory.mktemp("kinetics")
    ann = base / "annotations"
    ann.mkdir()
    write_csv(ann / "train.csv", HEADER, [(*r, "train") for r in K_TRAIN])
    write_csv(ann / "validate.csv", HEADER, [(*r, "val") for r in K_VAL])
    write_csv(ann / "test.csv", HEADER[1:], [(*r, "test") for r in K_TEST])  # test CSVs lack the label
    exts = ["mp4", "webm", "mkv"]
    for layout in ("flat", "label", "underscore"):
        root = base / layout
        for i, (label, yid, start, end) in enumerate(K_TRAIN[:-1] + K_VAL):
            folder = {"flat": root, "label": root / label, "underscore": root / label.replace(" ", "_")}[layout]
            write_video(folder / f"{_clip_name(yid, start, end)}.{exts[i % 3]}")
        for yid, start, end in K_TEST:
            write_video(root / f"{_clip_name(yid, start, end)}.mp4")
    return base


def kinetics_cfg(kinetics, layout="flat", **extra):
    ann = kinetics / "annotations"
    overrides = ["data=kinetics400", f"data.root={kinetics / layout}", f"data.train_ann={ann}/train.csv",
                 f"data.val_ann={ann}/validate.csv", "data.num_classes=4", "data.frames=4", "data.interval=2",
                 "data.size=32", "data.short_side=32", "model=c2d_small", "logger.mode=disabled",
                 *(f"{k}={v}" for k, v in extra.items())]
    return compose("train", overrides)


@pytest.mark.parametrize("layout", ["flat", "label", "underscore"])
def test_kinetics_csv_finds_videos_in_every_layout(kinetics, layout):
    records, missing = load_annotation(kinetics / "annotations/train.csv", kinetics / layout, K_CLASSES)
    assert missing == [_clip_name("gone", 0, 10)]
    assert [r.label for r in records] == [K_CLASSES.index(row[0]) for row in K_TRAIN[:-1]]
    for rec, (label, yid, start, end) in zip(records, K_TRAIN):
        assert rec.path.startswith(str(kinetics / layout)) and _clip_name(yid, start, end) in rec.path
        assert (layout == "flat") == (label not in rec.path and label.replace(" ", "_") not in rec.path)
    assert {r.path.rsplit(".", 1)[1] for r in records} == {"mp4", "webm", "mkv"}


def test_kinetics_class_list_is_sorted_and_ids_are_stable_across_splits(kinetics):
    cfg = kinetics_cfg(kinetics)
    _, info = resolve_data(cfg.data)
    assert info.class_names == K_CLASSES == annotation_class_names(kinetics / "annotations/train.csv")
    train = build_dataset(cfg.data, "train")
    val = build_dataset(cfg.data, "val")
    # val lists its classes in another order and only two of them: ids still come from train's list.
    assert [r.label for r in val.records] == [K_CLASSES.index("playing guitar"), K_CLASSES.index("zumba")]
    assert {r.label for r in train.records} == set(range(4))
    assert train.sampler == FrameSampler("dense", 4, 2, "loop") and train.train and not val.train


def test_resolved_class_list_is_read_once(kinetics, monkeypatch):
    """Training resolves the class list once (for Kinetics: a pass over the whole training CSV) and
    hands it to every split instead of deriving it again."""
    from video_sparse.data import build as build_module
    cfg = kinetics_cfg(kinetics)
    calls = []
    real = build_module.annotation_class_names
    monkeypatch.setattr(build_module, "annotation_class_names", lambda p: calls.append(p) or real(p))
    data_cfg, info = resolve_data(cfg.data)
    val = build_dataset(data_cfg, "val", info=info)
    train = build_dataset(data_cfg, "train", info=info)
    assert len(calls) == 1 and info.class_source.startswith("the training annotation")
    assert [r.label for r in val.records] == [K_CLASSES.index("playing guitar"), K_CLASSES.index("zumba")]
    assert {r.label for r in train.records} == set(range(4))


def test_kinetics_class_list_from_labels_file(kinetics, tmp_path):
    names = list(reversed(K_CLASSES)) + ["yoga"]  # a class-name file fixes its own order and may list more
    (tmp_path / "classes.txt").write_text("\n".join(names) + "\n")
    cfg = kinetics_cfg(kinetics, **{"data.labels": tmp_path / "classes.txt", "data.num_classes": 5})
    _, info = resolve_data(cfg.data)
    assert info.class_names == names
    val = build_dataset(cfg.data, "val")
    assert [r.label for r in val.records] == [names.index("playing guitar"), names.index("zumba")]


def test_unknown_label_in_val_names_file_line_and_fix(kinetics, tmp_path):
    write_csv(tmp_path / "validate.csv", HEADER, [("zumba", "v2", 20, 30, "val"), ("yoga", "v1", 1, 11, "val")])
    cfg = kinetics_cfg(kinetics, **{"data.val_ann": tmp_path / "validate.csv"})
    with pytest.raises(AnnotationError) as e:
        build_dataset(cfg.data, "val")
    msg = str(e.value)
    assert f"{tmp_path}/validate.csv:3: unknown label 'yoga'" in msg
    assert "4 classes of the training annotation" in msg and "train.csv" in msg and "Fix:" in msg


def test_missing_videos_are_reported_once_and_skipped(kinetics, caplog):
    cfg = kinetics_cfg(kinetics, layout="label")
    with caplog.at_level(logging.WARNING, logger="video_sparse.data.annotations"):
        first = build_dataset(cfg.data, "train")
        again = build_dataset(cfg.data, "train")  # training builds the validation set twice: one report
    reports = [r.getMessage() for r in caplog.records if "missing" in r.getMessage()]
    assert len(reports) == 1
    assert reports[0].startswith("1 of 6 videos listed in") and _clip_name("gone", 0, 10) in reports[0]
    assert len(first) == len(again) == 5 and first.missing == [_clip_name("gone", 0, 10)]
    assert all("gone" not in r.path for r in first.records)



def test_missing_videos_count_as_failed_in_evaluation(kinetics, tmp_path):
    """Evaluation accounts for every listed video: one missing on disk is excluded and counted."""
    from video_sparse import build_model
    from video_sparse.engine.evaluate import predict, report
    from video_sparse.engine.runtime import data_loader
    cfg = kinetics_cfg(kinetics, **{"data.val_ann": kinetics / "annotations/train.csv"})  # 5 of 6 on disk
    ds = build_dataset(cfg.data, "val")
    loader = data_loader(ds, batch_size=2, num_workers=0, device=torch.device("cpu"))
    result = predict(build_model("c2d_small", 4), loader, torch.device("cpu"), progress=False)
    assert len(result["paths"]) == 6 and result["valid"].tolist() == [True] * 5 + [False]
    metrics = report(result, K_CLASSES, tmp_path, views={"clips": 1, "crops": 1}, split="val", plot=False)
    assert metrics["num_videos"] == 5 and metrics["num_failed"] == 1
    assert metrics["failed_videos"] == [_clip_name("gone", 0, 10)]

def test_strict_evaluation_stops_at_a_missing_or_unreadable_video(kinetics, tmp_path, capsys):
    from video_sparse import build_model
    from video_sparse.apps.launch import run_task
    from video_sparse.engine.evaluate import StrictEvaluationError, predict
    from video_sparse.engine.runtime import data_loader
    model, cpu = build_model("c2d_small", 4), torch.device("cpu")
    cfg = kinetics_cfg(kinetics, **{"data.val_ann": kinetics / "annotations/train.csv"})  # "gone" is not on disk
    loader = data_loader(build_dataset(cfg.data, "val"), batch_size=2, num_workers=0, device=cpu)
    with pytest.raises(StrictEvaluationError, match=r"test.strict=true: 1 annotated videos are not on disk "
                                                     r"\(first: gone_000000_000010\). Fix:"):
        predict(model, loader, cpu, progress=False, strict=True)
    (tmp_path / "bad.mp4").write_bytes(b"")
    write_video(tmp_path / "good.mp4")
    (tmp_path / "list.txt").write_text("good.mp4 0\nbad.mp4 1\n")
    ds = VideoDataset(load_annotation(tmp_path / "list.txt", tmp_path, ["a", "b"])[0],
                      ClipTransform(size=32, short_side=32), frames=4, train=False)
    loader = data_loader(ds, batch_size=2, num_workers=0, device=cpu)
    assert predict(model, loader, cpu, progress=False)["valid"].tolist() == [True, False]  # not strict: counted
    with pytest.raises(StrictEvaluationError, match="1 videos cannot be decoded .*bad.mp4"):
        predict(model, loader, cpu, progress=False, strict=True)

    def evaluation(cfg, run_dir):
        return predict(model, loader, cpu, progress=False, strict=True)
    with pytest.raises(SystemExit) as e:
        run_task(evaluation, lambda cfg: None, {}, tmp_path)
    assert e.value.code == 2 and "error: test.strict=true" in capsys.readouterr().err


def test_missing_report_names_the_first_few(tmp_path, caplog):
    (tmp_path / "classes.txt").write_text("a\n")
    write_video(tmp_path / "here.mp4")
    (tmp_path / "list.txt").write_text("here.mp4 0\n" + "".join(f"gone{i}.mp4 0\n" for i in range(8)))
    with caplog.at_level(logging.WARNING, logger="video_sparse.data.annotations"):
        records, missing = load_annotation(tmp_path / "list.txt", tmp_path, ["a"])
    assert len(records) == 1 and len(missing) == 8
    (msg,) = [r.getMessage() for r in caplog.records]
    assert msg.startswith("8 of 9 videos") and "gone0.mp4, gone1.mp4, gone2.mp4, gone3.mp4, gone4.mp4, ..." in msg
    assert "gone5" not in msg


def test_wrong_root_is_one_clear_error(kinetics, tmp_path):
    with pytest.raises(AnnotationError, match=r"none of the 6 videos listed in .*train.csv is under .*Fix: data.root="):
        load_annotation(kinetics / "annotations/train.csv", tmp_path, K_CLASSES)


def test_unlabelled_kinetics_test_csv_is_for_predict_only(kinetics):
    cfg = kinetics_cfg(kinetics, **{"data.test_ann": kinetics / "annotations/test.csv"})
    with pytest.raises(AnnotationError, match="has no labels .*Fix: classify its videos with eval.py .*predict="):
        build_dataset(cfg.data, "test")
    data_cfg, _ = resolve_data(cfg.data)
    ds = build_predict_dataset(data_cfg, [str(kinetics / "annotations/test.csv")])
    assert [r.label for r in ds.records] == [-1, -1] and "t1_000000_000010" in ds.records[0].path


# ============================================================================= path-label lists
def test_path_label_lists_with_ids_names_commas_and_spaces(tmp_path):
    classes = ["jumping", "playing guitar", "zumba"]
    for name in ("a b/c d.mp4", "x.mp4", "y,z.mp4"):
        write_video(tmp_path / "videos" / name)
    (tmp_path / "ids.txt").write_text("videos/a b/c d.mp4 2\n# comment\n\nvideos/x.mp4 0\n")
    (tmp_path / "ids_comma.txt").write_text("videos/a b/c d.mp4,1\nvideos/x.mp4,2\n")
    (tmp_path / "names.csv").write_text('path,label\nvideos/a b/c d.mp4,playing guitar\n"videos/y,z.mp4",zumba\n')
    (tmp_path / "names.txt").write_text("videos/x.mp4 zumba\nvideos/a b/c d.mp4 jumping\n")

    def read(name):
        records, missing = load_annotation(tmp_path / name, tmp_path, classes)
        assert missing == []
        return [(r.path[len(str(tmp_path)) + 1:], r.label) for r in records]

    assert read("ids.txt") == [("videos/a b/c d.mp4", 2), ("videos/x.mp4", 0)]
    assert read("ids_comma.txt") == [("videos/a b/c d.mp4", 1), ("videos/x.mp4", 2)]
    assert read("names.csv") == [("videos/a b/c d.mp4", 1), ("videos/y,z.mp4", 2)]
    assert read("names.txt") == [("videos/x.mp4", 2), ("videos/a b/c d.mp4", 0)]
    assert annotation_class_names(tmp_path / "names.csv") == ["playing guitar", "zumba"]


MOTION_LIKE = ["moving left", "moving right", "left", "zoom in"]


def test_space_separated_lists_with_multi_word_class_names(tmp_path):
    """Paths and class names may both hold spaces: the label is the longest ending that is a class
    name, preferring a split whose video exists."""
    for name in ("moving left/a.mp4", "moving left/b c.mp4", "x moving/left.mp4", "zoom in.mp4"):
        write_video(tmp_path / "videos" / name)
    (tmp_path / "list.txt").write_text("videos/moving left/a.mp4 moving left\n"
                                       "videos/moving left/b c.mp4   moving right\n"
                                       "videos/x moving/left.mp4 left\n"   # "moving/left.mp4 left" is no class
                                       "videos/zoom in.mp4 zoom in\n"
                                       "videos/moving left/a.mp4 3\n"      # an id: the last word
                                       "videos/gone b.mp4 moving left\n")  # missing: the longest class name
    records, missing = load_annotation(tmp_path / "list.txt", tmp_path, MOTION_LIKE)
    assert [(r.path[len(str(tmp_path)) + 1:], r.label) for r in records] == [
        ("videos/moving left/a.mp4", 0), ("videos/moving left/b c.mp4", 1), ("videos/x moving/left.mp4", 2),
        ("videos/zoom in.mp4", 3)]  # line 5 repeats line 1's video (reported as a duplicate)
    assert missing == ["videos/gone b.mp4"]
    # A class "left" as well as "moving left": the split whose video exists wins.
    (tmp_path / "both.txt").write_text("videos/x moving/left.mp4 left\nvideos/moving left/a.mp4 moving left\n")
    records, _ = load_annotation(tmp_path / "both.txt", tmp_path, MOTION_LIKE)
    assert [r.label for r in records] == [2, 0]
    # An unknown multi-word label is named whole (the path before it exists).
    (tmp_path / "bad.txt").write_text("videos/moving left/a.mp4 moving sideways\n")
    with pytest.raises(AnnotationError, match=r"bad.txt:1: unknown label 'moving sideways'"):
        load_annotation(tmp_path / "bad.txt", tmp_path, MOTION_LIKE)
    # Without the disk, the longest class name.
    from video_sparse.data.annotations import read_path_label_list
    assert [(Path(r.path).name, r.label) for r in read_path_label_list(tmp_path / "list.txt", None, MOTION_LIKE)][:2] \
        == [("a.mp4", 0), ("b c.mp4", 1)]


def test_training_and_evaluation_data_with_multi_word_labels(tmp_path):
    classes = ["moving left", "moving right"]
    for i in range(4):
        write_video(tmp_path / "videos" / classes[i % 2] / f"clip {i}.mp4")
    (tmp_path / "classes.txt").write_text("\n".join(classes) + "\n")
    lines = "".join(f"videos/{classes[i % 2]}/clip {i}.mp4 {classes[i % 2]}\n" for i in range(4))
    (tmp_path / "train.txt").write_text(lines)
    (tmp_path / "val.txt").write_text(lines)
    cfg = compose("train", ["data=list", f"data.root={tmp_path}", "data.train_ann=train.txt", "data.val_ann=val.txt",
                            "data.labels=classes.txt", "data.frames=4", "data.size=32", "data.short_side=32",
                            "model=c2d_small", "logger.mode=disabled"])
    data_cfg, info = resolve_data(cfg.data)
    for split in ("train", "val"):
        ds = build_dataset(data_cfg, split, info=info)
        assert [r.label for r in ds.records] == [0, 1, 0, 1] and ds.missing == []
        sample = ds[1]
        assert sample["video"].shape[-3:] == (32, 32, 3) and int(sample["label"]) == 1


def test_duplicate_videos_are_reported_and_used_once(kinetics, tmp_path, caplog):
    (tmp_path / "classes.txt").write_text("a\nb\n")
    for name in ("x.mp4", "y.mp4", "z.mp4"):
        write_video(tmp_path / name)
    (tmp_path / "list.txt").write_text("x.mp4 0\ny.mp4 1\nx.mp4 0\n./y.mp4 0\nz.mp4 1\nx.mp4 1\ngone.mp4 0\n"
                                       "gone.mp4 0\n")
    with caplog.at_level(logging.WARNING, logger="video_sparse.data.annotations"):
        records, missing = load_annotation(tmp_path / "list.txt", tmp_path, ["a", "b"])
    assert [(Path(r.path).name, r.label) for r in records] == [("x.mp4", 0), ("y.mp4", 1), ("z.mp4", 1)]
    assert missing == ["gone.mp4"]
    dup, gone = [r.getMessage() for r in caplog.records]
    assert dup.startswith(f"4 entries of {tmp_path / 'list.txt'} list a video already listed")
    assert "2 of them give another label" in dup
    assert "x.mp4 (line 3 repeats line 1), ./y.mp4 (line 4 repeats line 2), x.mp4 (line 6 repeats line 1), ..." in dup
    assert gone.startswith("1 of 4 videos")  # each video counted once
    # Kinetics CSV: the same clip twice.
    csv_file = write_csv(tmp_path / "k.csv", HEADER, [(*K_VAL[0], "val"), (*K_VAL[1], "val"), (*K_VAL[0], "val")])
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="video_sparse.data.annotations"):
        records, _ = load_annotation(csv_file, kinetics / "flat", K_CLASSES)
    assert len(records) == 2 and "k.csv" in caplog.records[0].getMessage()


def test_confine_to_root_refuses_videos_outside_the_root(tmp_path):
    root = tmp_path / "root"
    write_video(root / "in.mp4")
    write_video(tmp_path / "out.mp4")
    (root / "sub").mkdir()
    (root / "link").symlink_to(tmp_path, target_is_directory=True)
    (tmp_path / "classes.txt").write_text("a\n")
    for name, line in [("up.txt", "../out.mp4 0"), ("abs.txt", f"{tmp_path / 'out.mp4'} 0"),
                       ("sneaky.txt", "sub/../../out.mp4 0")]:
        (tmp_path / name).write_text(f"in.mp4 0\n{line}\n")
        assert len(load_annotation(tmp_path / name, root, ["a"])[0]) == 2  # allowed by default
        with pytest.raises(AnnotationError, match=rf"{name}:2: video .*out.mp4' lies outside the dataset root "
                                                  rf"{root}.*Fix: .*data.confine_to_root=false"):
            load_annotation(tmp_path / name, root, ["a"], confine=True)
    (tmp_path / "inside.txt").write_text(f"in.mp4 0\n{root / 'in.mp4'} 0\nlink/out.mp4 0\n")
    assert len(load_annotation(tmp_path / "inside.txt", root, ["a"], confine=True)[0]) == 2  # a symlink is inside
    cfg = compose("train", ["data=list", f"data.root={root}", f"data.train_ann={tmp_path}/up.txt",
                            f"data.val_ann={tmp_path}/up.txt", f"data.labels={tmp_path}/classes.txt",
                            "data.confine_to_root=true", "model=c2d_small", "logger.mode=disabled"])
    with pytest.raises(AnnotationError, match="up.txt:2: .*lies outside"):
        build_dataset(cfg.data, "train")


def test_list_without_class_names_needs_labels_file(tmp_path):
    (tmp_path / "ids.txt").write_text("a.mp4 0\n")
    with pytest.raises(AnnotationError, match="labels are class ids.*Fix: data.labels="):
        annotation_class_names(tmp_path / "ids.txt")


# ============================================================================= SSv2
# labels.json ids are not in alphabetical order: the id must come from the file, not from sorting.
SSV2_LABELS = {"Pushing something from left to right": "0", "Holding something next to something": "1",
               "Approaching something with your camera": "2", "Pushing something from right to left": "3",
               "Turning the camera left while filming something": "4"}  # 4: its "right" partner is not in the set
SSV2_TRAIN = [("101", "Pushing [something] from left to right"), ("102", "Holding [something] next to [something]"),
              ("103", "Approaching [something] with your camera"), ("104", "Holding [something] next to [something]"),
              ("105", "Pushing [something] from right to left"), ("106", "Turning the camera left while filming [something]")]
SSV2_VAL = [("201", "Approaching [something] with your camera"), ("202", "Pushing [something] from left to right"),
            ("299", "Pushing [something] from left to right")]  # 299 is not on disk


def _ssv2_items(rows):
    return [{"id": vid, "label": template.replace("[something]", "a cup").lower(), "template": template,
             "placeholders": ["a cup"] * template.count("[")} for vid, template in rows]


@pytest.fixture(scope="module")
def ssv2(tmp_path_factory):
    base = tmp_path_factory.mktemp("ssv2")
    (base / "labels.json").write_text(json.dumps(SSV2_LABELS, indent=1))
    (base / "train.json").write_text(json.dumps(_ssv2_items(SSV2_TRAIN)))
    (base / "validation.json").write_text(json.dumps(_ssv2_items(SSV2_VAL)))
    (base / "test.json").write_text(json.dumps([{"id": "301"}, {"id": "302"}]))
    for vid in ["101", "102", "103", "105", "106", "201", "202", "301", "302"]:
        write_video(base / "videos" / f"{vid}.webm")
    write_video(base / "videos" / "104.mp4")  # .mp4 is accepted too
    return base


def ssv2_cfg(ssv2, **extra):
    overrides = ["data=ssv2", f"data.root={ssv2}/videos", f"data.labels={ssv2}/labels.json",
                 f"data.train_ann={ssv2}/train.json", f"data.val_ann={ssv2}/validation.json", "data.num_classes=5",
                 "data.frames=4", "data.size=32", "data.short_side=32", "model=c2d_small", "logger.mode=disabled",
                 *(f"{k}={v}" for k, v in extra.items())]
    return compose("train", overrides)


def test_ssv2_labels_come_from_templates_and_labels_json(ssv2, caplog):
    names = read_class_names(ssv2 / "labels.json")
    assert names == list(SSV2_LABELS)  # id order
    cfg = ssv2_cfg(ssv2)
    data_cfg, info = resolve_data(cfg.data)
    assert info.class_names == names
    train = build_dataset(data_cfg, "train")
    assert [r.label for r in train.records] == [0, 1, 2, 1, 3, 4]
    assert [r.path.rsplit("/", 1)[1] for r in train.records] == ["101.webm", "102.webm", "103.webm", "104.mp4",
                                                                  "105.webm", "106.webm"]
    with caplog.at_level(logging.WARNING, logger="video_sparse.data.annotations"):
        val = build_dataset(data_cfg, "val", clips=2)
    assert [r.label for r in val.records] == [2, 0] and val.missing == ["299"]
    assert any("1 of 3 videos" in r.getMessage() and "299" in r.getMessage() for r in caplog.records)
    assert train.sampler == FrameSampler("segment", 4)
    # the VP9 webm decodes through the dataset, training and multi-view evaluation
    assert train[0]["video"].shape == (4, 32, 32, 3) and train[0]["valid"]
    sample = val[1]
    assert sample["valid"] and sample["video"].shape == (2, 4, 32, 32, 3)


def test_ssv2_flip_swaps_left_right_labels_by_name(ssv2):
    """data.flip=swap: a mirrored "left to right" clip is labelled "right to left" (and back); a class
    without a mirrored partner is never mirrored; other classes are mirrored and keep their label."""
    data_cfg, info = resolve_data(ssv2_cfg(ssv2, **{"data.flip": "swap"}).data)
    assert build_dataset(data_cfg, "train", info=info).flip_labels == [3, 1, 2, 0, -1]
    plain = build_dataset(OmegaConf.merge(data_cfg, {"flip": False}), "train", info=info)
    swap = build_dataset(data_cfg, "train", info=info)
    assert plain.flip_labels is None and build_dataset(data_cfg, "val", info=info).flip_labels is None
    seen = {i: set() for i in range(len(swap))}
    for epoch in range(12):
        plain.set_epoch(epoch)
        swap.set_epoch(epoch)
        for i in range(len(swap)):
            a, b = plain[i], swap[i]  # full-frame crops: same frames, mirrored or not
            mirrored = not torch.equal(a["video"], b["video"])
            if mirrored:
                torch.testing.assert_close(b["video"], a["video"].flip(-2))
            seen[i].add((b["label"], mirrored))
    assert seen[0] == {(0, False), (3, True)} and seen[4] == {(3, False), (0, True)}
    assert seen[1] == {(1, False), (1, True)}
    assert seen[5] == {(4, False)}


def test_ssv2_unlabelled_test_json_works_for_predict_only(ssv2):
    data_cfg, _ = resolve_data(ssv2_cfg(ssv2).data)
    ds = build_predict_dataset(data_cfg, [str(ssv2 / "test.json")])
    assert [(r.path.rsplit("/", 1)[1], r.label) for r in ds.records] == [("301.webm", -1), ("302.webm", -1)]
    data_cfg.test_ann = str(ssv2 / "test.json")
    with pytest.raises(AnnotationError, match="test.json: has no labels"):
        build_dataset(data_cfg, "test")


# ============================================================================= malformed inputs
BAD_FILES = [
    # (file name, content, expected message parts)
    ("train.json", '[{"id": "1", "template": "Pushing [x]"},\n  {"id": 2 "template"}]',
     ["train.json:2:", "invalid JSON", "Fix:"]),
    ("train.json", '{"id": "1"}', ["train.json: expected a JSON list", "labels.json goes to data.labels"]),
    ("train.json", '[{"template": "Pushing something from left to right"}]', ["train.json entry 0", "'id'"]),
    ("train.json", '[{"id": "1", "template": "Pulling [something] from right to left"}]',
     ["train.json entry 0 (id 1): unknown label 'Pulling something from right to left'", "Fix:"]),
    ("train.json", "[]", ["train.json: no videos listed"]),
    ("train.json", "", ["train.json: empty file"]),
    ("train.csv", "", ["train.csv: no videos listed"]),
    ("train.csv", "label,youtube_id,time_end,split\nzumba,abc,10,train\n",
     ["train.csv:1", "lacks column(s) time_start", "Fix:"]),
    ("train.csv", "label,youtube_id,time_start,time_end,split\nzumba,abc,ten,20,train\n",
     ["train.csv:2: time_start must be a whole number of seconds, got 'ten'"]),
    ("train.csv", "label,youtube_id,time_start,time_end,split\n", ["train.csv: no videos listed"]),
    ("train.csv", "label,youtube_id,time_start,time_end,split\nzumba,abc\n", ["train.csv:2: expected 5 fields"]),
    ("train.txt", "a.mp4 zumba\nb.mp4\n", ["train.txt:2: expected 'path label'", "Fix:"]),
    ("train.txt", "a.mp4 yoga\n", ["train.txt:1: unknown label 'yoga'", "Fix:"]),
    ("train.txt", "a.mp4 7\n", ["train.txt:1: class id 7 is out of range for the 5 classes"]),
]


@pytest.mark.parametrize("name,content,parts", BAD_FILES)
def test_malformed_annotations_raise_one_clear_error(tmp_path, name, content, parts):
    write_video(tmp_path / "a.mp4")
    (tmp_path / name).write_text(content)
    with pytest.raises(AnnotationError) as e:
        load_annotation(tmp_path / name, tmp_path, list(SSV2_LABELS))
    for part in parts:
        assert part in str(e.value)
    assert str(tmp_path / name) in str(e.value)


@pytest.mark.parametrize("content,parts", [
    ('{"Pushing": "0", "Holding": "x"}', ["labels.json: class 'Holding' has id 'x'", "Fix:"]),
    ('{"Pushing": "0", "Holding": "2"}', ["class ids must be 0..1", "Fix:"]),
    ('{"Pushing": "0",', ["labels.json:1:", "invalid JSON"]),
    ("", ["labels.json: empty file"]),
    ('"Pushing"', ["expected a JSON object (class name -> id) or a list of class names"]),
    ('["a",\n "b",\n "a"]', ["labels.json: class name 'a' is listed 2 times, on lines 1, 3", "Fix:"]),
    ('{"a": "0",\n "b": "1",\n "a": "2"}', ["labels.json: class name 'a' is listed 2 times, on lines 1, 3"]),
    ('{"\\"a\\"": 0,\n "a": 1}', ["class name 'a' is listed 2 times, on lines 1, 2"]),
])
def test_malformed_labels_json(tmp_path, content, parts):
    (tmp_path / "labels.json").write_text(content)
    with pytest.raises(AnnotationError) as e:
        read_class_names(tmp_path / "labels.json")
    for part in parts:
        assert part in str(e.value)


def test_duplicate_class_name_in_a_labels_file(tmp_path):
    (tmp_path / "classes.txt").write_text("zumba\nabseiling\n\nyoga\nzumba\nyoga\n")
    with pytest.raises(AnnotationError, match=r"classes.txt: class name 'zumba' is listed 2 times, on lines 1, 5 "
                                              r"\(1 more class names are repeated too\)\. Fix: keep one entry"):
        read_class_names(tmp_path / "classes.txt")


@pytest.mark.parametrize("override,message", [
    ({"data.root": "/nope/videos"}, "data.root is not a folder: /nope/videos"),
    ({"data.train_ann": "/nope/train.csv"}, "data.train_ann: file not found: /nope/train.csv"),
    ({"data.sampling": "random"}, "data.sampling must be one of uniform, segment, dense"),
    ({"data.short_video": "pad"}, "data.short_video must be one of loop, repeat_last"),
    ({"data.interval": 0}, "data.interval must be an integer >= 1"),
    ({"data.name": "kinetics"}, "data.name must be one of motion, list, kinetics400, kinetics600, kinetics700, ssv2, "
                                "got kinetics"),
    ({"data.cache_frames": True}, "data.cache_frames needs videos of one known size"),
])
def test_kinetics_config_mistakes(kinetics, override, message):
    with pytest.raises(ConfigError, match="Fix:") as e:
        check_train(kinetics_cfg(kinetics, **override))
    assert message in str(e.value)


def test_ssv2_config_needs_labels_json(ssv2):
    check_train(ssv2_cfg(ssv2))
    cfg = compose("train", ["data=ssv2", f"data.root={ssv2}/videos", f"data.train_ann={ssv2}/train.json",
                            f"data.val_ann={ssv2}/validation.json"])
    with pytest.raises(ConfigError, match="data.labels is not set; SSv2 .*Fix: data.labels=/path/to/ssv2/labels.json"):
        check_train(cfg)


def test_num_classes_mismatch_names_the_fix(kinetics):
    cfg = kinetics_cfg(kinetics, **{"data.num_classes": 400})
    with pytest.raises(AnnotationError, match="gives 4 classes but data.num_classes=400 .*Fix: .*data.num_classes=4"):
        resolve_data(cfg.data)


# ============================================================================= sampling
def test_dense_indices_evaluation_positions():
    # 4 frames every 2nd: span 7, so a 100-frame video offers starts 0..93
    np.testing.assert_array_equal(dense_indices(100, 4, 2), [46, 48, 50, 52])  # centred clip
    views = [dense_indices(100, 4, 2, view=v, num_views=3)[0] for v in range(3)]
    assert views == [15, 46, 77]  # centres of 3 equal parts of the starts: evenly spaced clips
    np.testing.assert_array_equal(dense_indices(7, 4, 2), [0, 2, 4, 6])  # exactly fits
    np.testing.assert_array_equal(dense_indices(300, 16, 4)[[0, -1]], [119, 179])  # span 61, starts 0..239
    for v in range(10):
        idx = dense_indices(300, 16, 4, view=v, num_views=10)
        assert idx[0] >= 0 and idx[-1] < 300 and np.all(np.diff(idx) == 4)


def test_dense_indices_short_videos_loop_or_repeat_last():
    np.testing.assert_array_equal(dense_indices(5, 4, 2, short_video="loop"), [0, 2, 4, 1])
    np.testing.assert_array_equal(dense_indices(5, 4, 2, short_video="repeat_last"), [0, 2, 4, 4])
    np.testing.assert_array_equal(dense_indices(3, 6, 1), [0, 1, 2, 0, 1, 2])
    np.testing.assert_array_equal(dense_indices(1, 3, 4, short_video="repeat_last"), [0, 0, 0])
    rng = np.random.default_rng(0)  # training: a short video starts at 0 too
    np.testing.assert_array_equal(dense_indices(5, 4, 2, rng=rng, short_video="loop"), [0, 2, 4, 1])
    with pytest.raises(ValueError, match="data.short_video"):
        dense_indices(5, 4, 2, short_video="pad")


def test_dense_training_start_is_random_uniform_and_reproducible():
    starts = [dense_indices(20, 4, 3, rng=np.random.default_rng(s))[0] for s in range(400)]
    assert set(starts) == set(range(11))  # span 10: starts 0..10, every one reachable
    a = dense_indices(20, 4, 3, rng=np.random.default_rng([0, 3, 17]))
    b = dense_indices(20, 4, 3, rng=np.random.default_rng([0, 3, 17]))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(np.diff(a), [3, 3, 3])


def test_segment_indices_training_and_evaluation():
    np.testing.assert_array_equal(segment_indices(16, 8), [0, 2, 4, 6, 9, 11, 13, 15])  # segment centres
    np.testing.assert_array_equal(segment_indices(40, 4, view=0, num_views=2), [2, 12, 22, 32])
    np.testing.assert_array_equal(segment_indices(40, 4, view=1, num_views=2), [7, 17, 27, 37])
    np.testing.assert_array_equal(segment_indices(3, 6), [0, 0, 1, 1, 2, 2])  # short: frames repeat
    for seed in range(20):
        idx = segment_indices(40, 8, rng=np.random.default_rng(seed))
        assert np.all(idx // 5 == np.arange(8))  # one frame inside each 5-frame segment


def test_frame_sampler_is_deterministic_per_seed_epoch_index():
    sampler = FrameSampler("segment", 8)

    def clip(seed, epoch, index):
        return tuple(sampler.train_indices(80, np.random.default_rng([seed, epoch, index])))

    assert clip(0, 1, 5) == clip(0, 1, 5)
    assert len({clip(0, e, 5) for e in range(6)}) > 1 and len({clip(0, 1, i) for i in range(6)}) > 1
    uniform = FrameSampler("uniform", 4)  # motion/list: the same frames every epoch, no draws
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    assert list(uniform.train_indices(16, rng)) == [1, 5, 10, 14] and rng.bit_generator.state == state
    with pytest.raises(ValueError, match="data.sampling"):
        FrameSampler("random", 4)


def test_dataset_decodes_the_sampled_frames(tmp_path):
    """Frame i of the video is gray 8*i: the decoded clips show which indices the dataset used."""
    write_video(tmp_path / "ramp.mp4", num_frames=24, gray_step=8)
    transform = ClipTransform(size=32, short_side=32)
    rec = [VideoRecord(str(tmp_path / "ramp.mp4"), 0)]

    def decoded_indices(video):  # uint8 (..., T, H, W, 3) -> frame indices
        return torch.round(video.double().mean(dim=(-3, -2, -1)) / 8).long().tolist()

    dense = VideoDataset(rec, transform, 4, train=False, clips=3, sampling="dense", interval=3)
    expect = [list(dense_indices(24, 4, 3, view=v, num_views=3)) for v in range(3)]
    assert decoded_indices(dense[0]["video"]) == expect
    short = VideoDataset(rec, transform, 6, train=False, sampling="dense", interval=5, short_video="repeat_last")
    assert decoded_indices(short[0]["video"]) == [[0, 5, 10, 15, 20, 23]]
    train_transform = ClipTransform(size=32, short_side=32, train=True)
    segment = VideoDataset(rec, train_transform, 4, train=True, seed=3, sampling="segment")
    segment.set_epoch(2)
    got = decoded_indices(segment[0]["video"])
    want = list(FrameSampler("segment", 4).train_indices(24, np.random.default_rng([3, 2, 0])))
    assert got == want and got == decoded_indices(segment[0]["video"])


# ============================================================================= the apps
def _app_overrides(tiny_overrides, run_dir):
    """The shared tiny trainer settings (without the motion set's data keys)."""
    return [o for o in tiny_overrides if not o.startswith("data.")] + ["model=c2d_small", "trainer.batch_size=2",
                                                                       f"hydra.run.dir={run_dir}"]


def test_train_on_kinetics_csvs(kinetics, tiny_overrides, tmp_path):
    run_dir = tmp_path / "run"
    run_app("train.py", _app_overrides(tiny_overrides, run_dir) + [
        "data=kinetics400", f"data.root={kinetics}/underscore", f"data.train_ann={kinetics}/annotations/train.csv",
        f"data.val_ann={kinetics}/annotations/validate.csv", "data.num_classes=4", "data.frames=4", "data.interval=2",
        "data.size=32", "data.short_side=32", "test.clips=2"], tmp_path)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["num_videos"] == 2 and metrics["num_failed"] == 0 and metrics["views"]["clips"] == 2
    rows = list(csv.DictReader(open(run_dir / "predictions.csv")))
    assert [r["label_name"] for r in rows] == ["playing guitar", "zumba"]
    log = (run_dir / "train.log").read_text()
    assert "1 of 6 videos listed in" in log and "gone_000000_000010" in log
    # eval maps label names through the checkpoint's class list: the training CSV is not needed
    # (here it does not exist), and the ids are those the model was trained with
    run_app("eval.py", [f"checkpoint={run_dir}/checkpoints/best.pt", "data.train_ann=/nope/train.csv",
                        "trainer.device=cpu", "trainer.num_workers=0", "logger.mode=disabled",
                        f"hydra.run.dir={tmp_path}/eval"], tmp_path)
    again = list(csv.DictReader(open(tmp_path / "eval" / "predictions.csv")))
    assert [(r["label"], r["label_name"]) for r in again] == [(r["label"], r["label_name"]) for r in rows]


def test_train_on_ssv2_then_predict_test_json(ssv2, tiny_overrides, tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_app("train.py", _app_overrides(tiny_overrides, run_dir) + [
        "data=ssv2", f"data.root={ssv2}/videos", f"data.labels={ssv2}/labels.json",
        f"data.train_ann={ssv2}/train.json", f"data.val_ann={ssv2}/validation.json", "data.num_classes=5",
        "data.frames=4", "data.size=32", "data.short_side=32"], tmp_path)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["num_videos"] == 2 and metrics["num_failed"] == 1 and metrics["failed_videos"] == ["299"]
    rows = list(csv.DictReader(open(run_dir / "predictions.csv")))
    assert [r["label_name"] for r in rows] == ["Approaching something with your camera",
                                               "Pushing something from left to right"]

    # eval.py predict=test.json, in this process (a second interpreter start costs ~10 s on 2 cores)
    from video_sparse.engine.evaluator import evaluate_checkpoint
    pred_dir = tmp_path / "pred"
    pred_dir.mkdir()
    evaluate_checkpoint(compose("eval", [f"checkpoint={run_dir}/checkpoints/best.pt", f"predict={ssv2}/test.json",
                                         "predict_topk=2", "logger.mode=disabled", "trainer.device=cpu",
                                         "trainer.num_workers=0"]), pred_dir)
    out = capsys.readouterr().out
    assert "301.webm" in out and "302.webm" in out
    rows = list(csv.DictReader(open(pred_dir / "predictions.csv")))
    assert [r["path"].rsplit("/", 1)[1] for r in rows] == ["301.webm", "302.webm"]
    assert all(r["label"] == "-1" and r["top1_name"] in SSV2_LABELS for r in rows)

    # a file that is not there and one that is no video are named as such, not classified
    (tmp_path / "notes.mp4").write_text("not a video")
    evaluate_checkpoint(compose("eval", [f"checkpoint={run_dir}/checkpoints/best.pt",
                                         f"predict=[{tmp_path}/gone.mp4,{tmp_path}/notes.mp4]", "logger.mode=disabled",
                                         "trainer.device=cpu", "trainer.num_workers=0"]), pred_dir)
    out = capsys.readouterr().out
    assert f"{tmp_path}/gone.mp4\n    (not classified: file not found)" in out
    assert f"{tmp_path}/notes.mp4\n    (not classified: no decoder can read it)" in out


# ============================================================================= experiment presets
def test_sifa_k400_preset_is_the_official_recipe_and_runs(kinetics, tmp_path):
    """conf/experiment/sifa_r50_k400.yaml carries the official K400 numbers, and the preset trains
    end to end (shrunk to tiny clips and one optimiser step; no ImageNet download here)."""
    ann = kinetics / "annotations"
    data = [f"data.root={kinetics}/flat", f"data.train_ann={ann}/train.csv", f"data.val_ann={ann}/validate.csv"]
    cfg = compose("train", ["+experiment=sifa_r50_k400", *data])
    assert (cfg.data.name, cfg.data.sampling, cfg.data.frames, cfg.data.interval, cfg.data.size) == (
        "kinetics400", "dense", 16, 1, 224)
    assert cfg.model.name == "c2d_sifa_r50" and cfg.model.dropout == 0.5
    assert cfg.model.pretrained == "torchvision:ResNet50_Weights.IMAGENET1K_V1"
    assert cfg.optim._target_ == "torch.optim.SGD" and cfg.optim.lr == 0.04
    assert cfg.trainer.batch_size * cfg.trainer.accumulate == 384
    assert (cfg.sched.warmup_epochs, cfg.trainer.epochs, cfg.trainer.clip_grad) == (1, 64, 40.0)

    from video_sparse.engine.trainer import train
    tiny = compose("train", ["+experiment=sifa_r50_k400", *data, "data.num_classes=4", "data.frames=4",
                             "data.size=32", "data.short_side=32", "model.pretrained=null", "trainer.epochs=1",
                             "trainer.batch_size=2", "trainer.accumulate=2", "trainer.num_workers=0",
                             "trainer.device=cpu", "test.clips=1", "test.crops=1", "logger.mode=disabled"])
    metrics = train(tiny, tmp_path / "run")
    assert metrics["num_videos"] == 2 and (tmp_path / "run" / "checkpoints" / "last.pt").is_file()


def test_sifa_ssv2_preset_is_the_official_recipe(ssv2):
    cfg = compose("train", ["+experiment=sifa_r50_ssv2", f"data.root={ssv2}/videos", f"data.labels={ssv2}/labels.json",
                            f"data.train_ann={ssv2}/train.json", f"data.val_ann={ssv2}/validation.json"])
    assert (cfg.data.name, cfg.data.sampling, cfg.data.frames, cfg.data.flip) == ("ssv2", "segment", 16, False)
    assert (cfg.data.randaug_n, cfg.data.randaug_m) == (2, 27)  # official: ra_n 2, ra_m 27
    assert cfg.model.name == "c2d_sifa_r50" and cfg.optim.lr == 0.02 and cfg.sched.warmup_epochs == 5
    assert cfg.trainer.batch_size * cfg.trainer.accumulate == 384 and cfg.trainer.epochs == 64
    check_train(cfg)


# ============================================================================= dataset scan
def test_scan_reports_missing_unreadable_and_short_videos(tmp_path, capsys):
    from video_sparse.apps.scan import scan
    v = tmp_path / "videos"
    write_video(v / "good.mp4")
    write_video(v / "good.webm")
    write_video(v / "short.mp4", num_frames=3)
    (v / "empty.mp4").write_bytes(b"")
    (v / "text.mp4").write_text("not a video")
    data = (v / "good.mp4").read_bytes()
    (v / "truncated.mp4").write_bytes(data[: len(data) // 3])
    (tmp_path / "classes.txt").write_text("a\nb\n")
    (tmp_path / "train.txt").write_text("good.mp4 0\nshort.mp4 1\nempty.mp4 0\ntext.mp4 1\ngone.mp4 0\n")
    (tmp_path / "val.txt").write_text("good.webm 1\ntruncated.mp4 0\n")
    cfg = compose("scan", ["data=list", f"data.root={v}", f"data.train_ann={tmp_path}/train.txt",
                           f"data.val_ann={tmp_path}/val.txt", f"data.labels={tmp_path}/classes.txt", "data.frames=4",
                           "workers=2"])
    counts = scan(cfg, tmp_path)
    assert counts == {"train": {"ok": 1, "needs_linear_decode": 0, "short": 1, "missing": 1, "unreadable": 2},
                      "val": {"ok": 1, "needs_linear_decode": 0, "short": 0, "missing": 0, "unreadable": 1}}
    with open(tmp_path / "scan_report.csv") as f:
        rows = {Path(r["path"]).name: r for r in csv.DictReader(f)}
    assert {k: r["status"] for k, r in rows.items()} == {
        "gone.mp4": "missing", "short.mp4": "short", "empty.mp4": "unreadable", "text.mp4": "unreadable",
        "truncated.mp4": "unreadable", "good.mp4": "ok", "good.webm": "ok"}
    assert (rows["good.mp4"]["stream"], rows["good.mp4"]["fps"], rows["good.mp4"]["frames"]) == ("0", "8.0", str(FRAMES))
    assert rows["short.mp4"]["frames"] == "3" and "empty file" in rows["empty.mp4"]["detail"]
    out = capsys.readouterr().out
    assert "train" in out and "unreadable" in out and "scan_report.csv" in out
    # dense sampling: a clip spans (frames - 1) x interval + 1 frames
    dense = compose("scan", ["data=list", f"data.root={v}", f"data.train_ann={tmp_path}/train.txt",
                             f"data.val_ann={tmp_path}/val.txt", f"data.labels={tmp_path}/classes.txt",
                             "data.sampling=dense", "data.frames=4", "data.interval=4", "splits=[val]", "workers=1"])
    assert scan(dense, tmp_path)["val"] == {"ok": 0, "needs_linear_decode": 0, "short": 1, "missing": 0,
                                            "unreadable": 1}


def test_scan_command_exit_status(tmp_path):
    import subprocess
    import sys
    v = tmp_path / "videos"
    write_video(v / "good.mp4")
    (tmp_path / "classes.txt").write_text("a\n")
    (tmp_path / "ok.txt").write_text("good.mp4 0\n")
    (tmp_path / "bad.txt").write_text("good.mp4 0\ngone.mp4 0\n")
    base = [sys.executable, "-m", "video_sparse.data.scan", "data=list", f"data.root={v}",
            f"data.labels={tmp_path}/classes.txt", "data.frames=4", "workers=1", f"hydra.run.dir={tmp_path}/run"]
    ok = subprocess.run(base + [f"data.train_ann={tmp_path}/ok.txt"], capture_output=True, text=True, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run(base + [f"data.train_ann={tmp_path}/bad.txt"], capture_output=True, text=True, cwd=tmp_path)
    assert bad.returncode == 1 and "missing" in bad.stdout and (tmp_path / "run" / "scan_report.csv").is_file()


def test_scan_checks_labelled_and_unlabelled_test_lists(tmp_path):
    from video_sparse.apps.scan import scan
    v = tmp_path / "videos"
    write_video(v / "good.mp4")
    write_video(v / "moving left" / "x.mp4")
    (tmp_path / "classes.txt").write_text("a\nmoving left\n")
    (tmp_path / "train.txt").write_text("good.mp4 0\n")
    (tmp_path / "labelled.txt").write_text("good.mp4 a\nmoving left/x.mp4 moving left\ngone.mp4 1\n")
    (tmp_path / "unlabelled.txt").write_text("good.mp4 -1\nmoving left/x.mp4 -1\n")
    (tmp_path / "wrong.txt").write_text("good.mp4 zumba\n")
    base = ["data=list", f"data.root={v}", f"data.train_ann={tmp_path}/train.txt",
            f"data.labels={tmp_path}/classes.txt", "data.frames=4", "workers=1"]
    counts = scan(compose("scan", base + [f"data.test_ann={tmp_path}/labelled.txt"]), tmp_path)
    assert counts == {"train": {"ok": 1, "needs_linear_decode": 0, "short": 0, "missing": 0, "unreadable": 0},
                      "test": {"ok": 2, "needs_linear_decode": 0, "short": 0, "missing": 1, "unreadable": 0}}
    counts = scan(compose("scan", base + [f"data.test_ann={tmp_path}/unlabelled.txt", "splits=[test]"]), tmp_path)
    assert counts == {"test": {"ok": 2, "needs_linear_decode": 0, "short": 0, "missing": 0, "unreadable": 0}}
    with pytest.raises(AnnotationError, match=r"wrong.txt:1: unknown label 'zumba'"):  # labels given are checked
        scan(compose("scan", base + [f"data.test_ann={tmp_path}/wrong.txt", "splits=[test]"]), tmp_path)


def test_scan_checks_an_official_kinetics_test_csv_without_labels(kinetics, tmp_path):
    from video_sparse.apps.scan import scan
    ann = kinetics / "annotations"
    cfg = compose("scan", ["data=kinetics400", f"data.root={kinetics / 'flat'}", f"data.train_ann={ann}/train.csv",
                           f"data.val_ann={ann}/validate.csv", f"data.test_ann={ann}/test.csv", "data.num_classes=4",
                           "data.frames=4", "data.interval=2", "splits=[test]", "workers=2"])
    assert scan(cfg, tmp_path) == {"test": {"ok": 2, "needs_linear_decode": 0, "short": 0, "missing": 0,
                                            "unreadable": 0}}


def test_decoder_messages_about_unreadable_files_stay_off_the_console(tmp_path):
    """decord's FFmpeg and logger print for every file they cannot open; the error already says it
    (VideoDecodeError names both backends' reasons), so nothing reaches stderr."""
    import subprocess
    import sys
    (tmp_path / "text.mp4").write_text("not a video")
    write_video(tmp_path / "good.mp4")
    data = (tmp_path / "good.mp4").read_bytes()
    (tmp_path / "truncated.mp4").write_bytes(data[: len(data) // 3])
    code = ("import numpy as np\nfrom video_sparse.data.decode import VideoDecodeError, read_frames\n"
            "for name in ('text.mp4', 'truncated.mp4'):\n"
            "    try:\n        read_frames(name, lambda n: np.arange(n), 'decord')\n"
            "    except VideoDecodeError as e:\n        print('caught', e)\n"
            "print(read_frames('good.mp4', lambda n: np.arange(n)).shape)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert proc.stdout.count("caught") == 2 and "text.mp4: cannot decode (decord:" in proc.stdout
