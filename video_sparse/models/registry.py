"""Registry of named models: ``build_model(name, num_classes=..., **overrides)``, and the one way to
build a model from a config (:func:`model_from_config`), used by training, evaluation, prediction
and export alike. Imports no torch until a model is built."""
from __future__ import annotations

import dataclasses
import difflib
import importlib
from dataclasses import dataclass
from typing import Any, Mapping

from ..errors import UserError
from ..options import ConfigError
from .specs import Spec


class ModelError(UserError, ValueError):
    """An unknown model, an option it does not have, or options it cannot be built with."""


@dataclass(frozen=True)
class Variant:
    """A named model: its family's spec with this variant's values, and its default class count."""

    name: str
    spec: Spec
    num_classes: int
    doc: str


_VARIANTS: dict[str, Variant] = {}  # the one registry: every model, by name
# Options renamed since a checkpoint may have been written: old name -> (name now, old value -> value now).
# Stage indices count from 1 in every family (as mixer_stages, and the papers' stages 1-4).
RENAMED_OPTIONS = {"sifa": ("temporal", None),
                   "sifa_stages": ("temporal_stages", lambda stages: [s + 1 for s in stages])}  # were 0-based


def upgrade_options(options: Mapping[str, Any], known) -> dict:
    """``options`` (a model config's) with the old names of :data:`RENAMED_OPTIONS` under their names
    and values now, where ``known`` (the option names now) has them."""
    out = dict(options)
    for old, (new, convert) in RENAMED_OPTIONS.items():
        if old in out and new in known and new not in out:
            value = out.pop(old)
            out[new] = convert(value) if convert else value
    return out


def register_variant(name: str, spec: Spec, num_classes: int, doc: str) -> None:
    """Register model ``name``: its family's ``spec`` (whose ``builder`` builds it) with this
    variant's values, its default class count and a line saying what it is."""
    if name in _VARIANTS:
        raise ValueError(f"model {name!r} registered twice")
    _VARIANTS[name] = Variant(name, spec, num_classes, doc)


def list_models() -> list[str]:
    return sorted(_VARIANTS)


def variants() -> dict[str, Variant]:
    """The spec-declared models by name."""
    return dict(_VARIANTS)


def unknown_model_message(name: str) -> str:
    close = difflib.get_close_matches(str(name), list_models(), n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return f"unknown model {name!r}.{hint} Available: {', '.join(list_models())}"


def model_spec(name: str, **overrides) -> Spec:
    """The spec of model ``name`` with ``overrides``; :class:`ModelError` for an unknown model or
    option (with the close matches) and for a value outside an option's choices or bounds."""
    if name not in _VARIANTS:
        raise ModelError(unknown_model_message(name) + ". Fix: model=<one of those>")
    spec = _VARIANTS[name].spec
    known = [f.name for f in dataclasses.fields(spec)]
    overrides = upgrade_options(overrides, known)  # a checkpoint's config written before a rename
    for key in overrides:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" Did you mean {close[0]}?" if close else ""
            raise ModelError(f"model.{key} is not an option of {name}.{hint} Options: {', '.join(known)}. "
                             f"Fix: model.{close[0] if close else '<option>'}=...")
    try:
        return dataclasses.replace(spec, **overrides)
    except ConfigError as e:
        raise ModelError(str(e)) from e


def build_model(name: str, num_classes: int, pretrained: str | None = None, **overrides):
    """Build a registered model, optionally initialised from ``pretrained`` (see
    :func:`video_sparse.load_pretrained`). Video models take ``(N, 3, T, H, W)`` clips and return
    logits ``(N, num_classes)``, or a tuple of logits for multi-head models (main head first).
    A model its options cannot build raises :class:`ModelError` naming the model and the reason."""
    spec = model_spec(name, **overrides)
    module, attr = type(spec).builder.split(":")
    build = getattr(importlib.import_module(module), attr)
    try:
        model = build(spec, num_classes)
    except ValueError as e:  # the family's own check of its hyper-parameters
        raise ModelError(f"model={name} cannot be built with these options: {e}. Fix: change that option (python "
                         f"train.py model={name} --help lists every option with its value)") from e
    if pretrained is not None:
        from .weights import load_pretrained
        load_pretrained(model, pretrained)
    return model


def model_from_config(model_cfg: Mapping[str, Any], num_classes: int):
    """Build the model of a ``model`` config node (``name``, ``pretrained`` and the spec's options),
    e.g. ``cfg.model`` of a run or ``checkpoint["config"]["model"]``."""
    options = {k: v for k, v in dict(model_cfg).items() if k not in ("name", "pretrained", "_target_")}
    return build_model(model_cfg["name"], num_classes, model_cfg.get("pretrained"), **options)
