"""Pooled pre-classifier features of every video, streamed to disk (``eval.py features=true``).

Files in the features directory:

- ``features.npy``: float32 ``(N, V + 1, D)``. Per video, the features of each of its V = clips x
  crops views (view ``c * crops + k``: clip c, crop k, the views evaluation averages), then their
  mean. A head's feature is the input of its final linear layer, averaged over the positions that
  layer is applied at (the pooled feature its logits are a linear map of); D holds the heads side
  by side (``features.json`` gives each head's ``[start, stop)``). Rows of videos that cannot be
  read, or are missing on disk, are NaN.
- ``features.csv``: one line per row of ``features.npy``: ``row, path, label, class, valid``.
- ``features.json``: what was extracted (model, checkpoint and the sha256 of its content, weights,
  videos and the sha256 of their ordered paths, views, heads, dim, processes) and whether it is
  ``complete``; a run whose values differ is another extraction and is refused there.

While it runs, rank r of W writes its shard (videos r, r + W, ...) to ``features.part<r>of<W>.npy``
and marks a row done in ``features.part<r>of<W>.done.npy`` only once the row is on disk: a kill
loses at most the batch in flight, and the same command with the same directory (and number of
processes) continues from the marks. At the end rank 0 gathers the parts, once, into
``features.npy``.
"""
from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from einops import rearrange
from tqdm import tqdm

from ..errors import UserError, write_error
from .distributed import barrier, current_world
from .runtime import autocast, data_loader

log = logging.getLogger(__name__)

FEATURES, INDEX, META = "features.npy", "features.csv", "features.json"
NOT_DONE, DONE, UNREADABLE = 0, 1, 2  # row marks of a part
MERGE_ROWS = 256  # rows copied at a time when the parts are gathered


class FeatureError(UserError, RuntimeError):
    """The features directory holds another extraction, or the model has no classifier to hook."""


@contextlib.contextmanager
def pooled_inputs(classifiers: dict[str, torch.nn.Linear]) -> Iterator[dict[str, torch.Tensor]]:
    """While open, the dict holds, after each forward, every head's classifier input ``(B, D_head)``
    in float32, averaged over all axes but the first and the last (the positions the layer runs at)."""
    seen: dict[str, torch.Tensor] = {}

    def hook(name):
        def capture(_module, args):
            x = args[0]
            seen[name] = x.reshape(x.shape[0], -1, x.shape[-1]).float().mean(1)
        return capture

    handles = [layer.register_forward_pre_hook(hook(name)) for name, layer in classifiers.items()]
    try:
        yield seen
    finally:
        for h in handles:
            h.remove()


def head_slices(model: torch.nn.Module) -> dict[str, list[int]]:
    """``{head: [start, stop)}`` of each head's features along D."""
    if not hasattr(model, "classifiers"):
        raise FeatureError(f"{type(model).__name__} has no classifier heads to take features from (features=true "
                           "needs a video model of the registry)")
    slices, start = {}, 0
    for name, layer in model.classifiers().items():
        slices[name] = [start, start + layer.in_features]
        start += layer.in_features
    return slices


@torch.no_grad()
def feature_rows(model: torch.nn.Module, loader, device: torch.device, amp: str = "off",
                 progress: bool = False) -> Iterator[tuple[dict, torch.Tensor]]:
    """``(batch, rows)`` for each batch of ``loader`` (over an evaluation :class:`VideoDataset`):
    float32 rows ``(B, V + 1, D)`` on the CPU, each view's pooled classifier inputs, then their mean
    (see the module docstring); NaN for the videos that could not be read."""
    slices, dataset = head_slices(model), loader.dataset
    model.eval()
    with pooled_inputs(model.classifiers()) as seen:
        for batch in tqdm(loader, desc="features", unit="batch", leave=False, disable=not progress):
            video = dataset.transform.to_model(batch["video"].to(device, non_blocking=True))
            with autocast(device, amp):
                model(rearrange(video, "b v c t h w -> (b v) c t h w"))
            per_view = rearrange(torch.cat([seen[name] for name in slices], 1), "(b v) d -> b v d",
                                 v=dataset.clips * dataset.crops).cpu()
            rows = torch.cat([per_view, per_view.mean(1, keepdim=True)], 1)
            rows[~batch["valid"].bool()] = float("nan")
            yield batch, rows


def _part_paths(out_dir: Path, rank: int, world: int) -> tuple[Path, Path]:
    stem = f"features.part{rank}of{world}"
    return out_dir / f"{stem}.npy", out_dir / f"{stem}.done.npy"


def _prepare(out_dir: Path, meta: dict) -> None:
    """Rank 0: start ``features.json``, or check that the one there is this extraction's."""
    path = out_dir / META
    if path.is_file():
        old = json.loads(path.read_text())
        differ = [k for k in meta if k != "complete" and old.get(k) != meta[k]]
        if differ:
            hint = (f" (it was run by {old.get('processes')} processes: resume it with as many)"
                    if differ == ["processes"] else "")
            raise FeatureError(f"{path} belongs to another extraction ({', '.join(differ)} differ{hint}). "
                               f"Fix: features_dir=<another directory>, or delete {out_dir}/features.*")
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_atomic(path, json.dumps(meta, indent=2))


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _allocated_memmap(path: Path, dtype, shape: tuple[int, ...]) -> np.memmap:
    """A new ``.npy`` array file mapped for writing, its blocks reserved on disk first: a memory
    map of a sparse file dies of SIGBUS when the disk fills, a reserved one cannot run out."""
    np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape).flush()  # the header, a sparse body
    try:
        with open(path, "r+b") as f:
            os.posix_fallocate(f.fileno(), 0, os.fstat(f.fileno()).st_size)
    except OSError as e:
        path.unlink(missing_ok=True)
        size = np.prod(shape) * np.dtype(dtype).itemsize
        raise write_error(e, f"{size / 2**20:.1f} MiB of features into features_dir={path.parent}",
                          "free space there, or features_dir=<a directory with room>") from e
    return np.lib.format.open_memmap(path, mode="r+")


