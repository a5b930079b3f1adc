from .build import DataInfo, build_dataset, build_predict_dataset, resolve_data
from .dataset import VideoDataset, VideoRecord, read_class_names, read_path_label_list
from .decode import VideoDecodeError, read_frames

__all__ = ["DataInfo", "build_dataset", "build_predict_dataset", "resolve_data", "VideoDataset", "VideoRecord",
           "read_class_names", "read_path_label_list", "VideoDecodeError", "read_frames"]
