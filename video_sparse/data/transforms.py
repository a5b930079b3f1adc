"""Clip transforms on uint8 video tensors (torchvision.transforms.v2 functional ops), and the
normalisation into the model's float input on its device.

Random parameters are drawn once per clip from an explicit numpy generator and applied to every
frame, so all frames of a clip get the same crop and flip, and a sample is reproducible from
(seed, epoch, index) alone.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from einops import rearrange

from .decode import scaled_size
from .randaugment import ClipRandAugment

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def crop_origins(length: int, crop: int, num_crops: int) -> list[int]:
    """Evenly spaced crop starts along one axis (1 crop: centre; 3: start, centre, end)."""
    if num_crops == 1:
        return [(length - crop) // 2]
    return [round(i * (length - crop) / (num_crops - 1)) for i in range(num_crops)]


def horizontal_flip_labels(class_names: list[str], mode: str) -> list[int] | None:
    """What a horizontal flip does to each class, for ``data.flip``.

    ``"none"``: no flips (None). ``"random"``: every class is kept (the identity). ``"swap"``: a
    class whose name says "left" or "right" becomes the class named with the two words exchanged
    (SSv2: "Pushing something from left to right" <-> "... right to left"); a class that says
    left/right but has no such partner maps to -1 and its clips are never flipped.
    """
    if mode == "none":
        return None
    identity = list(range(len(class_names)))
    if mode == "random":
        return identity
    if mode != "swap":
        raise ValueError(f"flip mode must be none, random or swap, got {mode!r}")
    index = {name: i for i, name in enumerate(class_names)}
    swapped = {"left": "right", "right": "left"}

    def mirror(name: str) -> str:
        return _SIDE.sub(lambda m: _same_case(swapped[m.group(0).lower()], m.group(0)), name)

    out = identity
    for i, name in enumerate(class_names):
        if _SIDE.search(name):
            out[i] = index.get(mirror(name), -1)
    return out


_SIDE = re.compile(r"\b(left|right)\b", re.IGNORECASE)


def _same_case(word: str, like: str) -> str:
    return word.upper() if like.isupper() else word.capitalize() if like[0].isupper() else word


def resized_crop_box(rng: np.random.Generator, h: int, w: int, area: tuple[float, float],
                     ratio: tuple[float, float]) -> tuple[int, int, int, int]:
    """RandomResizedCrop's box ``(top, left, height, width)``: a fraction ``area`` of the frame with
    aspect ratio (w / h) log-uniform in ``ratio``; 10 tries, then the largest centred box whose
    ratio is clamped to ``ratio``."""
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = h * w * rng.uniform(*area)
        aspect = math.exp(rng.uniform(*log_ratio))
        cw, ch = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            return int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1)), ch, cw
    aspect = w / h
    if aspect < ratio[0]:
        cw, ch = w, round(w / ratio[0])
    elif aspect > ratio[1]:
        ch, cw = h, round(h * ratio[1])
    else:
        cw, ch = w, h
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def erase_box(rng: np.random.Generator, h: int, w: int, area: tuple[float, float] = (0.02, 1 / 3),
              ratio: tuple[float, float] = (0.3, 1 / 0.3)) -> tuple[int, int, int, int] | None:
    """Random erasing's box ``(top, left, height, width)`` (fraction ``area`` of the frame, aspect
    log-uniform in ``ratio``), or None when 10 tries find no box that fits."""
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = h * w * rng.uniform(*area)
        aspect = math.exp(rng.uniform(*log_ratio))
        eh, ew = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < eh < h and 0 < ew < w:
            return int(rng.integers(0, h - eh + 1)), int(rng.integers(0, w - ew + 1)), eh, ew
    return None


@dataclass
class ClipTransform:
    """A clip's transform in two halves: :meth:`__call__` in the data-loading worker, uint8 frames
    ``(T, H, W, 3)`` -> uint8 clip ``(T, size, size, 3)``; :meth:`to_model` on the model's device,
    a batch of those -> the normalised float input ``(..., 3, T, size, size)``. Workers hand over
    uint8 (a quarter of float's bytes through shared memory, pinned memory and the host-to-device
    copy) and the float conversion runs where it is cheapest.

    Training, in this order, with one draw of every random parameter per clip:
      - resize the short side to ``short_side`` (or to a random length in ``scale_jitter``,
        inclusive) and take a random ``size`` crop; or, with ``resized_crop_area``,
        RandomResizedCrop of the decoded frame (area fraction ``resized_crop_area``, aspect
        ``resized_crop_ratio``) resized to ``size``;
      - a horizontal flip when the caller asks for one (the dataset decides: labels may change);
      - RandAugment (``rand_augment``) on the uint8 crop;
      - random erasing with probability ``erase_prob`` (one box of Gaussian noise in normalised
        units, the same in every frame): drawn by :meth:`draw_erase`, applied by :meth:`to_model`.
    Evaluation: resize, then crop ``crop`` of ``num_crops`` evenly spaced along the long side
    (centre crop when ``num_crops == 1``).
    """

    size: int
    short_side: int
    train: bool = False
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    scale_jitter: tuple[int, int] | None = None
    resized_crop_area: tuple[float, float] | None = None
    resized_crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    rand_augment: ClipRandAugment | None = None
    erase_prob: float = 0.0

    def __post_init__(self):
        if self.short_side < self.size:
            raise ValueError(f"data.short_side ({self.short_side}) must be >= data.size ({self.size})")
        if self.scale_jitter is not None and not self.size <= self.scale_jitter[0] <= self.scale_jitter[1]:
            raise ValueError(f"scale_jitter must be [min, max] with data.size ({self.size}) <= min <= max, "
                             f"got {list(self.scale_jitter)}")

    @property
    def decode_short_side(self) -> int | None:
        """The longest short side a clip is resized to: frames may be decoded at it without losing
        detail (:func:`~.decode.read_frames`). None with ``resized_crop_area``, which crops the frame
        as decoded."""
        if self.train and self.resized_crop_area is not None:
            return None
        return self.scale_jitter[1] if self.train and self.scale_jitter is not None else self.short_side

    def resize(self, video: torch.Tensor, short_side: int | None = None) -> torch.Tensor:
        h, w = video.shape[-2:]
        new_hw = scaled_size(h, w, short_side or self.short_side)
        if (h, w) == new_hw:
            return video
        return TF.resize(video, list(new_hw), antialias=True)

    def _train_crop(self, video: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        if self.resized_crop_area is not None:
            top, left, h, w = resized_crop_box(rng, *video.shape[-2:], self.resized_crop_area, self.resized_crop_ratio)
            return TF.resized_crop(video, top, left, h, w, [self.size, self.size], antialias=True)
        short = self.short_side if self.scale_jitter is None else int(rng.integers(self.scale_jitter[0],
                                                                                    self.scale_jitter[1] + 1))
        video = self.resize(video, short)
        h, w = video.shape[-2:]
        top, left = int(rng.integers(0, h - self.size + 1)), int(rng.integers(0, w - self.size + 1))
        return TF.crop(video, top, left, self.size, self.size)

    def __call__(self, frames: np.ndarray, rng: np.random.Generator | None = None, crop: int = 0,
                 num_crops: int = 1, flip: bool = False) -> torch.Tensor:
        """uint8 frames ``(T, H, W, 3)`` -> uint8 clip ``(T, size, size, 3)``."""
        # The frames' own channels-last memory seen as (T, C, H, W): torchvision's uint8 resize
        # keeps that layout, and the clip returns to (T, H, W, C) as a view, not a copy.
        video = rearrange(torch.from_numpy(np.ascontiguousarray(frames)), "t h w c -> t c h w")
        if self.train:
            rng = rng or np.random.default_rng()
            video = self._train_crop(video, rng)
            if flip:
                video = TF.horizontal_flip(video)
            if self.rand_augment is not None:
                video = self.rand_augment(video, rng)
        else:
            video = self.resize(video)
            h, w = video.shape[-2:]
            if h >= w:
                top, left = crop_origins(h, self.size, num_crops)[crop], (w - self.size) // 2
            else:
                top, left = (h - self.size) // 2, crop_origins(w, self.size, num_crops)[crop]
            video = TF.crop(video, top, left, self.size, self.size)
        return rearrange(video, "t c h w -> t h w c")

    def draw_erase(self, rng: np.random.Generator) -> torch.Tensor:
        """Random erasing's draw for one training clip, for :meth:`to_model`: int64
        ``(top, left, height, width, noise_seed)``, all zero when the clip is not erased."""
        box = erase_box(rng, self.size, self.size) if self.erase_prob > 0 and rng.random() < self.erase_prob else None
        if box is None:
            return torch.zeros(5, dtype=torch.int64)
        return torch.tensor([*box, int(rng.integers(2 ** 62))], dtype=torch.int64)

    def to_model(self, video: torch.Tensor, erase: torch.Tensor | None = None) -> torch.Tensor:
        """uint8 clips ``(..., T, H, W, 3)`` on any device -> the model's float32 input
        ``(..., 3, T, H, W)``, ``(x / 255 - mean) / std``. ``erase`` ``(N, 5)`` (a training batch's
        :meth:`draw_erase` rows, one per clip of ``video`` ``(N, T, H, W, 3)``): each box is filled
        with Gaussian noise drawn from its seed, the same in every frame."""
        out = torch.empty((*video.shape[:-4], 3, *video.shape[-4:-1]), dtype=torch.float32, device=video.device)
        out.copy_(rearrange(video, "... t h w c -> ... c t h w"))
        # ((x / 255) - mean) / std == x * (1 / (255 std)) - mean / std, in place.
        mean = torch.tensor(self.mean, device=video.device).view(3, 1, 1, 1)
        std = torch.tensor(self.std, device=video.device).view(3, 1, 1, 1)
        out.mul_(1.0 / (255.0 * std)).sub_(mean / std)
        for i, (top, left, h, w, seed) in enumerate(erase.tolist() if erase is not None else []):
            if h > 0:
                noise = np.random.default_rng(seed).standard_normal((3, 1, h, w), dtype=np.float32)
                out[i, :, :, top:top + h, left:left + w] = torch.from_numpy(noise).to(video.device)
        return out
