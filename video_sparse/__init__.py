"""video_sparse: video action recognition with inter-frame (SIFA) and sparse spatial attention."""
from .models import build_model, list_models, model_from_config

__version__ = "0.1.0"
__all__ = ["Recognizer", "build_model", "list_models", "load_pretrained", "model_from_config", "__version__"]


def __getattr__(name: str):  # these import torch; the rest of the package's top does not
    if name == "load_pretrained":
        from .models.weights import load_pretrained
        return load_pretrained
    if name == "Recognizer":
        from .engine.recognizer import Recognizer
        return Recognizer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
