"""Checkpoints that survive a kill at any moment (temporary file, fsync, rename), the random
states that make a resumed run continue exactly, and the checks that refuse a wrong checkpoint."""
from __future__ import annotations

import os
import pickle
import random
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from ..models.weights import needs_python_global


class CheckpointError(UserError, RuntimeError):
    """A checkpoint that cannot be read, or that belongs to another model or class list."""


def save_checkpoint(state: dict, path: str | os.PathLike) -> None:
    """Atomically write ``state`` to ``path``: readers see the old file or the new one, never a
    partial write (``os.replace`` is atomic on POSIX and Windows within one filesystem)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp's 0600 would keep teammates from best.pt
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


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` (or any ``torch.save`` file of tensors)
    with ``weights_only=True``: loading never runs code from the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if not needs_python_global(e):  # and torch's advice there (weights_only=False) is not ours
            raise _unreadable(path, e, "neither a zip archive nor a pickle") from e
        raise CheckpointError(f"{path}: holds Python objects besides tensors (a checkpoint of another framework?), "
                              "which video_sparse does not load because unpickling them could run code. Fix: "
                              "re-save its state_dict (torch.save(model.state_dict(), ...)) and pass that file") from e
    except Exception as e:  # noqa: BLE001
        raise _unreadable(path, e) from e


def _unreadable(path: Path, e: Exception, reason: str | None = None) -> CheckpointError:
    kept = sorted(p.name for p in path.parent.glob("*.pt") if p != path)
    fix = f"another checkpoint of {path.parent} ({', '.join(kept[:4])})" if kept else "another checkpoint"
    reason = reason or (str(e).strip().splitlines() or [""])[0][:160]
    return CheckpointError(f"{path}: not a readable checkpoint: truncated, or not written by torch.save "
                           f"({type(e).__name__}: {reason}). Fix: {fix}")


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


# What a resumed run must share with the run it continues: the saved optimiser state, position and
# schedule mean something only under these. Anything else (workers, logging, views) may change.
RESUME_KEYS = ("model", "optim", "sched", "trainer.batch_size", "trainer.accumulate", "trainer.amp",
               "trainer.layer_decay", "trainer.epochs", "trainer.seed")
RESUME_FREE = ("model.pretrained",)  # the checkpoint's weights replace them anyway


def _flatten(tree: dict, prefix: str = "") -> dict:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def check_resumable(ckpt: dict, path, config: dict, world_size: int) -> None:
    """Refuse to continue ``ckpt`` under settings that change the meaning of its state:
    :data:`RESUME_KEYS` of ``config`` (this run's resolved config) against the checkpoint's, and
    the number of processes (the random streams and the data shards are per rank)."""
    if "optimizer" not in ckpt or "rng" not in ckpt:
        raise CheckpointError(f"{path}: a weights file (or a checkpoint of an earlier video_sparse), not a train.py "
                              "checkpoint: it has no training state (optimiser, position, random streams) to resume. "
                              f"Fix: start a new run initialised from it with model.pretrained={path} "
                              "(and trainer.resume=none or another hydra.run.dir)")
    from ..models.registry import upgrade_options

    saved = dict(ckpt.get("config", {}))
    if isinstance(saved.get("model"), dict):  # a run written before an option's rename
        saved["model"] = upgrade_options(saved["model"], dict(config.get("model", {})).keys())
    saved, mine = _flatten(saved), _flatten(config)

    def checked(key: str) -> bool:
        return any(key == k or key.startswith(k + ".") for k in RESUME_KEYS) and key not in RESUME_FREE
    # keys of one side only are options added or removed since the checkpoint was written
    differ = [(k, saved[k], mine[k]) for k in sorted(saved.keys() & mine.keys()) if checked(k) and saved[k] != mine[k]]
    if any(k == "model.name" for k, _, _ in differ):  # another model: its other model.* keys follow from it
        differ = [d for d in differ if d[0] == "model.name" or not d[0].startswith("model.")]
    if ckpt.get("world_size", world_size) != world_size:
        differ.append(("processes", ckpt["world_size"], world_size))
    if differ:
        listed = ", ".join(f"{k} {a!r} -> {b!r}" for k, a, b in differ[:6]) + (" ..." if len(differ) > 6 else "")
        raise CheckpointError(f"{path}: cannot continue that run with other settings ({listed}). Fix: resume with the "
                              f"run's own values, or start a new run from its weights: model.pretrained={path} "
                              "trainer.resume=none (or another hydra.run.dir)")


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
