"""Multi-view evaluation: run a model over a dataset and average the heads' and views' softmaxes."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Sequence

import torch
from einops import rearrange
from omegaconf import OmegaConf
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..config import validate_eval
from ..data import build_dataset, build_predict_dataset, resolve_data
from ..models import build_model
from ..tracking import Tracker
from .checkpoint import load_checkpoint
from .metrics import classification_metrics, confusion_matrix, multi_head_probs, plot_confusion_matrix, write_predictions
from .runtime import autocast, data_loader, resolve_device

log = logging.getLogger(__name__)


class StrictEvaluationError(RuntimeError):
    """``test.strict=true`` and a video of the evaluated set is missing or unreadable."""


def _strict_error(paths: list[str], what: str) -> StrictEvaluationError:
    return StrictEvaluationError(
        f"test.strict=true: {len(paths)} {what} (first: {', '.join(paths[:5])}). Fix: repair the files or remove them "
        "from the annotation (python -m video_sparse.data.scan data=... lists every bad video), or test.strict=false "
        "to exclude them from the metrics and count them in num_failed")


@torch.no_grad()
def predict(model: torch.nn.Module, loader: DataLoader, device: torch.device, amp: str = "off",
            desc: str = "eval", progress: bool = True, strict: bool = False) -> dict:
    """Class probabilities for every video of ``loader``'s dataset.

    Batches hold ``video`` of shape ``(B, V, 3, T, H, W)`` (V views). Returns ``probs (N, C)``,
    ``labels (N,)``, ``valid (N,)`` (False for unreadable videos; their probs are NaN) and ``paths``.
    Videos the annotation listed but that were missing on disk (``dataset.missing``) come last,
    invalid, so that every listed video is accounted for in the report. ``strict``: raise
    :class:`StrictEvaluationError` at the first missing or unreadable video instead.
    """
    missing = list(getattr(loader.dataset, "missing", []))
    if strict and missing:
        raise _strict_error(missing, "annotated videos are not on disk")
    model.eval()
    probs, labels, valid, paths = [], [], [], []
    for batch in tqdm(loader, desc=desc, unit="batch", leave=False, disable=not progress):
        video = batch["video"].to(device, non_blocking=True)
        b, v = video.shape[:2]
        with autocast(device, amp):
            outputs = model(rearrange(video, "b v c t h w -> (b v) c t h w"))
        p = rearrange(multi_head_probs(outputs), "(b v) k -> b v k", b=b, v=v).mean(1).cpu()
        ok = batch["valid"].bool()
        if strict and not ok.all():
            raise _strict_error([q for q, v in zip(batch["path"], ok.tolist()) if not v], "videos cannot be decoded")
        p[~ok] = float("nan")
        probs.append(p)
        labels.append(batch["label"])
        valid.append(ok)
        paths += list(batch["path"])
    if missing:
        num_classes = probs[0].shape[1] if probs else 0
        probs.append(torch.full((len(missing), num_classes), float("nan")))
        labels.append(torch.full((len(missing),), -1, dtype=torch.long))
        valid.append(torch.zeros(len(missing), dtype=torch.bool))
        paths += missing
    return {"probs": torch.cat(probs), "labels": torch.cat(labels), "valid": torch.cat(valid), "paths": paths}


def report(result: dict, class_names: Sequence[str], out_dir: str | Path, *, views: dict,
           pairs: Sequence[tuple[int, int]] = (), plot: bool = True) -> dict:
    """Write ``metrics.json``, ``predictions.csv`` and ``confusion_matrix.png`` (<= 200 classes)
    into ``out_dir`` and return the metrics. Unreadable videos are excluded and counted."""
    out_dir = Path(out_dir)
    ok = result["valid"]
    probs, labels = result["probs"][ok], result["labels"][ok]
    failed = [p for p, v in zip(result["paths"], ok.tolist()) if not v]
    metrics = classification_metrics(probs, labels, pairs)
    metrics.update({"num_videos": int(ok.sum()), "num_failed": len(failed), "failed_videos": failed, "views": views})
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    keep = [p for p, v in zip(result["paths"], ok.tolist()) if v]
    write_predictions(out_dir / "predictions.csv", keep, probs, labels, class_names)
    if plot and len(class_names) <= 200 and len(labels):
        cm = confusion_matrix(probs.argmax(1), labels, len(class_names))
        plot_confusion_matrix(cm, class_names, out_dir / "confusion_matrix.png")
    if failed:
        log.warning("%d unreadable videos excluded from the metrics (first: %s)", len(failed), ", ".join(failed[:5]))
    return metrics


def _summary_table(metrics: dict) -> str:
    rows = [(k, f"{metrics[k]:.4f}") for k in ("top1", "top5", "mean_class_acc", "pair_acc") if k in metrics]
    rows += [("num_videos", str(metrics["num_videos"])), ("num_failed", str(metrics["num_failed"])),
             ("views", f"{metrics['views']['clips']} clips x {metrics['views']['crops']} crops")]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _predict_table(paths, probs, class_names, k) -> str:
    lines = []
    values, indices = probs.topk(min(k, probs.shape[1]), dim=1)
    for p, val, idx, ok in zip(paths, values.tolist(), indices.tolist(), (~probs.isnan().any(1)).tolist()):
        lines.append(p)
        if not ok:
            lines.append("    (unreadable video)")
            continue
        lines += [f"    {v:7.2%}  {class_names[i]}" for v, i in zip(val, idx)]
    return "\n".join(lines)


def evaluate_checkpoint(cfg, run_dir: str | Path) -> dict:
    """``eval.py``: re-evaluate a checkpoint on its run's dataset (or on ``data.*`` overrides) with
    ``test.clips`` x ``test.crops`` views, or classify the files in ``predict``."""
    validate_eval(cfg)
    run_dir = Path(run_dir)
    ckpt = load_checkpoint(cfg.checkpoint)
    for key in ("model", "config", "class_names"):
        if key not in ckpt:
            raise ValueError(f"{cfg.checkpoint}: not a video_sparse training checkpoint (no {key!r} entry)")
    train_cfg = OmegaConf.create(ckpt["config"])
    class_names = ckpt["class_names"]
    model_kwargs = {k: v for k, v in OmegaConf.to_container(train_cfg.model).items()
                    if k not in ("_target_", "name", "pretrained")}
    model = build_model(train_cfg.model.name, num_classes=len(class_names), **model_kwargs)
    model.load_state_dict(ckpt["model"])
    device = resolve_device(cfg.trainer.device)
    model.to(device)
    data_cfg = OmegaConf.merge(train_cfg.data, {k: v for k, v in cfg.data.items() if v is not None})
    clips, crops = cfg.test.clips, cfg.test.crops
    views = {"clips": clips, "crops": crops}

    if cfg.predict is not None:
        paths = [cfg.predict] if isinstance(cfg.predict, str) else list(cfg.predict)
        dataset = build_predict_dataset(data_cfg, paths, clips=clips, crops=crops)
        result = predict(model, data_loader(dataset, cfg.trainer.batch_size, cfg.trainer.num_workers, device),
                         device, cfg.trainer.amp, desc="predict")
        write_predictions(run_dir / "predictions.csv", result["paths"], result["probs"].nan_to_num(0.0),
                          result["labels"], class_names, topk=cfg.predict_topk)
        print(_predict_table(result["paths"], result["probs"], class_names, cfg.predict_topk))
        return {"num_videos": int(result["valid"].sum()), "num_failed": int((~result["valid"]).sum())}

    # Labels map through the checkpoint's class names: the ids the model was trained with.
    data_cfg, info = resolve_data(data_cfg, class_names=class_names, class_source=f"the checkpoint {cfg.checkpoint}")
    split = cfg.split
    dataset = build_dataset(data_cfg, split, clips=clips, crops=crops, info=info)
    result = predict(model, data_loader(dataset, cfg.trainer.batch_size, cfg.trainer.num_workers, device),
                     device, cfg.trainer.amp, desc=f"eval {split}", strict=cfg.test.get("strict", False))
    metrics = report(result, class_names, run_dir, views=views, pairs=info.pairs)
    tracker = Tracker(cfg.logger.mode, cfg.logger.project, run_dir, OmegaConf.to_container(cfg, resolve=True),
                      name=cfg.logger.name)
    tracker.summary({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
    if (run_dir / "confusion_matrix.png").is_file():
        tracker.log_image("confusion_matrix", run_dir / "confusion_matrix.png")
    tracker.finish()
    print(f"{cfg.checkpoint} on {split} ({len(dataset)} videos)\n{_summary_table(metrics)}")
    return metrics
