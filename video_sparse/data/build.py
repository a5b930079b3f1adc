"""Datasets from the ``data`` config group (``data=motion|list|kinetics400|kinetics600|kinetics700|ssv2``)."""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from .annotations import (ANNOTATION_SUFFIXES, DATASETS, AnnotationError, VideoRecord, annotation_class_names,
                          load_annotation, read_class_names)
from .dataset import DecodedVideos, VideoDataset
from .frame_cache import FrameCache
from .motion import CLASS_NAMES as MOTION_CLASSES, MotionSetSpec, prepare_motion_dataset
from .randaugment import ClipRandAugment
from .sampling import FrameSampler
from .timeline import DecodedWindowClips, WindowClips
from .transforms import ClipTransform, horizontal_flip_labels

log = logging.getLogger(__name__)

@dataclass
class DataInfo:
    """What the engine needs to know about a dataset besides its samples."""

    root: str
    class_names: list[str]
    pairs: list[tuple[int, int]] = field(default_factory=list)  # time-reversal pairs (motion set)
    class_source: str = ""  # where class_names come from (for messages), see dataset_classes


def under_root(cfg: DictConfig, path: str) -> Path:
    """``path`` as given when absolute (or without a root), else relative to ``data.root``."""
    return Path(path) if cfg.root is None or Path(path).is_absolute() else Path(cfg.root) / path


def dataset_classes(cfg: DictConfig) -> tuple[list[str], str]:
    """The class list of a data config and a description of where it comes from (for messages):
    the motion benchmark's own, ``data.labels`` when set, else (Kinetics) the sorted label names of
    ``data.train_ann``, so that every split maps a name to the same id. Reads no video and
    generates nothing."""
    if cfg.name == "motion":
        return list(MOTION_CLASSES), "the motion benchmark"
    labels = cfg.labels
    if labels is not None:
        path = under_root(cfg, labels)
        return read_class_names(path), f"data.labels ({path})"
    if DATASETS.get(cfg.name) == "train_ann":
        train_ann = cfg.train_ann
        if train_ann is None:
            raise AnnotationError("the class list comes from data.train_ann (its sorted label names), which is not "
                                  "set. Fix: data.train_ann=/path/to/train.csv or data.labels=/path/to/classes.txt")
        path = under_root(cfg, train_ann)
        return annotation_class_names(path), f"the training annotation {path}"
    raise AnnotationError(f"data.labels is not set; data={cfg.name} needs a class-name file. "
                          "Fix: data.labels=/path/to/classes.txt (or SSv2's labels.json)")


def resolve_data(data_cfg: DictConfig, progress: bool = True, class_names: list[str] | None = None,
                 class_source: str = "") -> tuple[DictConfig, DataInfo]:
    """Make the data config concrete: generate the motion set if needed, read class names.

    ``class_names`` (with ``class_source`` for messages): use this class list instead of the
    dataset's (evaluation: the checkpoint's, so that label names map to the ids the model was
    trained with, whatever the evaluated annotation contains).
    Returns a copy of ``data_cfg`` with ``root`` filled in, and the :class:`DataInfo`.
    """
    cfg = OmegaConf.create(OmegaConf.to_container(data_cfg, resolve=True))
    pairs: list[tuple[int, int]] = []
    if cfg.name == "motion":
        spec = MotionSetSpec(train_size=cfg.train_size, val_size=cfg.val_size, frames=cfg.video_frames,
                             height=cfg.video_size, width=cfg.video_size, seed=cfg.seed)
        cfg.root = str(prepare_motion_dataset(spec, cfg.cache_dir, progress=progress))
        pairs = [tuple(p) for p in json.loads((Path(cfg.root) / "manifest.json").read_text())["pairs"]]
    if class_names is None:
        class_names, source = dataset_classes(cfg)
    else:
        source = class_source or "the given class list"
    expected = cfg.num_classes
    if expected is not None and len(class_names) != expected:
        raise AnnotationError(f"{source} gives {len(class_names)} classes but data.num_classes={expected} "
                              f"(data={cfg.name}). Fix: the annotation files of that dataset, or "
                              f"data.num_classes={len(class_names)} for a subset or another class list")
    return cfg, DataInfo(root=str(cfg.root), class_names=class_names, pairs=pairs, class_source=source)


def _pair(value) -> tuple | None:
    return None if value is None else tuple(value)


def clip_transform(cfg: DictConfig, train: bool) -> ClipTransform:
    """The clip transform of ``data``; the training augmentations only when ``train``."""
    if not train:
        return ClipTransform(size=cfg.size, short_side=cfg.short_side, mean=tuple(cfg.mean), std=tuple(cfg.std))
    return ClipTransform(size=cfg.size, short_side=cfg.short_side, train=True, mean=tuple(cfg.mean),
                         std=tuple(cfg.std), scale_jitter=_pair(cfg.scale_jitter),
                         resized_crop_area=_pair(cfg.resized_crop),
                         rand_augment=ClipRandAugment(cfg.randaug_n, cfg.randaug_m) if cfg.randaug_n else None,
                         erase_prob=cfg.random_erase)


def flip_mode(cfg: DictConfig) -> str:
    """``data.flip`` (true | false | swap) as a :func:`horizontal_flip_labels` mode."""
    flip = cfg.flip
    return "swap" if flip == "swap" else "random" if flip else "none"