def _open_part(out_dir: Path, rank: int, world: int, rows: int, shape: tuple[int, int]) -> tuple[np.memmap, np.memmap]:
    """This rank's feature rows and their marks; new ones unless both files are there. The marks are
    created last, so marks on disk always come with their rows' file."""
    part_path, done_path = _part_paths(out_dir, rank, world)
    if part_path.is_file() and done_path.is_file():
        return (np.lib.format.open_memmap(part_path, mode="r+"), np.lib.format.open_memmap(done_path, mode="r+"))
    part = _allocated_memmap(part_path, np.float32, (rows, *shape))
    done = _allocated_memmap(done_path, np.uint8, (rows,))
    return part, done


@torch.no_grad()
def extract_features(model: torch.nn.Module, dataset, out_dir: str | os.PathLike, class_names: Sequence[str], *,
                     batch_size: int, num_workers: int, device: torch.device, amp: str = "off",
                     about: dict | None = None, loader_timeout: float = 0, progress: bool = True) -> dict:
    """Write the features of every video of ``dataset`` (an evaluation :class:`VideoDataset`) into
    ``out_dir`` (see the module docstring); resume an unfinished extraction there. ``class_names``
    name the labels in the index; ``about``: what is extracted (model, checkpoint, ...), stored in
    ``features.json`` and checked on resume.
    Every rank of a distributed run calls it; returns the summary (on every rank)."""
    world, out_dir = current_world(), Path(out_dir)
    views = dataset.clips * dataset.crops
    slices = head_slices(model)
    dim = max(stop for _, stop in slices.values())
    missing = list(getattr(dataset, "missing", []))
    listed = [r.path for r in dataset.records] + missing  # the rows, in order: a rewritten list is another extraction
    meta = {**(about or {}), "videos": len(dataset) + len(missing),
            "video_list_sha256": hashlib.sha256("\n".join(listed).encode()).hexdigest(), "views": {"clips": dataset.clips,
            "crops": dataset.crops}, "heads": slices, "dim": dim, "processes": world.size, "complete": False}
    if world.is_main:
        _prepare(out_dir, meta)
    barrier()
    summary = {"features": str(out_dir / FEATURES), "num_videos": meta["videos"], "dim": dim, "views": views}
    if json.loads((out_dir / META).read_text()).get("complete"):
        log.info("%s is complete already: nothing to extract", out_dir / FEATURES)
        return summary

    shard = list(range(world.rank, len(dataset), world.size))
    part, done = _open_part(out_dir, world.rank, world.size, len(shard), (views + 1, dim))
    todo = [shard[j] for j in np.flatnonzero(done == NOT_DONE).tolist()]
    if len(todo) < len(shard):
        log.info("resuming the extraction in %s: %d of %d videos done", out_dir, len(shard) - len(todo), len(shard))
    loader = data_loader(dataset, batch_size, num_workers, device, sampler=todo, timeout=loader_timeout)
    for batch, rows in feature_rows(model, loader, device, amp, progress):
        position = ((batch["index"] - world.rank) // world.size).numpy()
        part[position] = rows.numpy()
        part.flush()  # the rows are on disk before their marks
        done[position] = np.where(batch["valid"].numpy(), DONE, UNREADABLE)
        done.flush()
    del part, done
    barrier()
    if world.is_main:
        _gather(out_dir, dataset, class_names, missing, meta)
    barrier()
    return summary


def _gather(out_dir: Path, dataset, class_names: Sequence[str], missing: list[str], meta: dict) -> None:
    """Rank 0: the parts into ``features.npy`` (dataset order, missing videos last), the index,
    ``complete``; then the parts go. A kill in here leaves the parts: the next run gathers again."""
    n, world = len(dataset), meta["processes"]
    parts = [_part_paths(out_dir, r, world) for r in range(world)]
    valid = np.zeros(n + len(missing), dtype=bool)
    for r, (_, done_path) in enumerate(parts):
        valid[r:n:world] = np.load(done_path) == DONE
    if world == 1 and not missing:
        os.replace(parts[0][0], out_dir / FEATURES)  # already in dataset order
    else:
        tmp = out_dir / "features.tmp.npy"
        out = _allocated_memmap(tmp, np.float32, (n + len(missing),
                                                  meta["views"]["clips"] * meta["views"]["crops"] + 1, meta["dim"]))
        for r, (part_path, _) in enumerate(parts):
            part = np.load(part_path, mmap_mode="r")
            rows = np.arange(r, n, world)
            for a in range(0, len(rows), MERGE_ROWS):
                out[rows[a:a + MERGE_ROWS]] = part[a:a + MERGE_ROWS]
        out[n:] = np.nan
        out.flush()
        del out
        os.replace(tmp, out_dir / FEATURES)
    _write_index(out_dir / INDEX, dataset, class_names, missing, valid)
    _write_atomic(out_dir / META, json.dumps({**meta, "complete": True}, indent=2))
    for part_path, done_path in parts:
        part_path.unlink(missing_ok=True)
        done_path.unlink(missing_ok=True)


def _write_index(path: Path, dataset, class_names: Sequence[str], missing: list[str], valid: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["row", "path", "label", "class", "valid"])
        records = [(r.path, r.label) for r in dataset.records] + [(p, -1) for p in missing]
        for i, (p, label) in enumerate(records):
            name = class_names[label] if label >= 0 else ""
            w.writerow([i, p, label, name, int(valid[i])])
    os.replace(tmp, path)
