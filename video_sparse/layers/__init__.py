from .heads import PoolHead, TemporalMeanConvHead

__all__ = ["PoolHead", "TemporalMeanConvHead"]
