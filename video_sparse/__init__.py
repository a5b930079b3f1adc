"""video_sparse: video action recognition with inter-frame (SIFA) and sparse spatial attention."""
from .models import build_model, list_models, load_pretrained, register_model

__version__ = "0.1.0"
__all__ = ["build_model", "list_models", "load_pretrained", "register_model", "__version__"]
