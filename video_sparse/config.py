"""Up-front validation of the Hydra config: every mistake a user can make in a key fails here,
before any data is generated or any model is built, with a message naming the key and the fix."""
from __future__ import annotations

import os
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf

from .models.registry import _MODELS, unknown_model_message
from .models.weights import TORCHVISION_PREFIX


class ConfigError(ValueError):
    """A config value is wrong; the message names the key and how to fix it."""


_MISSING = object()


def _get(cfg: DictConfig, key: str) -> Any:
    value = OmegaConf.select(cfg, key, default=_MISSING, throw_on_missing=False)
    if value is _MISSING:
        raise ConfigError(f"{key} is missing from the config; set it on the command line, e.g. {key}=...")
    return value


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return (isinstance(v, (int, float))) and not isinstance(v, bool)


def _check(cfg: DictConfig, key: str, ok: Callable[[Any], bool], want: str, example: str) -> None:
    value = _get(cfg, key)
    if not ok(value):
        raise ConfigError(f"{key} must be {want}, got {value!r} ({type(value).__name__}). "
                          f"Fix: {key}={example}")


def _check_file(cfg: DictConfig, key: str, required: bool, root_key: str = "data.root") -> None:
    value = OmegaConf.select(cfg, key)
    if value is None:
        if required:
            raise ConfigError(f"{key} is not set; point it to the annotation file, e.g. {key}=/path/to/file")
        return
    root = OmegaConf.select(cfg, root_key)
    path = value if os.path.isabs(str(value)) or not root else os.path.join(str(root), str(value))
    if not os.path.isfile(path):
        raise ConfigError(f"{key}: file not found: {path}. Fix: {key}=/path/to/an/existing/file")


def positive_int(v) -> bool:
    return _is_int(v) and v >= 1


def validate_common(cfg: DictConfig) -> None:
    """Keys shared by train.py and eval.py."""
    for key in ("trainer.batch_size", "test.clips", "test.crops"):
        _check(cfg, key, positive_int, "an integer >= 1", "4")
    _check_optional(cfg, "test.strict", False, lambda v: isinstance(v, bool), "true or false", "true")
    _check(cfg, "trainer.num_workers", lambda v: _is_int(v) and v >= 0, "an integer >= 0", "2")
    _check(cfg, "trainer.device", lambda v: v in ("auto", "cpu", "cuda") or str(v).startswith("cuda:"),
           "one of auto, cpu, cuda, cuda:N", "auto")
    _check(cfg, "trainer.amp", lambda v: v in ("off", "bf16", "fp16"), "one of off, bf16, fp16", "off")
    _check(cfg, "logger.mode", lambda v: v in ("offline", "online", "disabled"),
           "one of offline, online, disabled", "offline")
    if _get(cfg, "trainer.device") != "auto" and str(_get(cfg, "trainer.device")).startswith("cuda"):
        import torch
        if not torch.cuda.is_available():
            raise ConfigError("trainer.device=cuda but no CUDA device is available. Fix: trainer.device=cpu (or auto)")


def _check_optional(cfg: DictConfig, key: str, default: Any, ok: Callable[[Any], bool], want: str,
                    example: str) -> None:
    """Like :func:`_check` for keys that older configs (e.g. in checkpoints) may lack."""
    value = OmegaConf.select(cfg, key, default=default)
    if not ok(value):
        raise ConfigError(f"{key} must be {want}, got {value!r} ({type(value).__name__}). Fix: {key}={example}")


