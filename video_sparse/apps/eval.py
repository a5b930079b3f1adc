"""``python eval.py``: re-evaluate a checkpoint on its run's dataset (or on ``data.*`` overrides)
with ``test.clips`` x ``test.crops`` views, or classify files (``predict=[...]``). Under
``torchrun`` every rank evaluates its shard and rank 0 reports the gathered whole."""
from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from . import launch
from .checks import check_eval
from .config import DataConfig, MotionDataConfig


def main() -> None:
    launch.main("eval", evaluate_checkpoint, check_eval)


def checkpoint_data_config(train_data: dict, overrides: DictConfig) -> DictConfig:
    """The run's data config with ``data.*`` overrides (null: keep), completed by the schema's
    defaults for keys a checkpoint of an older video_sparse lacks."""
    schema = MotionDataConfig if train_data.get("name") == "motion" else DataConfig
    known = {k: v for k, v in train_data.items() if k in schema.__dataclass_fields__}
    return OmegaConf.merge(OmegaConf.structured(schema), known, {k: v for k, v in overrides.items() if v is not None})


def evaluate_checkpoint(cfg: DictConfig, run_dir: Path) -> dict:
    """Evaluate (or predict with) ``cfg.checkpoint``; write the report into ``run_dir``. (Imports
    torch here, after the checks, so that the command line answers at once.)"""
    from ..data import build_dataset, build_predict_dataset, resolve_data
    from ..engine.checkpoint import CheckpointError, load_checkpoint
    from ..engine.distributed import init_distributed, main_first
    from ..engine.ema import ema_weights
    from ..engine.evaluate import predict, report, sample_predictions
    from ..engine.metrics import write_predictions
    from ..engine.runtime import data_loader, resolve_device
    from ..models import model_from_config
    from ..tracking import Tracker

    world = init_distributed(cfg.trainer.device)
    ckpt = load_checkpoint(cfg.checkpoint)
    for key in ("model", "config", "class_names"):
        if key not in ckpt:
            raise CheckpointError(f"{cfg.checkpoint}: not a video_sparse training checkpoint (no {key!r} entry)")
    class_names = ckpt["class_names"]
    model = model_from_config(ckpt["config"]["model"], len(class_names))
    if cfg.weights == "ema" and not ckpt.get("ema"):
        raise CheckpointError(f"{cfg.checkpoint}: weights=ema but the run kept no EMA (trainer.ema_decay was null). "
                              "Fix: weights=auto or weights=model")
    use_ema = cfg.weights == "ema" or (cfg.weights == "auto" and bool(ckpt.get("ema")))
    model.load_state_dict(ema_weights(ckpt) if use_ema else ckpt["model"])
    device = resolve_device(cfg.trainer.device, world.local_rank)
    model.to(device)
    data_cfg = checkpoint_data_config(ckpt["config"]["data"], cfg.data)
    clips, crops, rt = cfg.test.clips, cfg.test.crops, cfg.trainer

    if cfg.predict is not None:
        paths = [cfg.predict] if isinstance(cfg.predict, str) else list(cfg.predict)
        dataset = build_predict_dataset(data_cfg, paths, clips=clips, crops=crops)
        result = predict(model, data_loader(dataset, rt.batch_size, rt.num_workers, device), device, rt.amp,
                         desc="predict", progress=world.is_main)
        if world.is_main:
            write_predictions(run_dir / "predictions.csv", result["paths"], result["probs"].nan_to_num(0.0),
                              result["labels"], class_names, topk=cfg.predict_topk)
            print(_predict_table(result["paths"], result["probs"], class_names, cfg.predict_topk))
        return {"num_videos": int(result["valid"].sum()), "num_failed": int((~result["valid"]).sum())}

    # Labels map through the checkpoint's class names: the ids the model was trained with.
    with main_first(world):
        data_cfg, info = resolve_data(data_cfg, class_names=class_names,
                                      class_source=f"the checkpoint {cfg.checkpoint}", progress=world.is_main)
    dataset = build_dataset(data_cfg, cfg.split, clips=clips, crops=crops, info=info)
    result = predict(model, data_loader(dataset, rt.batch_size, rt.num_workers, device), device, rt.amp,
                     desc=f"eval {cfg.split}", strict=cfg.test.strict, progress=world.is_main)
    if not world.is_main:
        return {}
    metrics = report(result, class_names, run_dir, views={"clips": clips, "crops": crops}, split=cfg.split,
                     pairs=info.pairs)
    metrics["weights"] = "ema" if use_ema else "model"
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    with Tracker(cfg.logger.mode, cfg.logger.project, run_dir, OmegaConf.to_container(cfg, resolve=True),
                 name=cfg.logger.name, run_id=cfg.logger.id) as tracker:
        tracker.summary({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
        tracker.log_table("predictions", *sample_predictions(result, class_names))
        if (run_dir / "confusion_matrix.png").is_file():
            tracker.log_image("confusion_matrix", run_dir / "confusion_matrix.png")
    print(f"{cfg.checkpoint} ({metrics['weights']} weights) on {cfg.split} ({data_cfg.get(f'{cfg.split}_ann')}): "
          f"{len(dataset)} videos, {world.size} process(es)\n{_summary_table(metrics)}")
    print(f"report: {run_dir.resolve()}")
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
