"""Data: decoding, annotations, samplers, transforms, datasets and the motion benchmark.

The names below load their modules on first use, so that torch-free parts (``sampling``,
``annotations``) can be imported without torch and torchvision."""
import importlib

_EXPORTS = {
    "AnnotationError": "annotations", "VideoRecord": "annotations", "load_annotation": "annotations",
    "read_class_names": "annotations", "read_path_label_list": "annotations", "DATASETS": "annotations",
    "DataInfo": "build", "build_dataset": "build", "build_predict_dataset": "build", "resolve_data": "build",
    "dataset_classes": "build", "build_decoded_dataset": "build", "build_window_clips": "build",
    "VideoDataset": "dataset", "DecodedVideos": "dataset", "VideoDecodeError": "decode", "read_frames": "decode",
    "video_info": "decode", "VideoInfo": "decode",
    "FrameSampler": "sampling", "dense_indices": "sampling", "segment_indices": "sampling",
    "uniform_indices": "sampling",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
