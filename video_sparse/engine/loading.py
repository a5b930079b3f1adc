"""A model ready for inference from what a user has: a ``train.py`` checkpoint, a file of
``python -m video_sparse.export`` (.onnx / .pt2), or a weights file (a state dict, a pytorchvideo
zoo name) with the model and dataset it belongs to; with its class names and data config."""
from __future__ import annotations

import json
from typing import Any, NamedTuple

from omegaconf import DictConfig, OmegaConf

from ..data.config import DataConfig, DataOverrides, MotionDataConfig, refuse_motion_root
from ..options import ConfigError


class LoadedModel(NamedTuple):
    model: Any           # an nn.Module, or an ExportedModel behind the same call
    data_cfg: DictConfig  # what its clips are made with (sampling, size, normalisation) and where its data is
    class_names: list[str]
    class_source: str    # where class_names come from, for messages
    weights: str         # ema | model | file | "<weights> (<format>)" of an export
    model_name: str


def checkpoint_data_config(train_data: dict, overrides: DictConfig | dict) -> DictConfig:
    """The run's data config with ``data.*`` overrides (null: keep), completed by the schema's
    defaults for keys a checkpoint of an older video_sparse lacks."""
    schema = MotionDataConfig if train_data.get("name") == "motion" else DataConfig
    if schema is MotionDataConfig:
        refuse_motion_root(overrides.get("root"))
    known = {k: v for k, v in train_data.items() if k in schema.__dataclass_fields__}
    return OmegaConf.merge(OmegaConf.structured(schema), known, {k: v for k, v in overrides.items() if v is not None})


def load_for_inference(checkpoint: str, *, model: DictConfig | None = None, data: DictConfig | None = None,
                       weights: str = "auto", device: str = "cpu", trust_pt2: bool = False) -> LoadedModel:
    """The model with ``checkpoint``'s weights (on the CPU; exported files run on ``device``), the
    data config and class list to evaluate with (reads no video, generates nothing).

    A training checkpoint brings its model and class list (labels map to the ids the model was
    trained with), and its data config, with ``data`` (a :class:`DataOverrides`, None: none)
    applied, unless ``data`` is a whole dataset config. Any other weights file (a pytorchvideo zoo
    checkpoint, a state_dict) needs ``model`` (a model config) and a dataset config as ``data``
    (the class list from its ``labels`` or ``train_ann``), and must fill every tensor of the model.
    ``weights``: auto (the EMA when the run kept one) | ema | model. A ``.pt2`` program loads only
    with ``trust_pt2`` (its loading unpickles, which can run code); ``.onnx`` always.
    """
    from ..models.weights import PYTORCHVIDEO_PREFIX
    from .checkpoint import load_checkpoint

    data = OmegaConf.structured(DataOverrides) if data is None else data
    name = str(checkpoint)
    if name.endswith((".onnx", ".pt2")):
        return _load_exported(name, data, device, trust_pt2)
    # pytorchvideo:<hub name> is downloaded by load_pretrained
    ckpt = None if name.startswith(PYTORCHVIDEO_PREFIX) else load_checkpoint(name)
    own_data = OmegaConf.get_type(data) is not DataOverrides
    if ckpt is not None and all(key in ckpt for key in ("model", "config", "class_names")):
        return _from_training_checkpoint(name, ckpt, model, data if own_data else None, data, weights)
    if model is None or not own_data:
        raise ConfigError(f"checkpoint: {name} is a weights file, not a train.py checkpoint, so it names neither "
                          "model nor classes. Fix: add model=<name> data=<dataset> (with data.labels or "
                          "data.train_ann for the class list), or +experiment=ptv_<model>_k400 for a pytorchvideo zoo "
                          "file")
    return _from_weights_file(name, ckpt, model, data, weights)


def _from_training_checkpoint(name: str, ckpt: dict, model: DictConfig | None, own_data: DictConfig | None,
                              overrides: DictConfig, weights: str) -> LoadedModel:
    from ..models import model_from_config
    from .checkpoint import CheckpointError
    from .ema import ema_weights

    if model is not None:
        raise ConfigError(f"model={model.name}: {name} is a training checkpoint and brings its model "
                          f"({ckpt['config']['model']['name']}). Fix: leave model unset")
    class_names = ckpt["class_names"]
    net = model_from_config(ckpt["config"]["model"], len(class_names))
    if weights == "ema" and not ckpt.get("ema"):
        raise CheckpointError(f"{name}: weights=ema but the run kept no EMA (trainer.ema_decay was null). "
                              "Fix: weights=auto or weights=model")
    use_ema = weights == "ema" or (weights == "auto" and bool(ckpt.get("ema")))
    net.load_state_dict(ema_weights(ckpt) if use_ema else ckpt["model"])
    data_cfg = own_data if own_data is not None else checkpoint_data_config(ckpt["config"]["data"], overrides)
    return LoadedModel(net, data_cfg, class_names, f"the checkpoint {name}", "ema" if use_ema else "model",
                       ckpt["config"]["model"]["name"])


def _from_weights_file(name: str, ckpt: dict | None, model: DictConfig, data: DictConfig, weights: str) -> LoadedModel:
    from ..data import dataset_classes
    from ..models import load_pretrained, model_from_config
    from .checkpoint import CheckpointError

    if weights == "ema":
        raise ConfigError(f"weights=ema: {name} is a weights file without an EMA. Fix: weights=auto")
    class_names, class_source = dataset_classes(data)
    net = model_from_config({**model, "pretrained": None}, len(class_names))
    loaded = load_pretrained(net, name if ckpt is None else ckpt)
    if loaded.missing or loaded.unexpected or loaded.mismatched or loaded.dropped:
        raise CheckpointError(f"{name} does not fit model={model.name} with {len(class_names)} classes "
                              f"({class_source}): {loaded.summary()}. Fix: the model=<name> those weights were "
                              "trained as, and the class list they were trained on (data.labels)")
    return LoadedModel(net, data, class_names, class_source, "file", model.name)


def _load_exported(name: str, overrides: DictConfig, device: str, trust_pt2: bool) -> LoadedModel:
    """A file of ``python -m video_sparse.export``: onnxruntime (.onnx) or the torch.export program
    (.pt2), with the class names and data config it stored."""
    from .checkpoint import CheckpointError
    from .export import ExportedModel

    model = ExportedModel(name, device, trusted=trust_pt2)
    if "class_names" not in model.metadata or "data" not in model.metadata:
        raise CheckpointError(f"{name}: not written by video_sparse.export (no class names or data config in it). "
                              "Fix: python -m video_sparse.export checkpoint=<the train.py checkpoint>")
    meta = {k: json.loads(v) for k, v in model.metadata.items()}
    data_cfg = checkpoint_data_config(meta["data"], overrides)
    return LoadedModel(model, data_cfg, meta["class_names"], f"the exported {name}",
                       f"{meta.get('weights', '?')} ({model.format})", meta.get("model", "?"))