def validate_data(cfg: DictConfig, need_train: bool = True) -> None:
    from .data.build import DATASETS
    from .data.sampling import SAMPLINGS, SHORT_VIDEO_POLICIES

    for key in ("data.frames", "data.size", "data.short_side"):
        _check(cfg, key, positive_int, "an integer >= 1", "16")
    if _get(cfg, "data.short_side") < _get(cfg, "data.size"):
        raise ConfigError(f"data.short_side ({_get(cfg, 'data.short_side')}) must be >= data.size "
                          f"({_get(cfg, 'data.size')}). Fix: data.short_side={_get(cfg, 'data.size')}")
    _check_optional(cfg, "data.sampling", "uniform", lambda v: v in SAMPLINGS, f"one of {', '.join(SAMPLINGS)}",
                    "dense")
    _check_optional(cfg, "data.interval", 1, positive_int, "an integer >= 1", "4")
    _check_optional(cfg, "data.short_video", "loop", lambda v: v in SHORT_VIDEO_POLICIES,
                    f"one of {', '.join(SHORT_VIDEO_POLICIES)}", "loop")
    _check_optional(cfg, "data.num_classes", None, lambda v: v is None or positive_int(v),
                    "an integer >= 1 or null", "400")
    _check_optional(cfg, "data.cache_frames", False, lambda v: isinstance(v, bool), "true or false", "false")
    _validate_augmentation(cfg)
    name = _get(cfg, "data.name")
    if name not in DATASETS:
        raise ConfigError(f"data.name={name!r} is not a known dataset. Fix: data=<one of {', '.join(DATASETS)}>")
    if name == "motion":
        for key in ("data.train_size", "data.val_size", "data.video_frames"):
            _check(cfg, key, positive_int, "an integer >= 1", "100")
        _check(cfg, "data.video_size", lambda v: positive_int(v) and v % 2 == 0,
               "an even integer (H.264 yuv420p needs even sizes)", "64")
        _check(cfg, "data.seed", _is_int, "an integer", "0")
        if OmegaConf.select(cfg, "data.flip", default=False) is not False:
            raise ConfigError("data.flip: the motion benchmark's labels are directions (a mirrored 'moving left' moves "
                              "right, a mirrored clockwise turn is counter-clockwise). Fix: data.flip=false")
        sampling = OmegaConf.select(cfg, "data.sampling", default="uniform")
        if OmegaConf.select(cfg, "data.cache_frames") and sampling != "uniform":
            raise ConfigError("data.cache_frames=true keeps the decoded frames of uniform sampling, which are the "
                              f"same every epoch; data.sampling={sampling} draws new ones. "
                              "Fix: data.cache_frames=false")
        return
    if OmegaConf.select(cfg, "data.cache_frames"):
        raise ConfigError(f"data.cache_frames needs videos of one known size: only data=motion has them, not "
                          f"data={name}. Fix: data.cache_frames=false")
    root = OmegaConf.select(cfg, "data.root")
    if root is None or not os.path.isdir(str(root)):
        what = "is not set" if root is None else f"is not a folder: {root}"
        raise ConfigError(f"data.root {what}. Fix: data.root=/path/to/videos (annotation paths are relative to it)")
    _check_file(cfg, "data.train_ann", required=need_train)
    _check_file(cfg, "data.val_ann", required=need_train)
    _check_file(cfg, "data.test_ann", required=False)
    if name == "ssv2" and OmegaConf.select(cfg, "data.flip") is True:
        raise ConfigError("data.flip=true on SSv2 mirrors 'Pushing something from left to right' into 'right to left' "
                          "without changing its label. Fix: data.flip=swap (mirrored clips of left/right classes take "
                          "the partner class's label) or data.flip=false")
    if name == "ssv2" and OmegaConf.select(cfg, "data.labels") is None:
        raise ConfigError("data.labels is not set; SSv2 maps its templates to ids with labels.json. "
                          "Fix: data.labels=/path/to/ssv2/labels.json")
    # Kinetics takes its class list from train_ann unless data.labels names a class-name file.
    _check_file(cfg, "data.labels", required=DATASETS[name] is None)


def _is_range(v, lo, hi) -> bool:
    return (OmegaConf.is_list(v) or isinstance(v, (list, tuple))) and len(v) == 2 and all(map(_is_number, v)) \
        and lo <= v[0] <= v[1] <= hi


def _validate_augmentation(cfg: DictConfig) -> None:
    """The training augmentations of ``data`` (all optional: absent means off)."""
    from .data.randaugment import MAX_MAGNITUDE

    _check_optional(cfg, "data.flip", False, lambda v: v in (True, False, "swap"), "true, false or swap", "swap")
    size = _get(cfg, "data.size")
    _check_optional(cfg, "data.scale_jitter", None,
                    lambda v: v is None or (_is_range(v, size, float("inf")) and all(map(_is_int, v))),
                    f"null or [min, max] short sides with data.size ({size}) <= min <= max", "[256,320]")
    _check_optional(cfg, "data.resized_crop", None, lambda v: v is None or (_is_range(v, 0, 1) and v[0] > 0),
                    "null or [min, max] area fractions in (0, 1]", "[0.08,1.0]")
    _check_optional(cfg, "data.randaug_n", 0, lambda v: _is_int(v) and v >= 0, "an integer >= 0 (0 = off)", "2")
    _check_optional(cfg, "data.randaug_m", 27, lambda v: _is_number(v) and 0 <= v <= MAX_MAGNITUDE,
                    f"a number in [0, {MAX_MAGNITUDE}]", "27")
    _check_optional(cfg, "data.random_erase", 0.0, lambda v: _is_number(v) and 0 <= v <= 1,
                    "a probability in [0, 1]", "0.25")


