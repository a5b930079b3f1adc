"""Models: the registry and its named variants (torch-free until a model is built), the families,
and weight loading."""
from . import zoo  # noqa: F401  (the named variants)
from .registry import ModelError, build_model, list_models, model_from_config

__all__ = ["ModelError", "build_model", "list_models", "model_from_config", "load_pretrained", "LoadReport",
           "VideoModel"]


def __getattr__(name: str):  # these import torch
    if name in ("load_pretrained", "LoadReport"):
        from . import weights
        return getattr(weights, name)
    if name == "VideoModel":
        from .contract import VideoModel
        return VideoModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
