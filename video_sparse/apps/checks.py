"""The checks a schema cannot express, run once at the app boundary before any data or model is
built: every option's choices and bounds (declared in the schema), values that depend on each
other, files that must exist, the device. Each failure is a
:class:`~video_sparse.options.ConfigError` naming the key and the fix. Imports no torch unless a
CUDA device is asked for."""
from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ..data.annotations import ANNOTATION_SUFFIXES, DATASETS
from ..data.config import refuse_motion_root
from ..models.registry import model_spec, unknown_model_message, variants
from ..options import ConfigError, check_options

TORCHVISION_PREFIX = "torchvision:"  # = models.weights.TORCHVISION_PREFIX (tested), which imports torch
PYTORCHVIDEO_PREFIX = "pytorchvideo:"  # = models.weights.PYTORCHVIDEO_PREFIX (tested)


def _check_sections(cfg: DictConfig, sections: tuple[str, ...]) -> None:
    for section in sections:
        node = cfg[section]
        check_options(node, section, OmegaConf.get_type(node))


def _path(cfg: DictConfig, key: str) -> str:
    value, root = str(OmegaConf.select(cfg, key)), OmegaConf.select(cfg, "data.root")
    return value if os.path.isabs(value) or not root else os.path.join(str(root), value)


def _check_file(cfg: DictConfig, key: str, required: bool) -> None:
    if OmegaConf.select(cfg, key) is None:
        if required:
            raise ConfigError(f"{key} is not set; point it to the annotation file. Fix: {key}=/path/to/file")
        return
    if not os.path.isfile(_path(cfg, key)):
        raise ConfigError(f"{key}: file not found: {_path(cfg, key)}. Fix: {key}=/path/to/an/existing/file")


def check_device(cfg: DictConfig) -> None:
    device = cfg.trainer.device
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device):
        raise ConfigError(f"trainer.device must be one of auto, cpu, cuda, cuda:N, got {device}. "
                          "Fix: trainer.device=auto")
    if device.startswith("cuda"):
        import torch
        if not torch.cuda.is_available():
            raise ConfigError("trainer.device=cuda but no CUDA device is available. Fix: trainer.device=cpu (or auto)")


def check_data(cfg: DictConfig, need_train: bool = True) -> None:
    """``data``: its options, then what depends on the dataset."""
    data = cfg.data
    check_options(data, "data", OmegaConf.get_type(data))
    if "name" not in data:
        raise ConfigError("data=run is eval.py's (the evaluated run's own data config). "
                          f"Fix: data=<one of {', '.join(DATASETS)}> (data=motion: the built-in benchmark)")
    if data.short_side < data.size:
        raise ConfigError(f"data.short_side ({data.short_side}) must be >= data.size ({data.size}). "
                          f"Fix: data.short_side={data.size}")
    if data.scale_jitter is not None and not data.size <= data.scale_jitter[0] <= data.scale_jitter[1]:
        raise ConfigError(f"data.scale_jitter must be [min, max] short sides with data.size ({data.size}) <= min <= "
                          f"max, got {list(data.scale_jitter)}. Fix: data.scale_jitter=[{data.short_side},"
                          f"{data.short_side + data.short_side // 4}]")
    if data.resized_crop is not None and data.resized_crop[0] > data.resized_crop[1]:
        raise ConfigError(f"data.resized_crop must be [min, max] area fractions with min <= max, got "
                          f"{list(data.resized_crop)}. Fix: data.resized_crop=[0.08,1.0]")
    if data.name == "motion":
        refuse_motion_root(data.root)
        if data.video_size % 2:
            raise ConfigError(f"data.video_size must be even (H.264 yuv420p), got {data.video_size}. "
                              f"Fix: data.video_size={data.video_size + 1}")
        if data.flip is not False:
            raise ConfigError("data.flip: the motion benchmark's labels are directions (a mirrored 'moving left' moves "
                              "right, a mirrored clockwise turn is counter-clockwise). Fix: data.flip=false")
        if data.cache_frames and data.sampling != "uniform":
            raise ConfigError("data.cache_frames=true keeps the decoded frames of uniform sampling, which are the "
                              f"same every epoch; data.sampling={data.sampling} draws new ones. "
                              "Fix: data.cache_frames=false")
        return
    if data.cache_frames:
        raise ConfigError(f"data.cache_frames needs videos of one known size: only data=motion has them, not "
                          f"data={data.name}. Fix: data.cache_frames=false")
    root = OmegaConf.select(data, "root")  # None when unset or ??? (required: named here)
    if root is None or not os.path.isdir(str(root)):
        what = "is not set" if root is None else f"is not a folder: {root}"
        raise ConfigError(f"data.root {what}. Fix: data.root=/path/to/videos (annotation paths are relative to it)")
    _check_file(cfg, "data.train_ann", required=need_train)
    _check_file(cfg, "data.val_ann", required=need_train)
    _check_file(cfg, "data.test_ann", required=False)
    if data.name == "ssv2" and data.flip is True:
        raise ConfigError("data.flip=true on SSv2 mirrors 'Pushing something from left to right' into 'right to left' "
                          "without changing its label. Fix: data.flip=swap (mirrored clips of left/right classes take "
                          "the partner class's label) or data.flip=false")
    if data.name == "ssv2" and OmegaConf.select(data, "labels") is None:
        raise ConfigError("data.labels is not set; SSv2 maps its templates to ids with labels.json. "
                          "Fix: data.labels=/path/to/ssv2/labels.json")
    # Kinetics takes its class list from train_ann unless data.labels names a class-name file.
    _check_file(cfg, "data.labels", required=DATASETS[data.name] is None)