def _flip_labels(cfg: DictConfig, class_names: list[str]) -> list[int] | None:
    mode = flip_mode(cfg)
    labels = horizontal_flip_labels(class_names, mode)
    if mode == "swap":
        swaps = sorted({tuple(sorted((i, j))) for i, j in enumerate(labels) if j >= 0 and j != i})
        never = [class_names[i] for i, j in enumerate(labels) if j < 0]
        log.info("data.flip=swap: %d pairs of left/right classes swap labels when mirrored (e.g. %s)%s", len(swaps),
                 " <-> ".join(class_names[k] for k in swaps[0]) if swaps else "none",
                 f"; {len(never)} left/right classes without a partner are never mirrored: {never[:3]}" if never
                 else "")
    return labels


def _reading_kwargs(cfg: DictConfig) -> dict:
    return {"sampling": cfg.sampling, "interval": cfg.interval, "short_video": cfg.short_video,
            "decoder": cfg.decoder}


def _frame_cache(cfg: DictConfig, num_videos: int, views: int) -> FrameCache | None:
    """The motion set's decoded-frame cache (``data.cache_frames``): its videos all have one size."""
    if not cfg.cache_frames:
        return None
    shape = (cfg.frames, cfg.video_size, cfg.video_size, 3)
    try:
        cache = FrameCache(num_videos, views, shape)
    except RuntimeError as e:  # shared memory exhausted (e.g. a small /dev/shm in a container)
        log.warning("data.cache_frames: cannot allocate shared memory (%s); decoding every epoch instead", e)
        return None
    log.info("caching decoded frames in shared memory: %d videos x %d view(s) x %s = %.0f MB", num_videos, views,
             "x".join(map(str, shape)), cache.nbytes / 1e6)
    return cache


def build_dataset(cfg: DictConfig, split: str, *, clips: int = 1, crops: int = 1, seed: int = 0,
                  cache_frames: bool = False, info: DataInfo | None = None) -> VideoDataset:
    """``split`` in {train, val, test}: the annotation ``data.<split>_ann`` (any style, see
    :mod:`.annotations`) with videos under ``data.root``. Missing videos are skipped and reported.
    ``cache_frames``: decode each clip once per run when ``data.cache_frames`` allows it (for
    datasets read every epoch). ``info``: the :func:`resolve_data` result for ``cfg``, whose class
    list is used instead of reading it again (Kinetics derives it from the whole training CSV)."""
    ann = cfg[f"{split}_ann"]
    if ann is None:
        raise AnnotationError(f"data.{split}_ann is not set. Fix: data.{split}_ann=/path/to/the/{split}/annotation")
    class_names, source = (info.class_names, info.class_source) if info else dataset_classes(cfg)
    records, missing = load_annotation(under_root(cfg, ann), cfg.root, class_names, class_source=source,
                                       confine=cfg.confine_to_root)
    train = split == "train"
    cache = _frame_cache(cfg, len(records), 1 if train else clips) if cache_frames else None
    return VideoDataset(records, clip_transform(cfg, train), cfg.frames, train=train, clips=clips, crops=crops,
                        seed=seed, missing=missing, frame_cache=cache,
                        flip_labels=_flip_labels(cfg, class_names) if train else None, **_reading_kwargs(cfg))


def build_predict_dataset(cfg: DictConfig, paths: list[str], *, clips: int = 1, crops: int = 1) -> VideoDataset:
    """Unlabelled videos for ``eval.py predict=[...]``: video files, or annotation files (e.g. SSv2's
    ``test.json``, a Kinetics test CSV) whose videos under ``data.root`` are all classified."""
    records, missing = [], []
    for p in paths:
        if Path(p).suffix.lower() in ANNOTATION_SUFFIXES:
            found, gone = load_annotation(p, cfg.root, labels="ignored", confine=cfg.confine_to_root)
            records += found
            missing += gone
        else:
            records.append(VideoRecord(str(p), -1))
    return VideoDataset(records, clip_transform(cfg, False), cfg.frames, train=False, clips=clips, crops=crops,
                        missing=missing, **_reading_kwargs(cfg))


def build_window_clips(cfg: DictConfig, video, window_s: float, stride_s: float, *, clips: int = 1, crops: int = 1,
                       fps: float | None = None) -> WindowClips:
    """The windows of one video for a timeline, each sampled and transformed as
    :func:`build_predict_dataset` does a whole video: a file path, or its decoded uint8 frames
    ``(T, H, W, 3)`` shown at ``fps``."""
    sampler = FrameSampler(cfg.sampling, cfg.frames, cfg.interval, cfg.short_video)
    if isinstance(video, (str, os.PathLike)):
        return WindowClips(str(video), sampler, clip_transform(cfg, False), window_s, stride_s, clips, crops)
    if fps is None:
        raise TypeError("timeline of decoded frames: give their frame rate, fps=...")
    return DecodedWindowClips(video, fps, sampler, clip_transform(cfg, False), window_s, stride_s, clips, crops)


def build_decoded_dataset(cfg: DictConfig, videos, *, clips: int = 1, crops: int = 1) -> DecodedVideos:
    """Videos already decoded (uint8 ``(T, H, W, 3)`` each), sampled and transformed as
    :func:`build_predict_dataset` does files."""
    return DecodedVideos(videos, clip_transform(cfg, False), cfg.frames, clips=clips, crops=crops,
                         **_reading_kwargs(cfg))
