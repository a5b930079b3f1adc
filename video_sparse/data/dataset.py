"""The map-style video dataset shared by every data source (decode, sample, transform, failure policy)."""
from __future__ import annotations

import logging

import numpy as np
import torch
from torch.utils.data import Dataset

# Annotation types live in .annotations; re-exported here, where the first data path defined them.
from .annotations import AnnotationError, VideoRecord, read_class_names, read_path_label_list  # noqa: F401
from .decode import VideoDecodeError, read_frames
from .frame_cache import FrameCache
from .sampling import FrameSampler
from .transforms import ClipTransform

log = logging.getLogger(__name__)


class VideoDataset(Dataset):
    """Decodes, samples and transforms the videos of an annotation list.

    Failure policy: in training an unreadable video is replaced by another (random, reproducible)
    index and counted in the sample's ``failed`` field, so an epoch never dies on one bad file. In
    evaluation it is returned with ``valid=False`` and a zero clip, so the caller excludes and
    reports it; evaluation never replaces a video silently.

    Sample: ``{"video": uint8 (T, S, S, 3) in training or (V, T, S, S, 3) with V = clips x crops
    in evaluation, "label", "index", "path", "valid", "failed"}``, and in training ``"erase"`` (the
    clip's random-erasing draw). ``dataset.transform.to_model`` turns a batch's ``video`` (and
    ``erase``) into the model's normalised float input on its device (see :class:`ClipTransform`).

    Videos are read by ``decoder`` (see :mod:`.decode`). Frames are chosen by a
    :class:`FrameSampler` (``sampling``, ``frames``, ``interval``, ``short_video``: see
    :mod:`.sampling`); in evaluation ``clips`` temporal views x ``crops``
    spatial crops. ``missing`` lists the annotated videos that were not on disk (already skipped).
    ``frame_cache`` (``uniform`` sampling in training): decoded frames are kept for later epochs.
    ``flip_labels`` (training): None, or the label each class takes when its clip is mirrored
    (-1: never mirror it; see :func:`~.transforms.horizontal_flip_labels`); a clip is mirrored with
    probability 1/2.
    """

    def __init__(self, records: list[VideoRecord], transform: ClipTransform, frames: int, *, train: bool,
                 clips: int = 1, crops: int = 1, seed: int = 0, max_retries: int = 10,
                 decoder: str = "auto", sampling: str = "uniform", interval: int = 1,
                 short_video: str = "loop", missing: list[str] | None = None,
                 frame_cache: FrameCache | None = None, flip_labels: list[int] | None = None):
        self.records, self.transform, self.frames, self.train = records, transform, frames, train
        self.clips, self.crops, self.seed, self.max_retries = clips, crops, seed, max_retries
        self.decoder = decoder
        self.sampler = FrameSampler(sampling, frames, interval, short_video)
        self.missing = list(missing or [])
        if frame_cache is not None and train and sampling != "uniform":
            raise ValueError(f"a frame cache needs the same frames every epoch (sampling 'uniform'), got {sampling!r}")
        self.frame_cache = frame_cache
        self.flip_labels = flip_labels
        # In shared memory: persistent DataLoader workers hold their own copy of the dataset and
        # must still see the epoch the main process sets.
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        self._epoch.fill_(epoch)

    def __len__(self) -> int:
        return len(self.records)

    def _read(self, index: int, view: int, choose) -> np.ndarray:
        def decode():
            return read_frames(self.records[index].path, choose, self.decoder,
                               short_side=self.transform.decode_short_side)

        return decode() if self.frame_cache is None else self.frame_cache.get(index, view, decode)

    def _load(self, index: int, rng: np.random.Generator) -> tuple[torch.Tensor, int]:
        label = self.records[index].label
        if self.train:
            frames = self._read(index, 0, lambda n: self.sampler.train_indices(n, rng))
            flip = self.flip_labels is not None and rng.random() < 0.5 and self.flip_labels[label] >= 0
            if flip:
                label = self.flip_labels[label]
            return self.transform(frames, rng, flip=flip), label
        views = []
        for c in range(self.clips):
            frames = self._read(index, c, lambda n: self.sampler.eval_indices(n, view=c, num_views=self.clips))
            views += [self.transform(frames, crop=k, num_crops=self.crops) for k in range(self.crops)]
        return torch.stack(views), label

    def __getitem__(self, index: int) -> dict:
        # One generator per (seed, epoch, index): the sample does not depend on the worker or the
        # rank that loads it, and differs across epochs.
        rng = np.random.default_rng([self.seed, self.epoch, index])
        failed, current = 0, index
        while True:
            try:
                video, label = self._load(current, rng)
                break
            except VideoDecodeError as e:
                log.warning("%s: %s", "unreadable, replaced by another video" if self.train else "excluded", e)
                if not self.train:
                    size = self.transform.size
                    video = torch.zeros(self.clips * self.crops, self.frames, size, size, 3, dtype=torch.uint8)
                    return self._sample(video, index, self.records[index].label, valid=False, failed=1)
                failed += 1
                if failed > self.max_retries:
                    raise RuntimeError(f"{failed} unreadable videos in a row (last: {e}); "
                                       "check data.root and the annotation files") from e
                current = int(rng.integers(len(self.records)))
        sample = self._sample(video, current, label, valid=True, failed=failed)
        if self.train:
            sample["erase"] = self.transform.draw_erase(rng)
        return sample

    def _sample(self, video, index, label, valid, failed):
        return {"video": video, "label": label, "index": index, "path": self.records[index].path,
                "valid": valid, "failed": failed}


def decoded_frames(video, what: str) -> np.ndarray:
    """``video`` (numpy or torch) as uint8 RGB frames ``(T, H, W, 3)``; anything else is one
    ValueError naming ``what``."""
    frames = video.numpy() if isinstance(video, torch.Tensor) else np.asarray(video)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or not len(frames):
        raise ValueError(f"{what}: frames must be uint8 RGB (T, H, W, 3) with T >= 1, got {frames.dtype} "
                         f"{tuple(frames.shape)}")
    return frames


class DecodedVideos(VideoDataset):
    """Videos already decoded, evaluated like files: ``videos`` are uint8 RGB frames ``(T, H, W, 3)``
    (numpy arrays or tensors, any size: the transform resizes them), every frame of each video in
    order. Sampling, views and transform are those of a :class:`VideoDataset` with the same
    arguments (``train=False``); ``path`` of a sample is ``<frames i>``."""

    def __init__(self, videos, transform: ClipTransform, frames: int, **kwargs):
        self.videos = [decoded_frames(video, f"video {i}") for i, video in enumerate(videos)]
        records = [VideoRecord(f"<frames {i}>", -1) for i in range(len(self.videos))]
        super().__init__(records, transform, frames, train=False, **kwargs)

    def _read(self, index: int, view: int, choose) -> np.ndarray:
        video = self.videos[index]
        return video[np.asarray(choose(len(video)))]
