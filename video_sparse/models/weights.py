"""Loading weights into a model: the one place where checkpoint formats are handled."""
from __future__ import annotations

import logging
import os
import pickle
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from ..errors import UserError

log = logging.getLogger(__name__)


class WeightsError(UserError, ValueError):
    """Weights that cannot be had: a missing file, an unknown torchvision name, no network for a
    download, a file without a state_dict. The message names the fix."""


@dataclass
class LoadReport:
    """What :func:`load_pretrained` did with each key."""

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)      # in the model, not in the checkpoint
    unexpected: list[str] = field(default_factory=list)   # in the checkpoint, not in the model
    mismatched: list[str] = field(default_factory=list)   # same key, different shape: not loaded
    dropped: list[str] = field(default_factory=list)      # removed on purpose by the format conversion

    def summary(self) -> str:
        def few(keys):
            return f" ({', '.join(keys[:8])}{', ...' if len(keys) > 8 else ''})" if keys else ""
        return (f"loaded {len(self.loaded)} tensors; missing {len(self.missing)}{few(self.missing)}; "
                f"unexpected {len(self.unexpected)}{few(self.unexpected)}; "
                f"shape-mismatched {len(self.mismatched)}{few(self.mismatched)}; "
                f"dropped by conversion {len(self.dropped)}{few(self.dropped)}")


def _state_dict_of(obj) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict):
        for key in ("model", "state_dict", "model_state", "state_dict_ema"):  # state_dict_ema: CSWin's files
            if key in obj and isinstance(obj[key], dict):
                return _state_dict_of(obj[key])
        if all(isinstance(v, torch.Tensor) for v in obj.values()):
            # DataParallel/DDP checkpoints prefix every key with "module."
            return {k.removeprefix("module."): v for k, v in obj.items()}
    raise WeightsError("model.pretrained: the checkpoint holds no state_dict (expected a dict of tensors, or one "
                       "under 'model' / 'state_dict'). Fix: model.pretrained=<a checkpoint of weights>")


def _is_official_sifa(state: dict) -> bool:
    return any(k.endswith("def_cor.weight") for k in state) or "fc_dual.weight" in state


