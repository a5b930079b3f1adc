"""Multi-view evaluation: run a model over a dataset and average the heads' and views' softmaxes."""
from __future__ import annotations

import json
import logging
from pathlib import Path
import math
from typing import Callable, Sequence

import torch
from einops import rearrange
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..errors import UserError
from .distributed import ShardSampler, all_gather_objects, current_world
from .metrics import (classification_metrics, confusion_matrix, multi_head_probs, plot_confusion_matrix,
                      write_per_class, write_predictions)
from .runtime import autocast

log = logging.getLogger(__name__)


class StrictEvaluationError(UserError, RuntimeError):
    """``test.strict=true`` and a video of the evaluated set is missing or unreadable."""


def _strict_error(paths: list[str], what: str) -> StrictEvaluationError:
    return StrictEvaluationError(
        f"test.strict=true: {len(paths)} {what} (first: {', '.join(paths[:5])}). Fix: repair the files or remove them "
        "from the annotation (python -m video_sparse.data.scan data=... lists every bad video), or test.strict=false "
        "to exclude them from the metrics and count them in num_failed")


class EvaluationStopped(Exception):
    """Raised by :func:`predict` when its ``stop`` callable asked it to (a preemption signal)."""

    def __init__(self, signum: int):
        super().__init__(f"evaluation stopped by signal {signum}")
        self.signum = signum


def _batches_of_rank_0(loader: DataLoader) -> int:
    """Batches of the largest evaluation shard (rank 0's: :class:`ShardSampler` deals videos in
    turn), which every rank counts to so that collectives between batches pair up."""
    world = current_world()
    return math.ceil(math.ceil(len(loader.dataset) / world.size) / loader.batch_size)


@torch.no_grad()
def predict(model: torch.nn.Module, loader: DataLoader, device: torch.device, amp: str = "off",
            desc: str = "eval", progress: bool = True, strict: bool = False,
            stop: Callable[[], int] | None = None) -> dict:
    """Class probabilities for every video of ``loader``'s dataset.

    Batches hold uint8 ``video`` of shape ``(B, V, T, H, W, 3)`` (V views), which the dataset's
    ``transform.to_model`` normalises on ``device``. Returns ``probs (N, C)``,
    ``labels (N,)``, ``valid (N,)`` (False for unreadable videos; their probs are NaN) and ``paths``,
    in dataset order. Under DDP each rank runs its :class:`ShardSampler` shard and every rank gets
    the gathered whole, each video exactly once. Videos the annotation listed but that were missing
    on disk (``dataset.missing``) come last, invalid, so that every listed video is accounted for.
    ``strict``: raise :class:`StrictEvaluationError` if any video is missing or unreadable.
    ``stop``: called before every batch (a collective under DDP: every rank calls it as often as
    rank 0 has batches); a non-zero return, a signal number, raises :class:`EvaluationStopped`.
    """
    missing = list(getattr(loader.dataset, "missing", []))
    if strict and missing:
        raise _strict_error(missing, "annotated videos are not on disk")
    model.eval()
    probs, labels, valid, paths = [], [], [], []
    for batch in tqdm(loader, desc=desc, unit="batch", leave=False, disable=not progress):
        if stop is not None and (signum := stop()):
            raise EvaluationStopped(signum)
        video = loader.dataset.transform.to_model(batch["video"].to(device, non_blocking=True))
        b, v = video.shape[:2]
        with autocast(device, amp):
            outputs = model(rearrange(video, "b v c t h w -> (b v) c t h w"))
        p = rearrange(multi_head_probs(outputs), "(b v) k -> b v k", b=b, v=v).mean(1).cpu()
        ok = batch["valid"].bool()
        p[~ok] = float("nan")
        probs.append(p)
        labels.append(batch["label"])
        valid.append(ok)
        paths += list(batch["path"])
    if stop is not None:  # a shorter shard keeps polling with the others
        for _ in range(_batches_of_rank_0(loader) - len(probs)):
            if signum := stop():
                raise EvaluationStopped(signum)
    num_classes = _num_outputs(model)
    result = {"probs": torch.cat(probs) if probs else torch.empty(0, num_classes),
              "labels": torch.cat(labels) if labels else torch.empty(0, dtype=torch.long),
              "valid": torch.cat(valid) if valid else torch.empty(0, dtype=torch.bool), "paths": paths}
    if current_world().distributed:
        result = _gather_shards(result, loader.sampler)
    if strict and not result["valid"].all():
        raise _strict_error([q for q, v in zip(result["paths"], result["valid"].tolist()) if not v],
                            "videos cannot be decoded")
    if missing:
        result["probs"] = torch.cat([result["probs"], torch.full((len(missing), num_classes), float("nan"))])
        result["labels"] = torch.cat([result["labels"], torch.full((len(missing),), -1, dtype=torch.long)])
        result["valid"] = torch.cat([result["valid"], torch.zeros(len(missing), dtype=torch.bool)])
        result["paths"] = result["paths"] + missing
    return result


