"""Clip transforms on uint8 video tensors (torchvision.transforms.v2 functional ops).

Random parameters are drawn once per clip from an explicit numpy generator and applied to every
frame, so all frames of a clip get the same crop and flip, and a sample is reproducible from
(seed, epoch, index) alone.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from einops import rearrange

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def crop_origins(length: int, crop: int, num_crops: int) -> list[int]:
    """Evenly spaced crop starts along one axis (1 crop: centre; 3: start, centre, end)."""
    if num_crops == 1:
        return [(length - crop) // 2]
    return [round(i * (length - crop) / (num_crops - 1)) for i in range(num_crops)]


@dataclass
class ClipTransform:
    """uint8 frames ``(T, H, W, 3)`` -> normalised float clip ``(3, T, size, size)``.

    Training: resize the short side to ``short_side``, random ``size`` crop, optional horizontal
    flip. Evaluation: resize, then crop ``crop`` of ``num_crops`` evenly spaced along the long
    side (centre crop when ``num_crops == 1``).
    """

    size: int
    short_side: int
    train: bool = False
    flip: bool = False
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self):
        if self.short_side < self.size:
            raise ValueError(f"data.short_side ({self.short_side}) must be >= data.size ({self.size})")

    def resize(self, video: torch.Tensor) -> torch.Tensor:
        h, w = video.shape[-2:]
        scale = self.short_side / min(h, w)
        new_hw = [max(self.short_side, round(h * scale)), max(self.short_side, round(w * scale))]
        if [h, w] == new_hw:
            return video
        return TF.resize(video, new_hw, antialias=True)

    def __call__(self, frames: np.ndarray, rng: np.random.Generator | None = None, crop: int = 0,
                 num_crops: int = 1) -> torch.Tensor:
        video = self.resize(rearrange(torch.from_numpy(np.ascontiguousarray(frames)), "t h w c -> t c h w"))
        h, w = video.shape[-2:]
        if self.train:
            rng = rng or np.random.default_rng()
            top, left = int(rng.integers(0, h - self.size + 1)), int(rng.integers(0, w - self.size + 1))
            video = TF.crop(video, top, left, self.size, self.size)
            if self.flip and rng.random() < 0.5:
                video = TF.horizontal_flip(video)
        else:
            if h >= w:
                top, left = crop_origins(h, self.size, num_crops)[crop], (w - self.size) // 2
            else:
                top, left = (h - self.size) // 2, crop_origins(w, self.size, num_crops)[crop]
            video = TF.crop(video, top, left, self.size, self.size)
        video = TF.normalize(video.float().div_(255), list(self.mean), list(self.std))
        return rearrange(video, "t c h w -> c t h w")
