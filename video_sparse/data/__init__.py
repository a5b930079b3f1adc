from .annotations import AnnotationError, VideoRecord, load_annotation, read_class_names, read_path_label_list
from .build import DATASETS, DataInfo, build_dataset, build_predict_dataset, resolve_data
from .dataset import VideoDataset
from .decode import VideoDecodeError, read_frames
from .sampling import FrameSampler, dense_indices, segment_indices, uniform_indices

__all__ = ["AnnotationError", "VideoRecord", "load_annotation", "read_class_names", "read_path_label_list",
           "DATASETS", "DataInfo", "build_dataset", "build_predict_dataset", "resolve_data", "VideoDataset",
           "VideoDecodeError", "read_frames", "FrameSampler", "dense_indices", "segment_indices", "uniform_indices"]
