"""video_sparse: video action recognition with inter-frame (SIFA) and sparse spatial attention."""
from .models import build_model, list_models, model_from_config, register_model

__version__ = "0.1.0"
__all__ = ["build_model", "list_models", "load_pretrained", "model_from_config", "register_model", "__version__"]


def __getattr__(name: str):
    if name == "load_pretrained":  # imports torch; the rest of the package's top does not
        from .models.weights import load_pretrained
        return load_pretrained
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