def check_model(cfg: DictConfig) -> None:
    """``model``: a registered name whose spec takes every key of the node (values included)."""
    node = OmegaConf.to_container(cfg.model, resolve=True)
    name = node.pop("name")
    pretrained = node.pop("pretrained", None)
    if name not in variants():
        raise ConfigError(f"model.name: {unknown_model_message(name)}. Fix: model=<one of those>")
    fields = {f.name for f in dataclasses.fields(variants()[name].spec)}
    if set(node) != fields:
        raise ConfigError(f"model.name={name} does not match the model=<name> its other keys come from. "
                          f"Fix: model={name} (not model.name={name})")
    model_spec(name, **node)  # choices and bounds of every option
    if pretrained is not None and not str(pretrained).startswith((TORCHVISION_PREFIX, PYTORCHVIDEO_PREFIX)) \
            and not os.path.isfile(str(pretrained)):
        raise ConfigError(f"model.pretrained: file not found: {pretrained}. Fix: model.pretrained=/path/to/weights.pt, "
                          f"model.pretrained={TORCHVISION_PREFIX}ResNet50_Weights.IMAGENET1K_V1 or (pytorchvideo "
                          f"baselines) model.pretrained={PYTORCHVIDEO_PREFIX}slowfast_r50")


def check_train(cfg: DictConfig) -> None:
    """Everything ``train.py`` reads."""
    check_model(cfg)
    _check_sections(cfg, ("optim", "sched", "logger", "trainer", "test"))
    check_data(cfg)
    check_device(cfg)
    resume = cfg.trainer.resume
    if resume not in (None, "auto", "none") and not os.path.isfile(str(resume)):
        raise ConfigError(f"trainer.resume: checkpoint not found: {resume}. "
                          "Fix: trainer.resume=auto, trainer.resume=none or a path to a .pt file")


