"""Registry of named models: ``build_model(name, num_classes=..., **overrides)``."""
from __future__ import annotations

import difflib
from typing import Callable

import torch.nn as nn

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: register a model constructor under its function name."""
    if fn.__name__ in _MODELS:
        raise ValueError(f"model {fn.__name__!r} registered twice")
    _MODELS[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    return sorted(_MODELS)


def unknown_model_message(name: str) -> str:
    close = difflib.get_close_matches(name, _MODELS, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return f"unknown model {name!r}.{hint} Available: {', '.join(list_models())}"


def build_model(name: str, num_classes: int, pretrained: str | None = None, **overrides) -> nn.Module:
    """Build a registered model, optionally initialised from ``pretrained`` (see
    :func:`video_sparse.load_pretrained`). Video models take ``(N, 3, T, H, W)`` clips and return
    logits ``(N, num_classes)``, or a tuple of logits for multi-head models (main head first)."""
    if name not in _MODELS:
        raise KeyError(unknown_model_message(name))
    model = _MODELS[name](num_classes=num_classes, **overrides)
    if pretrained is not None:
        from .weights import load_pretrained
        load_pretrained(model, pretrained)
    return model
