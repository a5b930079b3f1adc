"""The training loop: one straight function from a config to checkpoints and metrics.

One process, ``torchrun`` DDP and SLURM tasks run the same code: every rank trains on its shard,
rank 0 alone logs, draws progress bars and writes files.
"""
from __future__ import annotations

import contextlib
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from ..config import ConfigError, validate_train
from ..data import build_dataset, resolve_data
from ..tracking import Tracker
from .checkpoint import (CheckpointError, check_compatible, keep_epoch_copy, load_checkpoint, remove_partial_writes,
                         rng_state, save_checkpoint, set_rng_state)
from .distributed import (TrainSampler, all_gather_objects, all_reduce_sum, any_rank, barrier, broadcast_object,
                          init_distributed, main_first)
from .ema import ModelEma, ema_weights
from .evaluate import predict, report, sample_predictions
from .metrics import classification_metrics, multi_head_loss
from .mixup import MixupCutmix
from .optim import param_groups
from .precise_bn import recompute_bn_stats
from .runtime import autocast, data_loader, resolve_device, seed_everything, to_channels_last

log = logging.getLogger(__name__)

MIX_STREAM = 1  # keeps the mixup draws of batch i apart from those of sample i ([seed, epoch, index])


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite (``trainer.nonfinite=error``)."""


def _resume_path(resume, ckpt_dir: Path) -> Path | None:
    if resume in (None, "none"):
        return None
    if resume == "auto":
        last = ckpt_dir / "last.pt"
        return last if last.is_file() else None
    return Path(resume)


def train(cfg: DictConfig, run_dir: str | Path) -> dict:
    """Train ``cfg.model`` on ``cfg.data``; write checkpoints, ``metrics.json``,
    ``predictions.csv``, ``per_class.csv`` and ``confusion_matrix.png`` into ``run_dir``.
    Returns the final metrics."""
    validate_train(cfg)
    run_dir = Path(run_dir)
    ckpt_dir = run_dir / "checkpoints"
    tc = cfg.trainer
    world = init_distributed(tc.device)
    device = resolve_device(tc.device, world.local_rank)
    seed_everything(tc.seed + world.rank)  # own dropout masks per rank; the data order comes from the sampler
    if world.is_main:
        log.info("run directory: %s", run_dir.resolve())

    with main_first(world):  # rank 0 generates or indexes the data before the others read it
        data_cfg, info = resolve_data(cfg.data, progress=world.is_main)
        train_set = build_dataset(data_cfg, "train", seed=tc.seed, cache_frames=True, info=info)
        val_set = build_dataset(data_cfg, "val", cache_frames=True, info=info)
    sampler = TrainSampler(train_set, world, tc.seed)
    steps_per_epoch = len(sampler) // (tc.batch_size * tc.accumulate)
    batches_per_epoch = steps_per_epoch * tc.accumulate  # leftover micro-batches cannot form a full step
    if steps_per_epoch == 0:
        raise ConfigError(f"trainer.batch_size x trainer.accumulate x processes ({tc.batch_size * tc.accumulate} x "
                          f"{world.size}) exceeds the training set ({len(train_set)} videos). Fix: a smaller "
                          "trainer.batch_size")
    train_loader = data_loader(train_set, tc.batch_size, tc.num_workers, device, sampler, train=True)
    val_loader = data_loader(val_set, tc.batch_size, tc.num_workers, device)

    model = instantiate(cfg.model, num_classes=len(info.class_names))
    if tc.sync_bn and world.distributed:
        if device.type != "cuda":
            raise ConfigError("trainer.sync_bn=true needs CUDA devices (SyncBatchNorm has no CPU kernels). "
                              "Fix: trainer.sync_bn=false on CPU")
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device)
    if tc.channels_last:
        to_channels_last(model)
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info("model %s: %.2fM trainable parameters, %d classes, device %s, %d process(es)", cfg.model.name,
             n_params / 1e6, len(info.class_names), device, world.size)
    ema = ModelEma(model, tc.ema_decay, tc.ema_warmup_steps) if tc.ema_decay else None
    optimizer = instantiate(cfg.optim)(param_groups(model, cfg.optim.weight_decay, tc.layer_decay))
    lr_at = instantiate(cfg.sched)  # a function of the step: the step counter is the scheduler's state
    total_steps = steps_per_epoch * tc.epochs
    scaler = torch.amp.GradScaler(device.type, enabled=tc.amp == "fp16")
    mix = None
    if tc.mixup or tc.cutmix:
        mix = MixupCutmix(len(info.class_names), tc.mixup, tc.cutmix, tc.mix_prob, tc.mix_switch_prob,
                          tc.label_smoothing)

    start_epoch, start_batch, step, best_top1, history = 0, 0, 0, -1.0, []
    totals = {"loss_sum": 0.0, "seen": 0, "failed": 0, "skipped": 0}  # this rank's, over the current epoch
    if world.is_main:
        remove_partial_writes(ckpt_dir)
    barrier()
    resume = _resume_path(tc.resume, ckpt_dir)
    if resume is not None:
        ckpt = load_checkpoint(resume)
        check_compatible(ckpt, resume, model, cfg.model.name, info.class_names)
        if "rng" not in ckpt:
            raise CheckpointError(f"{resume}: written by an earlier video_sparse without the resume state (step, random "
                                  f"generators). Fix: start a new run initialised from it with model.pretrained={resume}")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scaler.load_state_dict(ckpt["scaler"])
        if ema is not None and ckpt["ema"]:
            ema.load_state_dict(ckpt["ema"])
        elif ema is not None:  # EMA switched on for the rest of a run
            ema.module.load_state_dict(ckpt["model"])
        start_epoch, start_batch, step = ckpt["epoch"], ckpt["batch"], ckpt["step"]
        best_top1, history = ckpt["best_top1"], ckpt["history"]
        if len(ckpt["rng"]) == world.size:
            set_rng_state(ckpt["rng"][world.rank])
            totals = ckpt["totals"][world.rank]
        else:  # other shards: the interrupted epoch starts again
            log.warning("resuming %d processes from a run of %d: the epoch restarts and random streams are new, so "
                        "the run will not repeat an uninterrupted one exactly", world.size, len(ckpt["rng"]))
            step -= start_batch // tc.accumulate
            start_batch = 0
        log.info("resumed from %s at epoch %d, batch %d", resume, start_epoch, start_batch)

    ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) \
        if world.distributed else None
    net = ddp or model
    if tc.compile:
        net = torch.compile(net)

    def checkpoint_state(epoch_done: int, batch: int) -> dict:
        """Everything a resumed run needs (all ranks must call it: the RNG states are gathered)."""
        gathered = all_gather_objects((rng_state(), dict(totals)))
        return {"model": model.state_dict(), "ema": ema.state_dict() if ema else None,
                "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(), "epoch": epoch_done,
                "batch": batch, "step": step, "rng": [r for r, _ in gathered], "totals": [t for _, t in gathered],
                "best_top1": best_top1, "history": history, "config": config, "class_names": info.class_names,
                "pairs": info.pairs, "world_size": world.size}

    def validate(m: torch.nn.Module, desc: str) -> dict:
        val = predict(m, val_loader, device, tc.amp, desc=desc, progress=world.is_main)
        return classification_metrics(val["probs"][val["valid"]], val["labels"][val["valid"]], info.pairs)

    config = OmegaConf.to_container(cfg, resolve=True)
    config["data"] = OmegaConf.to_container(data_cfg)  # with the resolved data root
    tracker = Tracker(cfg.logger.mode, cfg.logger.project, run_dir, config, name=cfg.logger.name,
                      run_id=cfg.logger.get("id"), enabled=world.is_main)
    with tracker:
        for epoch in range(start_epoch, tc.epochs):
            model.train()
            train_set.set_epoch(epoch)
            sampler.set_epoch(epoch, start=start_batch * tc.batch_size)
            optimizer.zero_grad(set_to_none=True)
            skip_step, t_epoch, t_last = False, time.time(), time.time()
            bar = tqdm(train_loader, initial=start_batch, total=batches_per_epoch, unit="batch", dynamic_ncols=True,
                       desc=f"epoch {epoch + 1}/{tc.epochs}", disable=not world.is_main)
            for i, batch in enumerate(bar, start=start_batch):
                if i == batches_per_epoch:
                    break
                data_time = time.time() - t_last
                lr = lr_at(step, base_lr=cfg.optim.lr, steps_per_epoch=steps_per_epoch, total_steps=total_steps)
                for group in optimizer.param_groups:
                    group["lr"] = lr * group["lr_scale"]
                video, label = batch["video"].to(device, non_blocking=True), batch["label"].to(device, non_blocking=True)
                if tc.channels_last:
                    video = to_channels_last(video)
                target, smoothing = label, tc.label_smoothing
                if mix is not None:  # soft targets with the smoothing folded in; reproducible per (seed, epoch, batch)
                    video, target = mix(video, label, np.random.default_rng([tc.seed, epoch, i, MIX_STREAM, world.rank]))
                    smoothing = 0.0
                syncing = (i + 1) % tc.accumulate == 0  # DDP all-reduces gradients on this micro-batch only
                with ddp.no_sync() if ddp is not None and not syncing else contextlib.nullcontext():
                    with autocast(device, tc.amp):
                        loss = multi_head_loss(net(video), target, smoothing)
                    finite = not any_rank(not math.isfinite(loss.item()))  # every rank takes the same branch
                    if finite:
                        scaler.scale(loss / tc.accumulate).backward()
                if not finite:
                    if tc.nonfinite == "error":
                        raise NonFiniteLossError(
                            f"loss is {loss.item()} at epoch {epoch + 1}, step {step}; the last good checkpoint is "
                            f"{ckpt_dir / 'last.pt'}. Fix: lower optim.lr or set trainer.clip_grad, then resume; or "
                            "trainer.nonfinite=skip to skip such steps")
                    skip_step = True
                else:
                    totals["loss_sum"] += loss.item() * len(label)
                    totals["seen"] += len(label)
                totals["failed"] += int(batch["failed"].sum())
                if syncing:
                    if skip_step:  # drop the whole accumulated step; the schedule moves on
                        totals["skipped"] += 1
                    else:
                        if tc.clip_grad:
                            scaler.unscale_(optimizer)
                            torch.nn.utils.clip_grad_norm_(model.parameters(), tc.clip_grad)
                        scaler.step(optimizer)
                        scaler.update()
                        if ema is not None:
                            ema.update(model)
                    optimizer.zero_grad(set_to_none=True)
                    skip_step = False
                    step += 1
                    if step % cfg.logger.log_every == 0:
                        tracker.log({"train/loss": loss.item(), "train/lr": lr, "train/data_time_s": data_time,
                                     "train/clips_per_s": len(label) * world.size / (time.time() - t_last)}, step=step)
                    if tc.save_every_steps and step % tc.save_every_steps == 0 and i + 1 < batches_per_epoch:
                        state = checkpoint_state(epoch, i + 1)
                        if world.is_main:
                            save_checkpoint(state, ckpt_dir / "last.pt")
                seen = max(totals["seen"], 1)
                bar.set_postfix(loss=f"{totals['loss_sum'] / seen:.3f}", lr=f"{lr:.3g}", data_s=f"{data_time:.2f}")
                t_last = time.time()
            bar.close()
            start_batch = 0
            loss_sum, seen, failed, skipped = all_reduce_sum([totals[k] for k in ("loss_sum", "seen", "failed", "skipped")])
            if failed:
                log.warning("epoch %d: %d unreadable training videos were replaced by others", epoch + 1, failed)
            if skipped:
                log.warning("epoch %d: %d steps skipped for a non-finite loss", epoch + 1, skipped)

            if tc.precise_bn:
                sampler.set_epoch(epoch)
                for m in [model] + ([ema.module] if ema else []):
                    recompute_bn_stats(m, train_loader, tc.precise_bn, lambda m, b: m(b["video"].to(device)))
            metrics = validate(model, "val")
            record = {"epoch": epoch + 1, "train_loss": loss_sum / max(seen, 1), "lr": lr, "train_failed": int(failed),
                      "train_skipped_steps": int(skipped), "epoch_time_s": time.time() - t_epoch,
                      **{f"val_{k}": v for k, v in metrics.items()}}
            monitored = metrics["top1"]
            if ema is not None:
                ema_metrics = validate(ema.module, "val ema")
                record.update({f"val_ema_{k}": v for k, v in ema_metrics.items()})
                monitored = ema_metrics["top1"]
            history.append(record)
            log.info("epoch %d/%d  loss %.4f  val top1 %.4f  top5 %.4f%s%s  (%.0fs)", epoch + 1, tc.epochs,
                     record["train_loss"], metrics["top1"], metrics["top5"],
                     f"  pair {metrics['pair_acc']:.4f}" if "pair_acc" in metrics else "",
                     f"  ema top1 {monitored:.4f}" if ema is not None else "", record["epoch_time_s"])
            tracker.log(record, step=step)

            is_best = monitored > best_top1
            best_top1 = max(best_top1, monitored)
            totals = {"loss_sum": 0.0, "seen": 0, "failed": 0, "skipped": 0}
            state = checkpoint_state(epoch + 1, 0)
            if world.is_main:
                if is_best:
                    save_checkpoint(state, ckpt_dir / "best.pt")
                save_checkpoint(state, ckpt_dir / "last.pt")  # last: a kill before this line keeps the previous one
                keep_epoch_copy(ckpt_dir / "last.pt", epoch + 1, tc.keep_epochs)
            barrier()

        # Final evaluation of the best weights (their EMA when it is on) with the configured views.
        best = load_checkpoint(ckpt_dir / "best.pt")
        weights = "ema" if best.get("ema") else "model"
        model.load_state_dict(ema_weights(best) if weights == "ema" else best["model"])
        views = {"clips": cfg.test.clips, "crops": cfg.test.crops}
        if (cfg.test.clips, cfg.test.crops) == (1, 1):
            test_set = val_set  # the per-epoch validation views (and their cached frames)
        else:
            test_set = build_dataset(data_cfg, "val", clips=cfg.test.clips, crops=cfg.test.crops, info=info)
        result = predict(model, data_loader(test_set, tc.batch_size, tc.num_workers, device), device, tc.amp,
                         desc="test", strict=cfg.test.strict, progress=world.is_main)
        final = None
        if world.is_main:
            final = report(result, info.class_names, run_dir, views=views, pairs=info.pairs)
            final.update(best_epoch=best["epoch"], weights=weights)
            log.info("final (best epoch %d, %s weights, %d clips x %d crops): top1 %.4f  top5 %.4f  mean class %.4f%s"
                     "  failed %d", best["epoch"], weights, views["clips"], views["crops"], final["top1"], final["top5"],
                     final["mean_class_acc"], f"  pair {final['pair_acc']:.4f}" if "pair_acc" in final else "",
                     final["num_failed"])
            tracker.summary({f"final_{k}": v for k, v in final.items() if isinstance(v, (int, float))})
            tracker.log_table("predictions", *sample_predictions(result, info.class_names), step=step)
            if (run_dir / "confusion_matrix.png").is_file():
                tracker.log_image("confusion_matrix", run_dir / "confusion_matrix.png", step=step)
            log.info("run directory: %s", run_dir.resolve())
    return broadcast_object(final)
