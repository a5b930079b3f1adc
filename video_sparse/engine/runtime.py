"""Device selection, mixed precision and seeding."""
from __future__ import annotations

import contextlib
import functools
import random
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader

from .distributed import ShardSampler, current_world
from .preemption import ignore_signals as ignore_signals_in_worker, main_exiting_event

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto``: this process's GPU (``cuda:<local rank>``) if there is one, else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        return torch.device("cuda", local_rank)
    return torch.device(name)


def autocast(device: torch.device, amp: str):
    """``torch.autocast`` for ``amp`` in {bf16, fp16}; a no-op context for ``off``."""
    if amp == "off":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=AMP_DTYPES[amp])


def to_channels_last(x: torch.nn.Module | torch.Tensor):
    """Channels-last memory format for a model's 4-D (``NHWC``) and 5-D (``NTHWC``) weights and
    buffers, or for one tensor; other tensors are left as they are."""
    formats = {4: torch.channels_last, 5: torch.channels_last_3d}
    if isinstance(x, torch.Tensor):
        return x.contiguous(memory_format=formats[x.ndim]) if x.ndim in formats else x
    for t in list(x.parameters()) + list(x.buffers()):
        if t.ndim in formats:
            t.data = t.data.contiguous(memory_format=formats[t.ndim])
    return x


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def data_loader(dataset, batch_size: int, num_workers: int, device: torch.device, sampler=None, *,
                train: bool = False, ignore_signals: Sequence[str] = (), timeout: float = 0) -> DataLoader:
    """Training loader (``train``: full batches only) or evaluation loader; without ``sampler``,
    this rank's in-order shard of ``dataset`` (every video once over all ranks).
    Workers persist across epochs (the dataset's epoch is in shared memory); pinned memory on CUDA.
    The loader's own generator keeps its worker seeds off the global torch stream, whose state a
    resumed run restores (creating an iterator would otherwise draw from it).
    Workers ignore ``ignore_signals`` (the preemption signals the main process handles) until the
    main process exits; a batch that takes longer than ``timeout`` seconds (0: no limit) to arrive
    from them is an error."""
    if sampler is None:
        sampler = ShardSampler(dataset, current_world())
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, shuffle=False, num_workers=num_workers,
                      pin_memory=device.type == "cuda", drop_last=train, persistent_workers=num_workers > 0,
                      generator=torch.Generator().manual_seed(0), timeout=timeout if num_workers else 0,
                      worker_init_fn=functools.partial(ignore_signals_in_worker, tuple(ignore_signals),
                                                       main_exiting_event())
                      if ignore_signals and num_workers else None)
