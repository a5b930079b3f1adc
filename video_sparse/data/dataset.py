"""Annotation lists and the map-style video dataset shared by every data source."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .decode import VideoDecodeError, read_frames
from .sampling import uniform_indices
from .transforms import ClipTransform

log = logging.getLogger(__name__)


class AnnotationError(ValueError):
    """An annotation file is missing or malformed."""


@dataclass(frozen=True)
class VideoRecord:
    path: str   # absolute or relative to the dataset root
    label: int  # -1 when unknown (prediction)


def read_path_label_list(ann_file: str | os.PathLike, root: str | os.PathLike | None = None) -> list[VideoRecord]:
    """Read a ``path label`` list (one video per line; the label is the last field, so paths may
    contain spaces). Relative paths are joined to ``root`` (default: the list's folder)."""
    ann_file = Path(ann_file)
    if not ann_file.is_file():
        raise AnnotationError(f"annotation file not found: {ann_file}")
    base = Path(root) if root else ann_file.parent
    records = []
    for lineno, line in enumerate(ann_file.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.rsplit(None, 1)
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise AnnotationError(f"{ann_file}:{lineno}: expected 'path label' with an integer label, got {line!r}")
        records.append(VideoRecord(str(base / parts[0]), int(parts[1])))
    if not records:
        raise AnnotationError(f"{ann_file}: no videos listed")
    return records


def read_class_names(path: str | os.PathLike) -> list[str]:
    """One class name per line, in label order."""
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(f"class-name file not found: {path}")
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not names:
        raise AnnotationError(f"{path}: no class names")
    return names


class VideoDataset(Dataset):
    """Decodes, samples and transforms the videos of an annotation list.

    Failure policy: in training an unreadable video is replaced by another (random, reproducible)
    index and counted in the sample's ``failed`` field, so an epoch never dies on one bad file. In
    evaluation it is returned with ``valid=False`` and a zero clip, so the caller excludes and
    reports it; evaluation never replaces a video silently.

    Sample: ``{"video": (3, T, S, S) in training or (V, 3, T, S, S) with V = clips x crops in
    evaluation, "label", "index", "path", "valid", "failed"}``.
    """

    def __init__(self, records: list[VideoRecord], transform: ClipTransform, frames: int, *, train: bool,
                 clips: int = 1, crops: int = 1, seed: int = 0, max_retries: int = 10,
                 backends: tuple[str, ...] = ("decord", "pyav")):
        self.records, self.transform, self.frames, self.train = records, transform, frames, train
        self.clips, self.crops, self.seed, self.max_retries = clips, crops, seed, max_retries
        self.backends = tuple(backends)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.records)

    def _load(self, index: int, rng: np.random.Generator) -> torch.Tensor:
        path = self.records[index].path
        if self.train:
            frames = read_frames(path, lambda n: uniform_indices(n, self.frames), self.backends)
            return self.transform(frames, rng)
        views = []
        for c in range(self.clips):
            frames = read_frames(path, lambda n: uniform_indices(n, self.frames, view=c, num_views=self.clips),
                                 self.backends)
            views += [self.transform(frames, crop=k, num_crops=self.crops) for k in range(self.crops)]
        return torch.stack(views)

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        failed, current = 0, index
        while True:
            try:
                video = self._load(current, rng)
                break
            except VideoDecodeError as e:
                log.warning("skipping unreadable video: %s", e)
                if not self.train:
                    size = self.transform.size
                    video = torch.zeros(self.clips * self.crops, 3, self.frames, size, size)
                    return self._sample(video, index, valid=False, failed=1)
                failed += 1
                if failed > self.max_retries:
                    raise RuntimeError(f"{failed} unreadable videos in a row (last: {e}); "
                                       "check data.root and the annotation files") from e
                current = int(rng.integers(len(self.records)))
        return self._sample(video, current, valid=True, failed=failed)

    def _sample(self, video, index, valid, failed):
        rec = self.records[index]
        return {"video": video, "label": rec.label, "index": index, "path": rec.path,
                "valid": valid, "failed": failed}