def convert_official_sifa(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Official SIFA-Net state_dict -> this project's names: the classifiers move into the heads
    (``fc`` -> ``head.fc``, ``fc_dual`` -> ``head_dual.fc``) and the frozen ``def_cor.weight``
    constants (the 1/C scale, shaped for one clip length) are dropped, so the model runs at any T.
    Returns the converted state and the dropped keys."""
    out, dropped = {}, []
    for k, v in state.items():
        if k.endswith("def_cor.weight"):
            dropped.append(k)
            continue
        if k.startswith("fc."):
            k = "head." + k
        elif k.startswith("fc_dual."):
            k = "head_dual.fc." + k[len("fc_dual."):]
        out[k] = v
    return out, sorted(dropped)


def _is_torchvision_resnet(state: dict) -> bool:
    w = state.get("conv1.weight")
    return w is not None and w.ndim == 4 and "layer1.0.conv1.weight" in state


def inflate_resnet(state: dict[str, torch.Tensor], model: nn.Module,
                   stem_init: str = "center") -> tuple[dict[str, torch.Tensor], list[str]]:
    """A torchvision ImageNet ResNet state_dict -> C2D weights for ``model``.

    2D ``k x k`` kernels become ``1 x k x k``; the stem's ``7 x 7`` becomes ``ts x 7 x 7`` (``ts``
    read from the model) with the 2D kernel at temporal index ``ts // 2`` and zeros elsewhere
    (``stem_init="center"``, official) or repeated and divided by ``ts`` (``"repeat"``);
    ``layer4.*`` is copied into ``layer4_dual.*`` when the model has a dual branch; ``fc`` is
    dropped (a new classifier is trained). Returns the inflated state and the dropped keys.
    """
    if stem_init not in ("center", "repeat"):
        raise ValueError(f"stem_init must be 'center' or 'repeat', got {stem_init!r}")
    own = model.state_dict()
    out, dropped = {}, []
    for k, v in state.items():
        if k.startswith("fc."):
            dropped.append(k)
            continue
        if v.ndim == 4:
            if k == "conv1.weight" and "conv1.weight" in own:
                ts = own[k].shape[2]
                if stem_init == "center":
                    w = v.new_zeros(*v.shape[:2], ts, *v.shape[2:])
                    w[:, :, ts // 2] = v
                else:
                    w = v.unsqueeze(2).repeat(1, 1, ts, 1, 1) / ts
                v = w
            else:
                v = v.unsqueeze(2)
        out[k] = v
    if any(k.startswith("layer4_dual.") for k in own):
        out.update({"layer4_dual." + k[len("layer4."):]: v for k, v in out.items() if k.startswith("layer4.")})
    return out, sorted(dropped)


TORCHVISION_PREFIX = "torchvision:"
# Downloaded weights, and the copies in torch's hub cache (shared, writable by others), are loaded as
# tensors only: a file that would run code is refused. A URL that names a hash is checked on download.
HUB_SAFE = dict(weights_only=True, check_hash=True)


def needs_python_global(error: pickle.UnpicklingError) -> bool:
    """Whether ``torch.load(weights_only=True)`` refused a pickle because it calls a Python global
    (torch names it: ``GLOBAL posix.system``): a file that would run code, not unreadable bytes."""
    return "GLOBAL" in str(error)


def _tensors_only(load, source: str, fix: str):
    """``load()`` (a ``torch.load`` with ``weights_only=True``) of the weights file ``source``; what it
    refuses in one line: a file that would run code, or one that is not a torch file at all."""
    try:
        return load()
    except pickle.UnpicklingError as e:
        if needs_python_global(e):
            raise WeightsError(f"model.pretrained: {source} holds more than tensors, and loading it would run code: "
                               f"refused. Fix: {fix}") from e
        raise WeightsError(f"model.pretrained: {source} is not a weights file torch can read. Fix: {fix}") from e


def _hub_weights(url: str, load):
    """``load()`` of ``url``'s weights from torch's hub cache (downloaded there first if missing)."""
    cached = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(url.split("?")[0]))
    return _tensors_only(load, f"{cached} (the hub cache's copy of {url})", "delete that file (a new download "
                         "replaces it), or check who can write to the hub cache ($TORCH_HOME)")


def torchvision_state_dict(weights_name: str) -> dict[str, torch.Tensor]:
    """State dict of torchvision weights by name, e.g. ``ResNet101_Weights.IMAGENET1K_V2``."""
    import torchvision

    try:
        weights = torchvision.models.get_weight(weights_name)
    except (KeyError, ValueError, AttributeError) as e:
        raise WeightsError(f"model.pretrained: unknown torchvision weights {weights_name!r}. "
                           f"Fix: model.pretrained={TORCHVISION_PREFIX}ResNet50_Weights.IMAGENET1K_V1 (or "
                           "ResNet101_Weights.IMAGENET1K_V2, ...)") from e
    try:
        return _hub_weights(weights.url, lambda: weights.get_state_dict(progress=True, **HUB_SAFE))
    except OSError as e:  # URLError is an OSError: no network
        raise WeightsError(f"model.pretrained: cannot download torchvision weights {weights_name} ({e}). Fix: download "
                           f"{weights.url} where there is network and pass model.pretrained=/path/to/the/file.pth"
                           ) from e


PYTORCHVIDEO_PREFIX = "pytorchvideo:"


def pytorchvideo_zoo_urls() -> dict[str, str]:
    """pytorchvideo's Kinetics-400 zoo checkpoints by hub name (``slowfast_r50``, ``c2d_r50``, ...)."""
    from pytorchvideo.models.hub import csn, r2plus1d, resnet, slowfast, vision_transformers, x3d

    urls = {}
    for module in (x3d, resnet, slowfast, r2plus1d, csn, vision_transformers):
        urls.update(module.checkpoint_paths)
    return urls


