from .registry import build_model, list_models, register_model
from .weights import LoadReport, load_pretrained
from . import c2d  # noqa: F401  (registers the C2D family)

__all__ = ["build_model", "list_models", "register_model", "load_pretrained", "LoadReport"]
