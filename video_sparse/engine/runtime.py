"""Device selection, mixed precision and seeding."""
from __future__ import annotations

import contextlib
import random

import numpy as np
import torch
from torch.utils.data import DataLoader

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def autocast(device: torch.device, amp: str):
    """``torch.autocast`` for ``amp`` in {bf16, fp16}; a no-op context for ``off``."""
    if amp == "off":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=AMP_DTYPES[amp])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def data_loader(dataset, batch_size: int, num_workers: int, device: torch.device, sampler=None) -> DataLoader:
    """Training loader when ``sampler`` is given (full batches only), else an in-order loader.
    Workers persist across epochs (the dataset's epoch is in shared memory); pinned memory on CUDA."""
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, shuffle=False, num_workers=num_workers,
                      pin_memory=device.type == "cuda", drop_last=sampler is not None,
                      persistent_workers=num_workers > 0)