def pytorchvideo_state_dict(name: str) -> dict[str, torch.Tensor]:
    """A pytorchvideo zoo checkpoint by hub name, downloaded once into torch's hub cache."""
    urls = pytorchvideo_zoo_urls()
    if name not in urls:
        raise WeightsError(f"model.pretrained: unknown pytorchvideo checkpoint {name!r}. "
                           f"Fix: model.pretrained={PYTORCHVIDEO_PREFIX}<one of {', '.join(sorted(urls))}>")
    try:
        return _hub_weights(urls[name], lambda: torch.hub.load_state_dict_from_url(urls[name], map_location="cpu",
                                                                                   progress=True, **HUB_SAFE))
    except OSError as e:  # URLError is an OSError: no network
        raise WeightsError(f"model.pretrained: cannot download pytorchvideo's {name} ({e}). Fix: download {urls[name]} "
                           "where there is network and pass model.pretrained=/path/to/the/file.pyth") from e


def load_pretrained(model: nn.Module, path_or_state_dict: str | os.PathLike | dict, strict: bool = False,
                    stem_init: str = "center") -> LoadReport:
    """Load into ``model``: a checkpoint of this project, a plain state_dict, an official SIFA-Net
    checkpoint (converted by :func:`convert_official_sifa`), a torchvision ImageNet ResNet
    (inflated by :func:`inflate_resnet` with ``stem_init``), also by torchvision weights name:
    ``"torchvision:ResNet50_Weights.IMAGENET1K_V1"`` (downloaded once into torch's hub cache), or
    an official ImageNet checkpoint of BiFormer, DilateFormer, CSWin, Slide-Swin, DAT or DPT: as it
    is into the image backbones, through the video model's ``image_state_to_video`` (prefix,
    dual-branch copy, classifier dropped) into the per-frame ``sifa_*`` / ``c2d_*`` transformers,
    or a pytorchvideo Kinetics zoo checkpoint (a file, or by hub name: ``"pytorchvideo:slowfast_r50"``)
    into the pytorchvideo baselines, through their ``zoo_state_to_model`` (the classifier is dropped
    for another class count).

    Tensors whose shape differs from the model's (e.g. a classifier for another number of
    classes) are skipped and reported. Prints and returns a :class:`LoadReport`; with
    ``strict=True`` any missing, unexpected or mismatched key raises instead.
    """
    source = path_or_state_dict
    if isinstance(source, str) and source.startswith(TORCHVISION_PREFIX):
        source = torchvision_state_dict(source[len(TORCHVISION_PREFIX):])
    elif isinstance(source, str) and source.startswith(PYTORCHVIDEO_PREFIX):
        source = pytorchvideo_state_dict(source[len(PYTORCHVIDEO_PREFIX):])
    if not isinstance(source, dict):
        if not os.path.isfile(source):
            raise WeightsError(f"model.pretrained: weights not found: {source}. "
                               "Fix: model.pretrained=/path/to/weights.pt")
        source = _tensors_only(lambda path=source: torch.load(path, map_location="cpu", weights_only=True), source,
                               "re-save its state_dict (torch.save(model.state_dict(), ...)) where you trust the "
                               "file, and pass that")
    state = _state_dict_of(source)
    dropped: list[str] = []
    if _is_official_sifa(state):
        state, dropped = convert_official_sifa(state)
    elif _is_torchvision_resnet(state):
        state, dropped = inflate_resnet(state, model, stem_init)
    elif hasattr(model, "image_state_to_video") and not any(k.startswith("backbone.") for k in state):
        # an image checkpoint (official names) into a per-frame video model
        state, dropped = model.image_state_to_video(state)
    elif hasattr(model, "zoo_state_to_model") and not any(k.startswith("net.") for k in state):
        state, dropped = model.zoo_state_to_model(state)  # pytorchvideo's names
    own = model.state_dict()
    report = LoadReport(dropped=dropped)
    to_load = {}
    for k, v in state.items():
        if k not in own:
            report.unexpected.append(k)
        elif own[k].shape != v.shape:
            report.mismatched.append(f"{k}: {tuple(v.shape)} vs model {tuple(own[k].shape)}")
        else:
            to_load[k] = v
            report.loaded.append(k)
    report.missing = [k for k in own if k not in state]
    if strict and (report.missing or report.unexpected or report.mismatched):
        raise RuntimeError(f"strict loading failed: {report.summary()}")
    model.load_state_dict(to_load, strict=False)
    log.info("load_pretrained: %s", report.summary())
    print(f"load_pretrained: {report.summary()}")
    return report
