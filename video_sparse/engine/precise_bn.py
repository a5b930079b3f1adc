"""Precise BatchNorm: replace the running statistics, an exponential average over weights that
kept changing, by a plain average over batches of the final weights (Wu & Johnson, 2021)."""
from __future__ import annotations

from typing import Callable, Iterable

import torch
import torch.distributed as dist
import torch.nn as nn

from .distributed import current_world


@torch.no_grad()
def recompute_bn_stats(model: nn.Module, batches: Iterable, num_batches: int,
                       forward: Callable[[nn.Module, object], None]) -> int:
    """Recompute every BatchNorm's ``running_mean``/``running_var`` as the average of the batch
    statistics of ``num_batches`` batches (``forward(model, batch)`` runs one in train mode),
    averaged over ranks under DDP. Returns the number of batches used."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms or num_batches <= 0:
        return 0
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: every batch weighs the same
    was_training = model.training
    model.train()
    used = 0
    for batch in batches:
        if used == num_batches:
            break
        forward(model, batch)
        used += 1
    model.train(was_training)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    world = current_world()
    if world.distributed:
        for m in norms:
            for buf in (m.running_mean, m.running_var):
                dist.all_reduce(buf)
                buf /= world.size
    return used
