"""Exponential moving average of a model's weights, evaluated and checkpointed beside them."""
from __future__ import annotations

import copy

import torch
import torch.nn as nn


class ModelEma(nn.Module):
    """``ema = decay * ema + (1 - decay) * weights`` after every optimiser step, over parameters
    and floating-point buffers (BN statistics); integer buffers are copied.

    ``warmup_steps``: the decay ramps as ``min(decay, (1 + s) / (warmup_steps + s))`` (s = updates
    so far) so that early, random weights leave the average quickly; 0 = constant decay.
    """

    def __init__(self, model: nn.Module, decay: float = 0.9998, warmup_steps: int = 0):
        super().__init__()
        if not 0.0 < decay < 1.0:
            raise ValueError(f"trainer.ema_decay must be in (0, 1), got {decay}")
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay, self.warmup_steps = decay, warmup_steps
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    def current_decay(self) -> float:
        if self.warmup_steps <= 0:
            return self.decay
        s = int(self.updates)
        return min(self.decay, (1 + s) / (self.warmup_steps + s))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.current_decay()
        for ema_v, v in zip(self.module.state_dict().values(), model.state_dict().values()):
            if ema_v.is_floating_point():
                ema_v.lerp_(v.detach(), 1.0 - d)
            else:
                ema_v.copy_(v)
        self.updates += 1


def ema_weights(checkpoint: dict) -> dict | None:
    """The averaged model's ``state_dict`` stored in a training checkpoint, or None."""
    ema = checkpoint.get("ema")
    if not ema:
        return None
    return {k[len("module."):]: v for k, v in ema.items() if k.startswith("module.")}
