"""The data schema: every ``data.*`` key with its one default, type and help (Hydra structured
configs, registered by the apps). Importing it imports no torch."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Tuple

from omegaconf import MISSING

from ..options import ConfigError, option
from .annotations import DATASETS
from .decode import DECODERS
from .sampling import SAMPLINGS, SHORT_VIDEO_POLICIES

RANDAUG_MAX_MAGNITUDE = 30  # = data.randaugment.MAX_MAGNITUDE (tested), which imports torchvision


@dataclass
class DataConfig:
    """A dataset of videos listed in annotation files (``data=list``; Kinetics and SSv2 extend it)."""

    name: str = option("list", "dataset (set by data=<name>)", choices=tuple(DATASETS))
    num_classes: Optional[int] = option(None, "expected number of classes, checked against the class list "
                                        "(null: not checked)", ge=1)
    root: Optional[str] = option(MISSING, "folder the annotation paths are relative to")
    train_ann: Optional[str] = option(MISSING, "training annotation (Kinetics CSV, SSv2 JSON or a path-label list)")
    val_ann: Optional[str] = option(MISSING, "validation annotation")
    test_ann: Optional[str] = option(None, "test annotation with labels: train.py's final evaluation runs on it "
                                     "when set (else on val_ann); eval.py split=test")
    labels: Optional[str] = option(MISSING, "class-name file (one per line, in id order) or SSv2's labels.json")
    confine_to_root: bool = option(False, "refuse annotation entries whose video lies outside root (an absolute "
                                   "path elsewhere, or ../)")
    sampling: str = option("uniform", "uniform: frames spread evenly over the video | segment: one per equal "
                           "segment (SSv2) | dense: frames x interval from a start (Kinetics)", choices=SAMPLINGS)
    frames: int = option(8, "frames per clip", ge=1)
    interval: int = option(1, "frame stride of dense sampling", ge=1)
    decoder: str = option("auto", "video decoder: auto (the fastest that is exact for the file: PyAV) | pyav | "
                          "decord (files it reads wrong go to PyAV); every one returns the frames of a sequential "
                          "decode of FFmpeg's best video stream", choices=DECODERS)
    short_video: str = option("loop", "dense sampling of videos shorter than the clip: loop | repeat_last",
                              choices=SHORT_VIDEO_POLICIES)
    size: int = option(112, "crop size", ge=1)
    short_side: int = option(128, "resize the short side to this before cropping", ge=1)
    cache_frames: bool = option(False, "decode each clip once per run and keep its frames in shared memory "
                                "(uniform sampling of the motion set)")
    flip: Any = option(True, "horizontal flip: true | false | swap (mirrored left/right classes swap labels)",
                       choices=(True, False, "swap"))
    scale_jitter: Optional[Tuple[int, int]] = option(None, "[min, max]: training short side drawn per clip "
                                                     "(e.g. [256, 320]); null: short_side", ge=1)
    resized_crop: Optional[Tuple[float, float]] = option(None, "[min, max] area fraction: RandomResizedCrop of the "
                                                         "decoded frame instead (e.g. [0.08, 1.0])", gt=0, le=1)
    randaug_n: int = option(0, "RandAugment operations per training clip, the same for every frame (0 = off)", ge=0)
    randaug_m: float = option(27, f"RandAugment magnitude, 0-{RANDAUG_MAX_MAGNITUDE}", ge=0,
                              le=RANDAUG_MAX_MAGNITUDE)
    random_erase: float = option(0.0, "probability of erasing one random box of a training clip (the same in "
                                 "every frame)", ge=0, le=1)
    mean: Tuple[float, float, float] = option((0.485, 0.456, 0.406), "per-channel mean of the normalisation")
    std: Tuple[float, float, float] = option((0.229, 0.224, 0.225), "per-channel std of the normalisation", gt=0)


@dataclass
class MotionDataConfig(DataConfig):
    """The built-in motion benchmark (``data=motion``): generated once (H.264 MP4 + path-label
    lists) and cached; only temporal order carries the label."""

    name: str = option("motion", "dataset (set by data=<name>)", choices=tuple(DATASETS))
    root: Optional[str] = option(None, "filled with the generated set's folder")
    train_ann: Optional[str] = option("train.txt", "training list of the generated set")
    val_ann: Optional[str] = option("val.txt", "validation list of the generated set")
    labels: Optional[str] = option("classes.txt", "class names of the generated set")
    frames: int = option(4, "frames per clip, spread uniformly over the video", ge=1)
    size: int = option(64, "crop size", ge=1)
    short_side: int = option(64, "resize the short side to this before cropping", ge=1)
    cache_frames: bool = option(True, "decode each clip once per run and keep its frames in shared memory")
    flip: Any = option(False, "must stay false: a flip would turn 'moving left' into 'moving right'",
                       choices=(True, False, "swap"))
    mean: Tuple[float, float, float] = option((0.5, 0.5, 0.5), "per-channel mean of the normalisation")
    std: Tuple[float, float, float] = option((0.25, 0.25, 0.25), "per-channel std of the normalisation", gt=0)
    train_size: int = option(2000, "generated training videos", ge=1)
    val_size: int = option(500, "generated validation videos", ge=1)
    video_frames: int = option(16, "frames per generated video", ge=1)
    video_size: int = option(64, "height and width of the generated videos (even: H.264 yuv420p)", ge=2)
    cache_dir: Optional[str] = option(None, "where generated sets are cached (null: $XDG_CACHE_HOME/video_sparse/"
                                      "motion or ~/.cache/video_sparse/motion)")
    seed: int = option(0, "generator seed")


def refuse_motion_root(root: str | None) -> None:
    """``data.root`` given for the motion benchmark, whose folder is chosen under ``data.cache_dir``:
    one line instead of a silently ignored key."""
    if root is not None:
        raise ConfigError("data.root: the motion benchmark is generated, into a folder video_sparse chooses under "
                          "data.cache_dir; data.root would be ignored. Fix: data.cache_dir=<folder> for the generated "
                          "set, or data=<dataset> data.root=<folder> for your own videos")


@dataclass
class DataOverrides:
    """data=run (eval.py's default): the evaluated run's data config, with these overrides (null:
    keep the run's value). data=<dataset> gives a whole data config instead (weights files need it)."""

    root: Optional[str] = option(None, "folder the annotation paths are relative to")
    train_ann: Optional[str] = option(None, "training annotation")
    val_ann: Optional[str] = option(None, "validation annotation (split=val)")
    test_ann: Optional[str] = option(None, "test annotation (split=test)")
    labels: Optional[str] = option(None, "class-name file")
    cache_dir: Optional[str] = option(None, "motion benchmark cache")
    decoder: Optional[str] = option(None, "video decoder: auto | pyav | decord (null: the run's)",
                                    choices=(None, *DECODERS))
