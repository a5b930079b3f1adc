"""Optimiser parameter groups and the learning-rate schedule."""
from __future__ import annotations

import math

import torch.nn as nn


def param_groups(model: nn.Module, weight_decay: float, layer_decay: float | None = None) -> list[dict]:
    """Weight decay on conv/linear weights, none on norms, biases and other 1-D parameters
    (decaying a norm's scale or a bias only fights the normalisation).

    ``layer_decay`` (layer-wise lr decay, BEiT/ViT fine-tuning): a parameter at depth ``d`` of
    ``L`` (``model.layer_id(name)``, ``model.num_lr_layers``) trains at ``lr * layer_decay **
    (L - 1 - d)``; each group carries its factor as ``lr_scale``, which the loop multiplies in.
    """
    if layer_decay is not None and getattr(model, "num_lr_layers", None) is None:
        raise ValueError(f"trainer.layer_decay needs a model with layer ids; {type(model).__name__} has none. "
                         "Fix: trainer.layer_decay=null")
    groups: dict[tuple[int, bool], dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        no_decay = p.ndim <= 1 or name.endswith(".bias")
        depth = model.layer_id(name) if layer_decay is not None else 0
        if (depth, no_decay) not in groups:
            scale = layer_decay ** (model.num_lr_layers - 1 - depth) if layer_decay is not None else 1.0
            groups[depth, no_decay] = {"params": [], "weight_decay": 0.0 if no_decay else weight_decay,
                                       "lr_scale": scale}
        groups[depth, no_decay]["params"].append(p)
    return [groups[k] for k in sorted(groups)]


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