def check_eval(cfg: DictConfig) -> None:
    """Everything ``eval.py`` reads before it opens the checkpoint."""
    _check_sections(cfg, ("logger", "trainer", "test", "predict"))
    check_options(cfg, "", OmegaConf.get_type(cfg))
    check_device(cfg)
    if cfg.model is not None:
        check_model(cfg)
    if "name" in cfg.data:  # data=<dataset>, not the run's (data=run)
        check_data(cfg, need_train=False)
    else:
        check_options(cfg.data, "data", OmegaConf.get_type(cfg.data))
    if cfg.checkpoint is None:
        raise ConfigError("checkpoint is not set. Fix: python eval.py checkpoint=outputs/<run>/checkpoints/best.pt")
    if str(cfg.checkpoint).startswith(PYTORCHVIDEO_PREFIX):
        if cfg.model is None:
            raise ConfigError(f"checkpoint={cfg.checkpoint} needs the model it is the weights of. "
                              "Fix: +experiment=ptv_<model>_k400 (or model=<name> data=kinetics400)")
    elif not os.path.isfile(str(cfg.checkpoint)):
        raise ConfigError(f"checkpoint: file not found: {cfg.checkpoint}. Fix: checkpoint=/path/to/best.pt")
    exported = str(cfg.checkpoint).endswith((".onnx", ".pt2"))
    if cfg.runtime == "onnxruntime" and not str(cfg.checkpoint).endswith(".onnx"):
        raise ConfigError(f"runtime=onnxruntime runs an exported .onnx file, not {cfg.checkpoint}. Fix: python -m "
                          f"video_sparse.export checkpoint={cfg.checkpoint}, then eval.py checkpoint=<that .onnx>")
    if exported and (cfg.model is not None or "name" in cfg.data):
        raise ConfigError(f"{cfg.checkpoint} is an exported model: it brings its model and classes (and its run's "
                          "data config). Fix: leave model and data unset (data.root=... and data.val_ann=... may "
                          "point elsewhere)")
    if cfg.runtime == "torch" and str(cfg.checkpoint).endswith(".onnx"):
        raise ConfigError(f"runtime=torch cannot run the ONNX file {cfg.checkpoint}. Fix: runtime=auto (onnxruntime), "
                          "or the training checkpoint it was exported from")
    if exported and cfg.weights != "auto":
        raise ConfigError(f"weights={cfg.weights}: {cfg.checkpoint} holds the weights it was exported with. "
                          "Fix: weights=auto")
    _check_predict(cfg.predict)
    if cfg.features and exported:
        raise ConfigError(f"features=true: the exported {cfg.checkpoint} outputs logits only. Fix: checkpoint=<the "
                          "train.py checkpoint it was exported from>")
    if cfg.features and cfg.predict.window is not None:
        raise ConfigError("features=true and predict.window: features are per video, a timeline per window. "
                          "Fix: drop one of them")


def _check_predict(predict: DictConfig) -> None:
    paths = predict.paths
    paths = [paths] if isinstance(paths, str) else list(paths or [])
    for p in paths:
        if not os.path.isfile(str(p)):
            raise ConfigError(f"predict: video not found: {p}. Fix: predict='[a.mp4,b.webm]' with existing files")
    if predict.window is None:
        if predict.stride is not None:
            raise ConfigError(f"predict.stride={predict.stride} needs predict.window (seconds per window). "
                              "Fix: add predict.window=<seconds>")
        return
    if not paths:
        raise ConfigError(f"predict.window={predict.window}: a timeline needs a video. "
                          f"Fix: predict=/path/long.mp4 predict.window={predict.window}")
    listed = [p for p in paths if Path(str(p)).suffix.lower() in ANNOTATION_SUFFIXES]
    if listed:
        raise ConfigError(f"predict.window: timelines are made of video files, {listed[0]} is an annotation file. "
                          "Fix: predict='[a.mp4,b.mp4]' with the videos")


def check_export(cfg: DictConfig) -> None:
    """Everything ``python -m video_sparse.export`` reads before it opens the checkpoint."""
    check_options(cfg, "", OmegaConf.get_type(cfg))
    if cfg.model is not None:
        check_model(cfg)
    if "name" in cfg.data:
        check_data(cfg, need_train=False)
    else:
        check_options(cfg.data, "data", OmegaConf.get_type(cfg.data))
    if cfg.checkpoint is None and cfg.model is None:
        raise ConfigError("nothing to export. Fix: checkpoint=outputs/<run>/checkpoints/best.pt, or model=<name> "
                          "(a registered model, with model.pretrained=<weights> if any)")
    if cfg.checkpoint is not None and not str(cfg.checkpoint).startswith(PYTORCHVIDEO_PREFIX) \
            and not os.path.isfile(str(cfg.checkpoint)):
        raise ConfigError(f"checkpoint: file not found: {cfg.checkpoint}. Fix: checkpoint=/path/to/best.pt")
    if cfg.output is not None and not str(cfg.output).endswith(f".{cfg.format}"):
        raise ConfigError(f"output={cfg.output} does not end in .{cfg.format} (format={cfg.format}). "
                          f"Fix: output={Path(str(cfg.output)).with_suffix('.' + cfg.format)}")


def check_scan(cfg: DictConfig) -> None:
    check_options(cfg, "", OmegaConf.get_type(cfg))
    if cfg.videos is None:
        check_data(cfg, need_train=False)
    else:  # files, not a dataset: only what decoding and the clip length need
        check_options(cfg.data, "data", OmegaConf.get_type(cfg.data))
