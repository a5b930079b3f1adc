"""What the pyramid transformers (BiFormer, DilateFormer) share: the forward pass over their stages,
used alike by the image models and, with ``frames``, by the per-frame video models."""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.nn.init import trunc_normal_

from ..layers.block import run_stage


def norm_map(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A backbone's final norm on a ``(B, C, H, W)`` map: a LayerNorm over the channels, or a
    BatchNorm2d (BiFormer) as it is."""
    if isinstance(norm, nn.LayerNorm):
        return norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    return norm(x)


class PyramidBackbone(nn.Module):
    """Subclasses define ``stage_parts()`` (per stage: the module bringing the map to the stage's
    resolution, and the stage's blocks taking ``(x, frames)``), ``norm`` and ``head``."""

    def stage_parts(self) -> list[tuple[nn.Module, nn.Module]]:
        raise NotImplementedError

    def final_norm(self, x: torch.Tensor) -> torch.Tensor:
        return norm_map(self.norm, x)

    def forward_features(self, x: torch.Tensor, frames: int = 1) -> torch.Tensor:
        """``(B, 3, H, W)`` -> normalised last-stage map ``(B, C, H / 32, W / 32)``."""
        for downsample, blocks in self.stage_parts():
            x = run_stage(downsample, blocks, x, frames)
        return self.final_norm(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` -> logits ``(B, num_classes)`` (features if built without classes)."""
        return self.head(self.forward_features(x).mean(dim=(2, 3)))


def init_weights(m: nn.Module) -> None:
    """The official initialisation of both families: truncated normal (std 0.02) linear weights,
    zero biases, unit LayerNorms."""
    if isinstance(m, nn.Linear):
        trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
