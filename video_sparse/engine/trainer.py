"""The training loop: one straight function from a config to checkpoints and metrics."""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DistributedSampler
from tqdm import tqdm

from ..config import ConfigError, validate_train
from ..data import build_dataset, resolve_data
from ..tracking import Tracker
from .checkpoint import load_checkpoint, remove_partial_writes, save_checkpoint
from .evaluate import predict, report
from .metrics import classification_metrics, multi_head_loss
from .mixup import MixupCutmix
from .optim import param_groups
from .runtime import autocast, data_loader, resolve_device, seed_everything

log = logging.getLogger(__name__)

MIX_STREAM = 1  # keeps the mixup draws of batch i apart from those of sample i ([seed, epoch, index])


def _resume_path(resume, ckpt_dir: Path) -> Path | None:
    if resume in (None, "none"):
        return None
    if resume == "auto":
        last = ckpt_dir / "last.pt"
        return last if last.is_file() else None
    return Path(resume)


def train(cfg: DictConfig, run_dir: str | Path) -> dict:
    """Train ``cfg.model`` on ``cfg.data``; write checkpoints, ``metrics.json``,
    ``predictions.csv`` and ``confusion_matrix.png`` into ``run_dir``. Returns the final metrics."""
    validate_train(cfg)
    run_dir = Path(run_dir)
    ckpt_dir = run_dir / "checkpoints"
    tc = cfg.trainer
    device = resolve_device(tc.device)
    seed_everything(tc.seed)

    data_cfg, info = resolve_data(cfg.data)
    train_set = build_dataset(data_cfg, "train", seed=tc.seed, cache_frames=True, info=info)
    val_set = build_dataset(data_cfg, "val", cache_frames=True, info=info)
    steps_per_epoch = len(train_set) // (tc.batch_size * tc.accumulate)
    if steps_per_epoch == 0:
        raise ConfigError(f"trainer.batch_size x trainer.accumulate ({tc.batch_size * tc.accumulate}) exceeds the "
                          f"training set ({len(train_set)} videos). Fix: a smaller trainer.batch_size")
    sampler = DistributedSampler(train_set, num_replicas=1, rank=0, shuffle=True, seed=tc.seed, drop_last=True)
    train_loader = data_loader(train_set, tc.batch_size, tc.num_workers, device, sampler)
    val_loader = data_loader(val_set, tc.batch_size, tc.num_workers, device)

    model = instantiate(cfg.model, num_classes=len(info.class_names)).to(device)
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info("model %s: %.2fM trainable parameters, %d classes, device %s", cfg.model.name, n_params / 1e6,
             len(info.class_names), device)
    optimizer = instantiate(cfg.optim)(param_groups(model, cfg.optim.weight_decay))
    lr_at = instantiate(cfg.sched)
    base_lr = cfg.optim.lr
    total_steps = steps_per_epoch * tc.epochs
    scaler = torch.amp.GradScaler(device.type, enabled=tc.amp == "fp16")
    mix = None
    if tc.get("mixup", 0.0) or tc.get("cutmix", 0.0):
        mix = MixupCutmix(len(info.class_names), tc.get("mixup", 0.0), tc.get("cutmix", 0.0), tc.get("mix_prob", 1.0),
                          tc.get("mix_switch_prob", 0.5), tc.label_smoothing)

    start_epoch, best_top1, history = 0, -1.0, []
    remove_partial_writes(ckpt_dir)
    resume = _resume_path(tc.resume, ckpt_dir)
    if resume is not None:
        ckpt = load_checkpoint(resume)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scaler.load_state_dict(ckpt["scaler"])
        torch.set_rng_state(ckpt["torch_rng"])
        start_epoch, best_top1, history = ckpt["epoch"], ckpt["best_top1"], ckpt["history"]
        log.info("resumed from %s at epoch %d", resume, start_epoch)

    config = OmegaConf.to_container(cfg, resolve=True)
    config["data"] = OmegaConf.to_container(data_cfg)  # with the resolved data root
    tracker = Tracker(cfg.logger.mode, cfg.logger.project, run_dir, config, name=cfg.logger.name)

    for epoch in range(start_epoch, tc.epochs):
        model.train()
        train_set.set_epoch(epoch)
        sampler.set_epoch(epoch)
        optimizer.zero_grad(set_to_none=True)
        loss_sum, seen, failed, t0 = 0.0, 0, 0, time.time()
        bar = tqdm(train_loader, total=steps_per_epoch * tc.accumulate, desc=f"epoch {epoch + 1}/{tc.epochs}",
                   unit="batch", dynamic_ncols=True)
        for i, batch in enumerate(bar):
            if i == steps_per_epoch * tc.accumulate:  # leftover micro-batches cannot form a full step
                break
            step = epoch * steps_per_epoch + i // tc.accumulate
            lr = lr_at(step, base_lr=base_lr, steps_per_epoch=steps_per_epoch, total_steps=total_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            video, label = batch["video"].to(device, non_blocking=True), batch["label"].to(device, non_blocking=True)
            target, smoothing = label, tc.label_smoothing
            if mix is not None:  # soft targets with the smoothing folded in; reproducible per (seed, epoch, batch)
                video, target = mix(video, label, np.random.default_rng([tc.seed, epoch, i, MIX_STREAM]))
                smoothing = 0.0
            with autocast(device, tc.amp):
                loss = multi_head_loss(model(video), target, smoothing)
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f"loss is {loss.item()} at epoch {epoch + 1}, step {step}; "
                                         "lower optim.lr or set trainer.clip_grad")
            scaler.scale(loss / tc.accumulate).backward()
            if (i + 1) % tc.accumulate == 0:
                if tc.clip_grad:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), tc.clip_grad)
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
            loss_sum += loss.item() * len(label)
            seen += len(label)
            failed += int(batch["failed"].sum())
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", lr=f"{lr:.3g}", clips_s=f"{seen / (time.time() - t0):.1f}")
        bar.close()
        if failed:
            log.warning("epoch %d: %d unreadable training videos were replaced by others", epoch + 1, failed)

        val = predict(model, val_loader, device, tc.amp, desc="val")
        ok = val["valid"]
        metrics = classification_metrics(val["probs"][ok], val["labels"][ok], info.pairs)
        record = {"epoch": epoch + 1, "train_loss": loss_sum / seen, "lr": lr, "train_failed": failed,
                  "epoch_time_s": time.time() - t0, **{f"val_{k}": v for k, v in metrics.items()}}
        history.append(record)
        log.info("epoch %d/%d  loss %.4f  val top1 %.4f  top5 %.4f%s  (%.0fs)", epoch + 1, tc.epochs,
                 record["train_loss"], metrics["top1"], metrics["top5"],
                 f"  pair {metrics['pair_acc']:.4f}" if "pair_acc" in metrics else "", record["epoch_time_s"])
        tracker.log(record, step=(epoch + 1) * steps_per_epoch)

        is_best = metrics["top1"] > best_top1
        best_top1 = max(best_top1, metrics["top1"])
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                 "torch_rng": torch.get_rng_state(), "epoch": epoch + 1, "best_top1": best_top1,
                 "history": history, "config": config, "class_names": info.class_names, "pairs": info.pairs}
        if is_best:
            save_checkpoint(state, ckpt_dir / "best.pt")
        save_checkpoint(state, ckpt_dir / "last.pt")  # last: a kill before this line keeps the previous one

    # Final evaluation of the best weights with the configured views.
    best = load_checkpoint(ckpt_dir / "best.pt")
    model.load_state_dict(best["model"])
    views = {"clips": cfg.test.clips, "crops": cfg.test.crops}
    if (cfg.test.clips, cfg.test.crops) == (1, 1):
        test_set = val_set  # the per-epoch validation views (and their cached frames)
    else:
        test_set = build_dataset(data_cfg, "val", clips=cfg.test.clips, crops=cfg.test.crops, info=info)
    result = predict(model, data_loader(test_set, tc.batch_size, tc.num_workers, device), device, tc.amp, desc="test",
                     strict=cfg.test.get("strict", False))
    final = report(result, info.class_names, run_dir, views=views, pairs=info.pairs)
    final["best_epoch"] = best["epoch"]
    log.info("final (best epoch %d, %d clips x %d crops): top1 %.4f  top5 %.4f  mean class %.4f%s  failed %d",
             best["epoch"], views["clips"], views["crops"], final["top1"], final["top5"], final["mean_class_acc"],
             f"  pair {final['pair_acc']:.4f}" if "pair_acc" in final else "", final["num_failed"])
    tracker.summary({f"final_{k}": v for k, v in final.items() if isinstance(v, (int, float))})
    if (run_dir / "confusion_matrix.png").is_file():
        tracker.log_image("confusion_matrix", run_dir / "confusion_matrix.png")
    tracker.finish()
    return final