def validate_train(cfg: DictConfig) -> None:
    """Everything train.py reads; raises :class:`ConfigError` on the first problem."""
    name = _get(cfg, "model.name")
    if name not in _MODELS:
        raise ConfigError(f"model.name: {unknown_model_message(name)}. Fix: model=<one of those>")
    validate_common(cfg)
    validate_data(cfg)
    for key in ("trainer.epochs", "trainer.accumulate"):
        _check(cfg, key, positive_int, "an integer >= 1", "10")
    _check(cfg, "trainer.seed", _is_int, "an integer", "0")
    _check(cfg, "trainer.clip_grad", lambda v: v is None or (_is_number(v) and v > 0),
           "a positive number or null", "40")
    _check(cfg, "optim.lr", lambda v: _is_number(v) and v > 0, "a positive number", "0.1")
    _check(cfg, "optim.weight_decay", lambda v: _is_number(v) and v >= 0, "a number >= 0", "1e-4")
    _check(cfg, "sched.warmup_epochs", lambda v: _is_number(v) and v >= 0, "a number >= 0", "1")
    _check(cfg, "trainer.label_smoothing", lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1)", "0.1")
    for key, example in (("trainer.mixup", "0.8"), ("trainer.cutmix", "1.0")):
        _check_optional(cfg, key, 0.0, lambda v: _is_number(v) and v >= 0, "a number >= 0 (0 = off)", example)
    for key in ("trainer.mix_prob", "trainer.mix_switch_prob"):
        _check_optional(cfg, key, 0.5, lambda v: _is_number(v) and 0 <= v <= 1, "a probability in [0, 1]", "0.5")
    for key, example in (("trainer.sync_bn", "true"), ("trainer.compile", "true"), ("trainer.channels_last", "true")):
        _check(cfg, key, lambda v: isinstance(v, bool), "true or false", example)
    _check(cfg, "trainer.ema_decay", lambda v: v is None or (_is_number(v) and 0 < v < 1),
           "null (off) or a number in (0, 1)", "0.9998")
    _check(cfg, "trainer.ema_warmup_steps", lambda v: _is_int(v) and v >= 0, "an integer >= 0", "2000")
    _check(cfg, "trainer.layer_decay", lambda v: v is None or (_is_number(v) and 0 < v <= 1),
           "null (off) or a number in (0, 1]", "0.75")
    _check(cfg, "trainer.precise_bn", lambda v: _is_int(v) and v >= 0, "a number of batches >= 0 (0 = off)", "200")
    _check(cfg, "trainer.nonfinite", lambda v: v in ("error", "skip"), "error or skip", "skip")
    for key, example in (("trainer.save_every_steps", "1000"), ("trainer.keep_epochs", "3")):
        _check(cfg, key, lambda v: _is_int(v) and v >= 0, "an integer >= 0 (0 = off)", example)
    _check(cfg, "logger.log_every", positive_int, "an integer >= 1 (optimiser steps)", "50")
    resume = _get(cfg, "trainer.resume")
    if resume not in (None, "auto", "none") and not os.path.isfile(str(resume)):
        raise ConfigError(f"trainer.resume: checkpoint not found: {resume}. "
                          "Fix: trainer.resume=auto, trainer.resume=none or a path to a .pt file")
    pretrained = OmegaConf.select(cfg, "model.pretrained")
    if pretrained is not None and not str(pretrained).startswith(TORCHVISION_PREFIX) and not os.path.isfile(str(pretrained)):
        raise ConfigError(f"model.pretrained: file not found: {pretrained}. Fix: model.pretrained=/path/to/weights.pt "
                          f"or model.pretrained={TORCHVISION_PREFIX}ResNet50_Weights.IMAGENET1K_V1")


def validate_eval(cfg: DictConfig) -> None:
    validate_common(cfg)
    ckpt = _get(cfg, "checkpoint")
    if ckpt is None:
        raise ConfigError("checkpoint is not set. Fix: python eval.py checkpoint=outputs/<run>/checkpoints/best.pt")
    if not os.path.isfile(str(ckpt)):
        raise ConfigError(f"checkpoint: file not found: {ckpt}. Fix: checkpoint=/path/to/best.pt")
    _check(cfg, "predict_topk", positive_int, "an integer >= 1", "5")
    _check_optional(cfg, "weights", "auto", lambda v: v in ("auto", "ema", "model"), "one of auto, ema, model", "ema")
    predict = _get(cfg, "predict")
    if predict is not None:
        if isinstance(predict, str):
            predict = [predict]
        for p in predict:
            if not os.path.isfile(str(p)):
                raise ConfigError(f"predict: video not found: {p}. Fix: predict='[a.mp4,b.webm]' with existing files")