def _num_outputs(model: torch.nn.Module) -> int:
    """Classes of the model's (last) classifier, for empty results (an exported model says it)."""
    if hasattr(model, "num_classes"):
        return int(model.num_classes)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    return linears[-1].out_features if linears else 0


def _gather_shards(result: dict, sampler) -> dict:
    """Every rank's shard of ``predict``, put back in dataset order."""
    if not isinstance(sampler, ShardSampler):
        raise TypeError("distributed evaluation needs the ShardSampler of runtime.data_loader (no padded duplicates)")
    shards = all_gather_objects((sampler.indices, result))
    order = torch.tensor([i for indices, _ in shards for i in indices]).argsort()
    paths = [p for _, r in shards for p in r["paths"]]
    return {"probs": torch.cat([r["probs"] for _, r in shards])[order],
            "labels": torch.cat([r["labels"] for _, r in shards])[order],
            "valid": torch.cat([r["valid"] for _, r in shards])[order], "paths": [paths[i] for i in order.tolist()]}


def sample_predictions(result: dict, class_names: Sequence[str], n: int = 32) -> tuple[list[str], list[list]]:
    """Columns and rows of a table of the first ``n`` readable videos: path, true class, top-1
    class and its probability, correct."""
    rows = []
    for path, p, label, ok in zip(result["paths"], result["probs"], result["labels"].tolist(), result["valid"].tolist()):
        if not ok:
            continue
        prob, pred = p.max(0)
        rows.append([path, class_names[label] if label >= 0 else "", class_names[pred], round(prob.item(), 4),
                     pred.item() == label])
        if len(rows) == n:
            break
    return ["path", "label", "prediction", "probability", "correct"], rows


def report(result: dict, class_names: Sequence[str], out_dir: str | Path, *, views: dict, split: str,
           pairs: Sequence[tuple[int, int]] = (), plot: bool = True, extra: dict | None = None) -> dict:
    """Write ``metrics.json``, ``predictions.csv``, ``per_class.csv`` and ``confusion_matrix.png``
    (<= 200 classes) into ``out_dir`` and return the metrics of ``split`` (the annotation they are
    on, recorded in them) with ``extra`` (what was evaluated). Unreadable videos are excluded and
    counted."""
    out_dir = Path(out_dir)
    ok = result["valid"]
    probs, labels = result["probs"][ok], result["labels"][ok]
    failed = [p for p, v in zip(result["paths"], ok.tolist()) if not v]
    metrics = classification_metrics(probs, labels, pairs)
    metrics.update({"split": split, "num_videos": int(ok.sum()), "num_failed": len(failed), "failed_videos": failed,
                    "views": views, **(extra or {})})
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    keep = [p for p, v in zip(result["paths"], ok.tolist()) if v]
    write_predictions(out_dir / "predictions.csv", keep, probs, labels, class_names)
    write_per_class(out_dir / "per_class.csv", probs, labels, class_names)
    if plot and len(class_names) <= 200 and len(labels):
        cm = confusion_matrix(probs.argmax(1), labels, len(class_names))
        plot_confusion_matrix(cm, class_names, out_dir / "confusion_matrix.png", top1=metrics["top1"])
    if failed:
        log.warning("%d unreadable videos excluded from the metrics (first: %s)", len(failed), ", ".join(failed[:5]))
    return metrics
