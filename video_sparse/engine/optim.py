"""Optimiser parameter groups and the learning-rate schedule."""
from __future__ import annotations

import math

import torch.nn as nn


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: weight decay on conv/linear weights, none on norms, biases and other 1-D
    parameters (decaying a norm's scale or a bias only fights the normalisation)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def warmup_cosine_lr(step: int, *, base_lr: float, steps_per_epoch: int, total_steps: int,
                     warmup_epochs: float = 1.0, final_lr_ratio: float = 0.0) -> float:
    """Linear warm-up to ``base_lr`` over ``warmup_epochs``, then cosine decay to
    ``final_lr_ratio * base_lr`` at ``total_steps``. Stepped per optimiser update (``step`` from 0)."""
    warmup_steps = min(round(warmup_epochs * steps_per_epoch), total_steps)
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = min((step - warmup_steps) / max(total_steps - warmup_steps, 1), 1.0)
    final = base_lr * final_lr_ratio
    return final + 0.5 * (base_lr - final) * (1 + math.cos(math.pi * progress))
