"""Datasets from the ``data`` config group."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from .dataset import VideoDataset, VideoRecord, read_class_names, read_path_label_list
from .motion import MotionSetSpec, prepare_motion_dataset
from .transforms import ClipTransform


@dataclass
class DataInfo:
    """What the engine needs to know about a dataset besides its samples."""

    root: str
    class_names: list[str]
    pairs: list[tuple[int, int]] = field(default_factory=list)  # time-reversal pairs (motion set)


def _under_root(cfg: DictConfig, path: str) -> Path:
    """``path`` as given when absolute (or without a root), else relative to ``data.root``."""
    return Path(path) if cfg.root is None or Path(path).is_absolute() else Path(cfg.root) / path


def resolve_data(data_cfg: DictConfig, progress: bool = True) -> tuple[DictConfig, DataInfo]:
    """Make the data config concrete: generate the motion set if needed, read class names.

    Returns a copy of ``data_cfg`` with ``root`` filled in, and the :class:`DataInfo`.
    """
    cfg = OmegaConf.create(OmegaConf.to_container(data_cfg, resolve=True))
    pairs: list[tuple[int, int]] = []
    if cfg.name == "motion":
        spec = MotionSetSpec(train_size=cfg.train_size, val_size=cfg.val_size, frames=cfg.video_frames,
                             height=cfg.video_size, width=cfg.video_size, seed=cfg.seed)
        cfg.root = str(prepare_motion_dataset(spec, cfg.cache_dir, progress=progress))
        pairs = [tuple(p) for p in json.loads((Path(cfg.root) / "manifest.json").read_text())["pairs"]]
    return cfg, DataInfo(root=str(cfg.root), class_names=read_class_names(_under_root(cfg, cfg.labels)), pairs=pairs)


def clip_transform(cfg: DictConfig, train: bool) -> ClipTransform:
    return ClipTransform(size=cfg.size, short_side=cfg.short_side, train=train, flip=train and cfg.flip,
                         mean=tuple(cfg.mean), std=tuple(cfg.std))


def build_dataset(cfg: DictConfig, split: str, *, clips: int = 1, crops: int = 1, seed: int = 0) -> VideoDataset:
    """``split`` in {train, val, test}: the list ``data.<split>_ann`` under ``data.root``."""
    ann = cfg.get(f"{split}_ann")
    if ann is None:
        raise ValueError(f"data.{split}_ann is not set; set it to the {split} annotation file")
    records = read_path_label_list(_under_root(cfg, ann), cfg.root)
    train = split == "train"
    return VideoDataset(records, clip_transform(cfg, train), cfg.frames, train=train, clips=clips, crops=crops,
                        seed=seed)


def build_predict_dataset(cfg: DictConfig, paths: list[str], *, clips: int = 1, crops: int = 1) -> VideoDataset:
    """Unlabelled videos for ``eval.py predict=[...]``."""
    records = [VideoRecord(str(p), -1) for p in paths]
    return VideoDataset(records, clip_transform(cfg, False), cfg.frames, train=False, clips=clips, crops=crops)
