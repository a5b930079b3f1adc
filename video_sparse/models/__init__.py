from .registry import build_model, list_models, register_model
from .weights import LoadReport, load_pretrained
from . import biformer, c2d, dilateformer, sifa_transformer  # noqa: F401  (register the families)

__all__ = ["build_model", "list_models", "register_model", "load_pretrained", "LoadReport"]
