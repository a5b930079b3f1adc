"""RandAugment for video clips: every frame of a clip gets the same operations and magnitudes.

The operation list and magnitude ranges are those of the official SIFA clip RandAugment (16
operations; ``magnitude`` on a 0-30 scale, the SIFA-Net SSv2 recipe uses ``num_ops=2,
magnitude=27``): ``num_ops`` operations are drawn with replacement, each applied at
``magnitude / 30`` of its range, signed operations with a random sign. Posterize keeps
``8 - 4 * magnitude / 30`` bits (the AutoAugment range 4-8 bits).

Clips are uint8 tensors ``(T, 3, H, W)``; torchvision's functional ops treat ``T`` as a batch, so
one call transforms all frames alike. Random draws come from an explicit numpy generator, which
keeps a sample reproducible from (seed, epoch, index).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from torchvision.transforms import InterpolationMode

MAX_MAGNITUDE = 30
CUTOUT_FILL = (125, 123, 114)  # the ImageNet mean colour


def _signed(v: float, rng: np.random.Generator) -> float:
    return -v if rng.random() < 0.5 else v


def _affine(video, *, translate=(0, 0), shear=(0.0, 0.0)):
    return TF.affine(video, angle=0.0, translate=list(translate), scale=1.0, shear=list(shear),
                     interpolation=InterpolationMode.NEAREST, fill=0, center=[0.0, 0.0] if any(shear) else None)


def solarize(video: torch.Tensor, threshold: float) -> torch.Tensor:
    """Invert the pixels ``>= threshold`` (256: none)."""
    return torch.where(video >= threshold, 255 - video, video)


def solarize_add(video: torch.Tensor, addition: int, threshold: int = 128) -> torch.Tensor:
    """Add ``addition`` to the pixels below ``threshold`` (clamped to 255)."""
    added = (video.to(torch.int16) + addition).clamp_(0, 255).to(torch.uint8)
    return torch.where(video < threshold, added, video)


def cutout(video: torch.Tensor, side: int, rng: np.random.Generator) -> torch.Tensor:
    """Fill a ``side`` x ``side`` square centred at a random pixel (clipped at the borders) with
    :data:`CUTOUT_FILL`, in every frame."""
    h, w = video.shape[-2:]
    if side <= 0:
        return video
    cy, cx = rng.uniform(0, h), rng.uniform(0, w)
    y0, x0 = int(max(0, cy - side / 2)), int(max(0, cx - side / 2))
    y1, x1 = min(h, y0 + side), min(w, x0 + side)
    video = video.clone()
    video[..., y0:y1, x0:x1] = torch.tensor(CUTOUT_FILL, dtype=video.dtype).view(3, 1, 1)
    return video


# name -> (maximum of the range, op(video, value, rng)); value = magnitude / 30 * maximum.
OPS = {
    "auto_contrast": (1.0, lambda v, x, rng: TF.autocontrast(v)),
    "equalize": (1.0, lambda v, x, rng: TF.equalize(v)),
    "invert": (1.0, lambda v, x, rng: TF.invert(v)),
    "rotate": (30.0, lambda v, x, rng: TF.rotate(v, _signed(x, rng), InterpolationMode.NEAREST, fill=0)),
    "posterize": (4.0, lambda v, x, rng: TF.posterize(v, 8 - int(x))),
    "solarize": (256.0, lambda v, x, rng: solarize(v, 256 - x)),
    "solarize_add": (110.0, lambda v, x, rng: solarize_add(v, int(x))),
    "color": (0.9, lambda v, x, rng: TF.adjust_saturation(v, 1 + _signed(x, rng))),
    "contrast": (0.9, lambda v, x, rng: TF.adjust_contrast(v, 1 + _signed(x, rng))),
    "brightness": (0.9, lambda v, x, rng: TF.adjust_brightness(v, 1 + _signed(x, rng))),
    "sharpness": (0.9, lambda v, x, rng: TF.adjust_sharpness(v, 1 + _signed(x, rng))),
    "shear_x": (0.3, lambda v, x, rng: _affine(v, shear=(math.degrees(math.atan(_signed(x, rng))), 0.0))),
    "shear_y": (0.3, lambda v, x, rng: _affine(v, shear=(0.0, math.degrees(math.atan(_signed(x, rng)))))),
    "cutout": (0.3571, lambda v, x, rng: cutout(v, round(x * v.shape[-1]), rng)),
    "translate_x": (0.4464, lambda v, x, rng: _affine(v, translate=(round(_signed(x, rng) * v.shape[-1]), 0))),
    "translate_y": (0.4464, lambda v, x, rng: _affine(v, translate=(0, round(_signed(x, rng) * v.shape[-2])))),
}


class ClipRandAugment:
    """``num_ops`` random operations of :data:`OPS` at ``magnitude`` (0-30), the same for all frames.

    Call with a uint8 clip ``(T, 3, H, W)`` and a numpy generator; returns a uint8 clip of the
    same shape.
    """

    def __init__(self, num_ops: int = 2, magnitude: float = 27):
        if num_ops < 0:
            raise ValueError(f"num_ops must be >= 0, got {num_ops}")
        if not 0 <= magnitude <= MAX_MAGNITUDE:
            raise ValueError(f"magnitude must be in [0, {MAX_MAGNITUDE}], got {magnitude}")
        self.num_ops, self.magnitude = num_ops, magnitude
        self.names = list(OPS)

    def apply(self, video: torch.Tensor, name: str, rng: np.random.Generator) -> torch.Tensor:
        """One operation at this augmenter's magnitude."""
        maximum, op = OPS[name]
        return op(video, self.magnitude / MAX_MAGNITUDE * maximum, rng)

    def __call__(self, video: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        if video.dtype != torch.uint8:
            raise TypeError(f"RandAugment works on uint8 clips, got {video.dtype}")
        for k in rng.integers(len(self.names), size=self.num_ops):
            video = self.apply(video, self.names[k], rng)
        return video

    def __repr__(self) -> str:
        return f"ClipRandAugment(num_ops={self.num_ops}, magnitude={self.magnitude})"
