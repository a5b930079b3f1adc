from .frame_skip import skip_frames
from .heads import PoolHead, TemporalMeanConvHead, build_head

__all__ = ["PoolHead", "TemporalMeanConvHead", "build_head", "skip_frames"]
