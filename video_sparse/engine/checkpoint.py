"""Checkpoints that survive a kill at any moment (temporary file, fsync, rename), the random
states that make a resumed run continue exactly, and the checks that refuse a wrong checkpoint."""
from __future__ import annotations

import os
import random
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError


class CheckpointError(UserError, RuntimeError):
    """A checkpoint that cannot be read, or that belongs to another model or class list."""


def save_checkpoint(state: dict, path: str | os.PathLike) -> None:
    """Atomically write ``state`` to ``path``: readers see the old file or the new one, never a
    partial write (``os.replace`` is atomic on POSIX and Windows within one filesystem)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    if hasattr(os, "O_DIRECTORY"):  # persist the rename itself
        dir_fd = os.open(path.parent, os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` with ``weights_only=True`` (tensors
    and plain Python only: loading never runs code from the file)."""
    if not Path(path).is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"{path}: not a readable checkpoint, truncated or not written by torch.save "
                              f"({type(e).__name__}: {str(e)[:200]}). Fix: resume from another checkpoint "
                              "(trainer.resume=<run>/checkpoints/epoch_NNN.pt) or trainer.resume=none") from e


def check_compatible(ckpt: dict, path, model: torch.nn.Module, model_name: str, class_names: list[str]) -> None:
    """Refuse, with the reason and the fix, a checkpoint of another architecture or class list."""
    trained = ckpt.get("config", {}).get("model", {}).get("name", "?")
    theirs = ckpt.get("class_names")
    if theirs is not None and list(theirs) != list(class_names):
        raise CheckpointError(f"{path}: trained on {len(theirs)} classes ({', '.join(theirs[:3])}, ...), this run has "
                              f"{len(class_names)} ({', '.join(class_names[:3])}, ...). Fix: resume with the run's own "
                              "data config, or start a new run (trainer.resume=none, or another hydra.run.dir)")
    mine = model.state_dict()
    missing = sorted(set(mine) - set(ckpt["model"]))
    unexpected = sorted(set(ckpt["model"]) - set(mine))
    mismatched = sorted(k for k in set(mine) & set(ckpt["model"]) if mine[k].shape != ckpt["model"][k].shape)
    if missing or unexpected or mismatched:
        detail = "; ".join(f"{what}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}" for what, keys in
                           (("missing", missing), ("unexpected", unexpected), ("other shape", mismatched)) if keys)
        raise CheckpointError(f"{path}: a checkpoint of model={trained}, not of this run's model={model_name} "
                              f"({detail}). Fix: model={trained}, or a new run (trainer.resume=none, or another "
                              "hydra.run.dir)")


def rng_state() -> dict:
    """Every random generator the loop draws from (python, numpy, torch CPU and CUDA), as
    tensors and lists so that ``weights_only`` loading accepts them."""
    version, mt, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"python": [version, list(mt), gauss], "numpy": [name, torch.from_numpy(keys.copy()), pos, has_gauss, cached],
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_state(state: dict) -> None:
    version, mt, gauss = state["python"]
    random.setstate((version, tuple(mt), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy(), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def keep_epoch_copy(last: Path, epoch: int, keep: int) -> None:
    """Link ``last`` as ``epoch_NNN.pt`` (no second write) and delete all but the newest ``keep``."""
    if keep <= 0:
        return
    target = last.with_name(f"epoch_{epoch:03d}.pt")
    target.unlink(missing_ok=True)
    try:
        os.link(last, target)
    except OSError:  # filesystems without hard links
        shutil.copyfile(last, target)
    copies = sorted((p for p in last.parent.glob("epoch_*.pt") if re.fullmatch(r"epoch_\d+\.pt", p.name)),
                    key=lambda p: int(p.stem[len("epoch_"):]))
    for old in copies[:-keep]:
        old.unlink()


def remove_partial_writes(folder: str | os.PathLike) -> None:
    """Delete temporary files left by a save that was killed before its rename."""
    for tmp in Path(folder).glob(".*.tmp"):
        tmp.unlink(missing_ok=True)
