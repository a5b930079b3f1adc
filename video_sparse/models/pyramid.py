"""What the pyramid transformers (BiFormer, DilateFormer) share: the forward pass over their stages,
used alike by the image models and, with ``frames``, by the per-frame video models."""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.nn.init import trunc_normal_

from ..layers.block import run_stage


class PyramidBackbone(nn.Module):
    """Subclasses define ``stage_parts()`` (per stage: the module bringing the map to the stage's
    resolution, and the stage's blocks taking ``(x, frames)``), ``final_norm`` and ``head``."""

    def stage_parts(self) -> list[tuple[nn.Module, nn.Module]]:
        raise NotImplementedError

    def final_norm(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

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
