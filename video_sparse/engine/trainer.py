"""The training loop: :func:`train` reads top to bottom as its steps — set up, resume, then per
epoch :func:`train_one_epoch` and :func:`validate_and_checkpoint`, then :func:`final_test`.

One process, ``torchrun`` DDP and SLURM tasks run the same code: every rank trains on its shard,
rank 0 alone logs, draws progress bars and writes files. The config is the app's validated
``TrainConfig`` (``video_sparse/apps/config.py``); this module reads it, never checks it.
"""
from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from ..data import build_dataset, dataset_classes, resolve_data
from ..data.build import DataInfo
from ..errors import UserError, place_error, write_error
from ..models import model_from_config
from ..tracking import Tracker
from .checkpoint import (check_compatible, check_resumable, keep_epoch_copy, load_checkpoint, remove_partial_writes,
                         rng_state, save_checkpoint, set_rng_state)
from .distributed import (TrainSampler, World, all_gather_objects, all_reduce_sum, any_rank, barrier, broadcast_object,
                          init_distributed, main_first)
from .ema import ModelEma, ema_weights
from .evaluate import EvaluationStopped, predict, report, sample_predictions
from .metrics import classification_metrics, multi_head_loss
from .mixup import MixupCutmix
from .optim import param_groups
from .precise_bn import recompute_bn_stats
from .preemption import Preempted, Preemption, handled_signals
from .runtime import autocast, data_loader, resolve_device, seed_everything, to_channels_last

log = logging.getLogger(__name__)

MIX_STREAM = 1  # keeps the mixup draws of batch i apart from those of sample i ([seed, epoch, index])


class NonFiniteLossError(UserError, FloatingPointError):
    """The loss became NaN or infinite (``trainer.nonfinite=error``)."""


class TrainSetupError(UserError, ValueError):
    """Options that only the built run can refuse (the training set's size, the devices)."""


def _zero_totals() -> dict:
    return {"loss_sum": 0.0, "seen": 0, "failed": 0, "skipped": 0}  # this rank's, over the current epoch


@dataclass
class Run:
    """What the steps of a training share: the built objects and the loop's state."""

    cfg: Any
    run_dir: Path
    world: World
    device: torch.device
    info: DataInfo
    data_cfg: Any
    model: torch.nn.Module
    net: torch.nn.Module  # what the loop calls: the model, wrapped by DDP and torch.compile when on
    ddp: DistributedDataParallel | None
    ema: ModelEma | None
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    lr_at: Callable[..., float]
    mix: MixupCutmix | None
    preemption: Preemption
    sampler: TrainSampler
    train_set: Any
    val_set: Any
    train_loader: Any
    val_loader: Any
    steps_per_epoch: int
    epoch: int = 0  # the first epoch to run
    batch: int = 0  # the first batch of that epoch (a run resumed mid-epoch)
    step: int = 0
    best_top1: float = -1.0
    history: list = field(default_factory=list)
    totals: dict = field(default_factory=_zero_totals)
    lr: float = 0.0  # of the last step
    epoch_start: float = 0.0  # time.time() when the current epoch started
    validation_pending: bool = False  # resumed from a checkpoint written while validating
    last_good: str = "no checkpoint was written yet"  # what a failed save names
    resumed_from: Path | None = None

    @property
    def ckpt_dir(self) -> Path:
        return self.run_dir / "checkpoints"

    @property
    def batches_per_epoch(self) -> int:  # leftover micro-batches cannot form a full step
        return self.steps_per_epoch * self.cfg.trainer.accumulate


def train(cfg, run_dir: str | Path) -> dict:
    """Train ``cfg.model`` on ``cfg.data``; write checkpoints, ``metrics.json``,
    ``predictions.csv``, ``per_class.csv`` and ``confusion_matrix.png`` into ``run_dir``.
    Returns the final metrics."""
    run = set_up(cfg, Path(run_dir))
    resume(run)
    try:
        with Tracker(cfg.logger.mode, cfg.logger.project, run.run_dir, run_config(run), name=cfg.logger.name,
                     run_id=cfg.logger.id, enabled=run.world.is_main) as tracker, run.preemption:
            for epoch in range(run.epoch, cfg.trainer.epochs):
                if not run.validation_pending:  # else the epoch's training is in the checkpoint
                    train_one_epoch(run, epoch, tracker)
                validate_and_checkpoint(run, epoch, tracker)
                if signum := run.preemption.requested():
                    raise Preempted(signum, f"after epoch {epoch + 1}")
            final = final_test(run, tracker)
    except Preempted as e:
        if run.world.is_main:  # one line for the job, not one per rank
            log.warning("%s: %s holds step %d. Fix: run the same command (same hydra.run.dir, trainer.resume=auto) "
                        "to continue", e, run.ckpt_dir / "last.pt", run.step)
        run.preemption.exit(e)
    return broadcast_object(final)


def build_model(cfg, class_names: list[str], world: World, device: torch.device) -> torch.nn.Module:
    """The run's model (``model_from_config``, the one way every app builds one) on ``device``."""
    tc = cfg.trainer
    model = model_from_config(OmegaConf.to_container(cfg.model, resolve=True), len(class_names))
    if tc.sync_bn and world.distributed:
        if device.type != "cuda":
            raise TrainSetupError("trainer.sync_bn=true needs CUDA devices (SyncBatchNorm has no CPU kernels). "
                             "Fix: trainer.sync_bn=false on CPU")
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device)
    if tc.channels_last:
        to_channels_last(model)
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info("model %s: %.2fM trainable parameters, %d classes, device %s, %d process(es)", cfg.model.name,
             n_params / 1e6, len(class_names), device, world.size)
    return model


def set_up(cfg, run_dir: Path) -> Run:
    """Device and seeds, the model (before any data is generated or indexed, so that a model its
    options cannot build fails at once), the datasets and loaders, optimiser, schedule, mixing."""
    tc = cfg.trainer
    world = init_distributed(tc.device)
    device = resolve_device(tc.device, world.local_rank)
    seed_everything(tc.seed + world.rank)  # own dropout masks per rank; the data order comes from the sampler
    if world.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        log.info("run directory: %s", run_dir.resolve())
    class_names, class_source = dataset_classes(cfg.data)
    model = build_model(cfg, class_names, world, device)
    with main_first(world):  # rank 0 generates or indexes the data before the others read it
        data_cfg, info = resolve_data(cfg.data, progress=world.is_main, class_names=class_names,
                                      class_source=class_source)
        train_set = build_dataset(data_cfg, "train", seed=tc.seed, cache_frames=True, info=info)
        val_set = build_dataset(data_cfg, "val", cache_frames=True, info=info)
    sampler = TrainSampler(train_set, world, tc.seed)
    steps_per_epoch = len(sampler) // (tc.batch_size * tc.accumulate)
    if steps_per_epoch == 0:
        raise TrainSetupError(
            f"trainer.batch_size x trainer.accumulate x processes ({tc.batch_size * tc.accumulate} x {world.size}) "
            f"exceeds the training set ({len(train_set)} videos). Fix: a smaller trainer.batch_size")
    ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) \
        if world.distributed else None
    mix = MixupCutmix(len(class_names), tc.mixup, tc.cutmix, tc.mix_prob, tc.mix_switch_prob, tc.label_smoothing) \
        if tc.mixup or tc.cutmix else None
    signals = handled_signals(tc.preempt_signals)  # the loop handles them; its loader workers ignore them
    return Run(cfg=cfg, run_dir=run_dir, world=world, device=device, info=info, data_cfg=data_cfg, model=model,
               net=torch.compile(ddp or model) if tc.compile else ddp or model, ddp=ddp,
               ema=ModelEma(model, tc.ema_decay, tc.ema_warmup_steps) if tc.ema_decay else None,
               optimizer=instantiate(cfg.optim)(param_groups(model, cfg.optim.weight_decay, tc.layer_decay)),
               scaler=torch.amp.GradScaler(device.type, enabled=tc.amp == "fp16"),
               lr_at=instantiate(cfg.sched),  # a function of the step: the step counter is the schedule's state
               mix=mix, preemption=Preemption(tc.preempt_signals), sampler=sampler, train_set=train_set,
               val_set=val_set,
               train_loader=data_loader(train_set, tc.batch_size, tc.num_workers, device, sampler, train=True,
                                        ignore_signals=signals, timeout=tc.loader_timeout),
               val_loader=data_loader(val_set, tc.batch_size, tc.num_workers, device, ignore_signals=signals,
                                      timeout=tc.loader_timeout),
               steps_per_epoch=steps_per_epoch)


def _resume_path(resume, ckpt_dir: Path) -> Path | None:
    if resume in (None, "none"):
        return None
    if resume == "auto":
        last = ckpt_dir / "last.pt"
        return last if last.is_file() else None
    return Path(resume)


def resume(run: Run) -> None:
    """Continue from ``trainer.resume``: weights, EMA, optimiser, scaler, position, every rank's
    random streams and running totals — of a run with the same settings (``check_resumable``)."""
    if run.world.is_main:
        remove_partial_writes(run.ckpt_dir)
    barrier()
    path = _resume_path(run.cfg.trainer.resume, run.ckpt_dir)
    if path is None:
        return
    ckpt = load_checkpoint(path)
    check_resumable(ckpt, path, run_config(run), run.world.size)
    check_compatible(ckpt, path, run.model, run.cfg.model.name, run.info.class_names)
    run.model.load_state_dict(ckpt["model"])
    run.optimizer.load_state_dict(ckpt["optimizer"])
    run.scaler.load_state_dict(ckpt["scaler"])
    if run.ema is not None:  # an EMA switched on for the rest of a run starts from the weights
        run.ema.load_state_dict(ckpt["ema"]) if ckpt["ema"] else run.ema.module.load_state_dict(ckpt["model"])
    run.epoch, run.batch, run.step = ckpt["epoch"], ckpt["batch"], ckpt["step"]
    run.best_top1, run.history = ckpt["best_top1"], ckpt["history"]
    run.lr, run.validation_pending = ckpt.get("lr", 0.0), ckpt.get("validation_pending", False)
    run.epoch_start = time.time() - ckpt.get("epoch_time_s", 0.0)
    set_rng_state(ckpt["rng"][run.world.rank])
    run.totals = ckpt["totals"][run.world.rank]
    run.resumed_from = path
    run.last_good = f"the last good checkpoint is {path}: epoch {run.epoch}, batch {run.batch}, step {run.step}"
    log.info("resumed from %s at epoch %d, batch %d%s", path, run.epoch, run.batch,
             " (its validation first)" if run.validation_pending else "")


def run_config(run: Run) -> dict:
    """The resolved config, with the data root the run really read (stored in every checkpoint)."""
    config = OmegaConf.to_container(run.cfg, resolve=True)
    config["data"] = OmegaConf.to_container(run.data_cfg)
    return config


def checkpoint_state(run: Run, epoch_done: int, batch: int, validation_pending: bool = False) -> dict:
    """Everything a resumed run needs (all ranks must call it: the random states are gathered).
    ``validation_pending``: epoch ``epoch_done`` is trained and its validation is still to run."""
    gathered = all_gather_objects((rng_state(), dict(run.totals)))
    return {"validation_pending": validation_pending, "lr": run.lr, "epoch_time_s": time.time() - run.epoch_start,
            "model": run.model.state_dict(), "ema": run.ema.state_dict() if run.ema else None,
            "optimizer": run.optimizer.state_dict(), "scaler": run.scaler.state_dict(), "epoch": epoch_done,
            "batch": batch, "step": run.step, "rng": [r for r, _ in gathered], "totals": [t for _, t in gathered],
            "best_top1": run.best_top1, "history": list(run.history), "config": run_config(run),
            "class_names": run.info.class_names, "pairs": run.info.pairs, "world_size": run.world.size}


def train_one_epoch(run: Run, epoch: int, tracker: Tracker) -> None:
    """One pass over this rank's shard from ``run.batch``: forward, backward, an optimiser step
    every ``trainer.accumulate`` batches, per-step logging and mid-epoch checkpoints."""
    tc = run.cfg.trainer
    if run.batch == 0:  # else resumed mid-epoch: the checkpoint said when the epoch started
        run.epoch_start = time.time()
    run.model.train()
    run.train_set.set_epoch(epoch)
    run.sampler.set_epoch(epoch, start=run.batch * tc.batch_size)
    run.optimizer.zero_grad(set_to_none=True)
    skip_step, t_last, lr = False, time.time(), run.lr
    bar = tqdm(run.train_loader, initial=run.batch, total=run.batches_per_epoch, unit="batch", dynamic_ncols=True,
               desc=f"epoch {epoch + 1}/{tc.epochs}", disable=not run.world.is_main)
    for i, batch in enumerate(bar, start=run.batch):
        if i == run.batches_per_epoch:
            break
        data_time = time.time() - t_last
        lr = run.lr_at(run.step, base_lr=run.cfg.optim.lr, steps_per_epoch=run.steps_per_epoch,
                       total_steps=run.steps_per_epoch * tc.epochs)
        for group in run.optimizer.param_groups:
            group["lr"] = lr * group["lr_scale"]
        loss, finite = forward_backward(run, batch, epoch, i)
        skip_step = skip_step or not finite
        run.totals["failed"] += int(batch["failed"].sum())
        if (i + 1) % tc.accumulate == 0:
            optimizer_step(run, skip_step)
            skip_step = False
            if run.step % run.cfg.logger.log_every == 0:
                tracker.log({"train/loss": loss, "train/lr": lr, "train/data_time_s": data_time,
                             "train/clips_per_s": len(batch["label"]) * run.world.size / (time.time() - t_last)},
                            step=run.step)
            signum = run.preemption.requested()
            if signum or tc.save_every_steps and run.step % tc.save_every_steps == 0:
                if i + 1 < run.batches_per_epoch:  # else validate_and_checkpoint writes it
                    state = checkpoint_state(run, epoch, i + 1)
                    if run.world.is_main:
                        write_checkpoint(run, state, "last.pt")
                    barrier()
                    if signum:
                        raise Preempted(signum, f"at epoch {epoch + 1}, step {run.step}")
        seen = max(run.totals["seen"], 1)
        bar.set_postfix(loss=f"{run.totals['loss_sum'] / seen:.3f}", lr=f"{lr:.3g}", data_s=f"{data_time:.2f}")
        t_last = time.time()
    bar.close()
    run.batch = 0
    run.lr = lr


def forward_backward(run: Run, batch: dict, epoch: int, i: int) -> tuple[float, bool]:
    """Loss of micro-batch ``i`` and its backward pass (gradients all-reduced on the last
    micro-batch of a step only). Returns the loss and whether it was finite on every rank; a
    non-finite one stops the run (``trainer.nonfinite=error``) or marks the step to skip."""
    tc = run.cfg.trainer
    to_model = run.train_loader.dataset.transform.to_model  # uint8 clips -> normalised float, on the device
    video = to_model(batch["video"].to(run.device, non_blocking=True), batch["erase"])
    label = batch["label"].to(run.device, non_blocking=True)
    if tc.channels_last:
        video = to_channels_last(video)
    target, smoothing = label, tc.label_smoothing
    if run.mix is not None:  # soft targets with the smoothing folded in; reproducible per (seed, epoch, batch)
        video, target = run.mix(video, label, np.random.default_rng([tc.seed, epoch, i, MIX_STREAM, run.world.rank]))
        smoothing = 0.0
    syncing = (i + 1) % tc.accumulate == 0
    with run.ddp.no_sync() if run.ddp is not None and not syncing else contextlib.nullcontext():
        with autocast(run.device, tc.amp):
            loss = multi_head_loss(run.net(video), target, smoothing)
        finite = not any_rank(not math.isfinite(loss.item()))  # every rank takes the same branch
        if finite:
            run.scaler.scale(loss / tc.accumulate).backward()
    if finite:
        run.totals["loss_sum"] += loss.item() * len(label)
        run.totals["seen"] += len(label)
    elif tc.nonfinite == "error":
        last = run.ckpt_dir / "last.pt"
        where = f"the last good checkpoint is {last}" if last.is_file() else "no checkpoint was written yet"
        then = "then resume" if last.is_file() else "then start again"
        raise NonFiniteLossError(f"loss is {loss.item()} at epoch {epoch + 1}, step {run.step}; {where}. Fix: lower "
                                 f"optim.lr or set trainer.clip_grad, {then}; or trainer.nonfinite=skip to skip "
                                 "such steps")
    return loss.item(), finite


def optimizer_step(run: Run, skip: bool) -> None:
    """Clip, step, update the scaler and the EMA — or drop the whole accumulated step (``skip``);
    the schedule moves on either way."""
    if skip:
        run.totals["skipped"] += 1
    else:
        if run.cfg.trainer.clip_grad:
            run.scaler.unscale_(run.optimizer)
            torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.cfg.trainer.clip_grad)
        run.scaler.step(run.optimizer)
        run.scaler.update()
        if run.ema is not None:
            run.ema.update(run.model)
    run.optimizer.zero_grad(set_to_none=True)
    run.step += 1


def _val_metrics(run: Run, model: torch.nn.Module, desc: str) -> dict:
    val = predict(model, run.val_loader, run.device, run.cfg.trainer.amp, desc=desc, progress=run.world.is_main,
                  stop=run.preemption.requested)
    return classification_metrics(val["probs"][val["valid"]], val["labels"][val["valid"]], run.info.pairs)


def validate_and_checkpoint(run: Run, epoch: int, tracker: Tracker) -> None:
    """Epoch totals over ranks, precise BN, validation of the weights (and their EMA, which is then
    the monitored one), the history record, ``best.pt`` / ``last.pt`` / ``epoch_NNN.pt``.

    A preemption signal stops the validation at the next batch: ``last.pt`` then holds the trained
    epoch with its validation pending (and the random states of before it), which a resumed run
    runs first — a scheduler's grace period is minutes, a Kinetics validation longer."""
    pending = checkpoint_state(run, epoch, run.batches_per_epoch, validation_pending=True)
    try:
        record, monitored = validate(run, epoch)
    except EvaluationStopped as e:
        if run.world.is_main:
            write_checkpoint(run, pending, "last.pt")
        barrier()
        raise Preempted(e.signum, f"while validating epoch {epoch + 1} (its validation runs again on resume)") from None
    run.history.append(record)
    tracker.log(record, step=run.step)
    is_best = monitored > run.best_top1
    run.best_top1 = max(run.best_top1, monitored)
    run.totals = _zero_totals()
    run.validation_pending, run.batch = False, 0
    state = checkpoint_state(run, epoch + 1, 0)
    if run.world.is_main:
        if is_best:
            write_checkpoint(run, state, "best.pt")
        write_checkpoint(run, state, "last.pt")  # last: a kill before this line keeps the previous one
        write_checkpoint(run, None, f"epoch_{epoch + 1:03d}.pt",
                         lambda: keep_epoch_copy(run.ckpt_dir / "last.pt", epoch + 1, run.cfg.trainer.keep_epochs))
    barrier()


def write_checkpoint(run: Run, state: dict | None, name: str, write: Callable[[], None] | None = None) -> None:
    """``state`` into ``checkpoints/<name>`` (or ``write()``). A full disk ends the run with one line
    naming the last checkpoint that was written whole (atomic saves: it is still there)."""
    path = run.ckpt_dir / name
    try:
        write() if write else save_checkpoint(state, path)
    except Exception as e:  # torch.save turns a full disk into a RuntimeError raised during the OSError
        if (disk := place_error(e)) is None:
            raise
        raise write_error(disk, f"the checkpoint {path}", f"free space in {run.ckpt_dir} ({run.last_good}), then run "
                          "the same command to continue from it") from e
    if name == "last.pt":
        run.last_good = f"the last good checkpoint is {path}: epoch {state['epoch']}, batch {state['batch']}, " \
                        f"step {state['step']}"


def validate(run: Run, epoch: int) -> tuple[dict, float]:
    """Precise BN, then the validation metrics of epoch ``epoch``: its history record and the
    monitored top-1 (the EMA's when it is on)."""
    tc = run.cfg.trainer
    loss_sum, seen, failed, skipped = all_reduce_sum([run.totals[k] for k in ("loss_sum", "seen", "failed", "skipped")])
    if failed:
        log.warning("epoch %d: %d unreadable training videos were replaced by others", epoch + 1, failed)
    if skipped:
        log.warning("epoch %d: %d steps skipped for a non-finite loss", epoch + 1, skipped)
    if tc.precise_bn:
        run.sampler.set_epoch(epoch)
        for m in [run.model] + ([run.ema.module] if run.ema else []):
            recompute_bn_stats(m, run.train_loader, tc.precise_bn, lambda m, b: m(
                run.train_loader.dataset.transform.to_model(b["video"].to(run.device), b["erase"])))
    metrics = _val_metrics(run, run.model, "val")
    record = {"epoch": epoch + 1, "train_loss": loss_sum / max(seen, 1), "lr": run.lr, "train_failed": int(failed),
              "train_skipped_steps": int(skipped), "epoch_time_s": time.time() - run.epoch_start,
              **{f"val_{k}": v for k, v in metrics.items()}}
    monitored = metrics["top1"]
    if run.ema is not None:
        ema_metrics = _val_metrics(run, run.ema.module, "val ema")
        record.update({f"val_ema_{k}": v for k, v in ema_metrics.items()})
        monitored = ema_metrics["top1"]
    log.info("epoch %d/%d  loss %.4f  val top1 %.4f  top5 %.4f%s%s  (%.0fs)", epoch + 1, tc.epochs,
             record["train_loss"], metrics["top1"], metrics["top5"],
             f"  pair {metrics['pair_acc']:.4f}" if "pair_acc" in metrics else "",
             f"  ema top1 {monitored:.4f}" if run.ema is not None else "", record["epoch_time_s"])
    return record, monitored


def best_weights_file(run: Run) -> Path:
    """``best.pt``; without one (no validation of this run beat the best of the run it resumed, or
    every validation top-1 was NaN), the newest weights there are, saying so."""
    for path in (run.ckpt_dir / "best.pt", run.ckpt_dir / "last.pt", run.resumed_from):
        if path is not None and path.is_file():
            if path.name != "best.pt":
                log.warning("no %s: no validation of this run beat %.4f (the best of the run it continues), or "
                            "every top-1 was NaN; the final evaluation uses %s", run.ckpt_dir / "best.pt",
                            run.best_top1, path)
            return path
    raise FileNotFoundError(f"{run.ckpt_dir}: no checkpoint to evaluate")  # unreachable: last.pt is written


def final_test(run: Run, tracker: Tracker) -> dict | None:
    """The best weights (their EMA when it is on) on ``data.test_ann`` when it is given, else on
    the validation list, with ``test.clips`` x ``test.crops`` views; reports on rank 0."""
    cfg, tc = run.cfg, run.cfg.trainer
    best_path = best_weights_file(run)
    best = load_checkpoint(best_path)
    weights = "ema" if best.get("ema") else "model"
    run.model.load_state_dict(ema_weights(best) if weights == "ema" else best["model"])
    split = "test" if run.data_cfg.test_ann is not None else "val"
    views = {"clips": cfg.test.clips, "crops": cfg.test.crops}
    if split == "val" and (cfg.test.clips, cfg.test.crops) == (1, 1):
        test_set = run.val_set  # the per-epoch validation views (and their cached frames)
    else:
        test_set = build_dataset(run.data_cfg, split, clips=cfg.test.clips, crops=cfg.test.crops, info=run.info)
    loader = data_loader(test_set, tc.batch_size, tc.num_workers, run.device, timeout=tc.loader_timeout)
    result = predict(run.model, loader, run.device, tc.amp, desc=split, strict=cfg.test.strict,
                     progress=run.world.is_main)
    if not run.world.is_main:
        return None
    final = report(result, run.info.class_names, run.run_dir, views=views, pairs=run.info.pairs, split=split,
                   extra={"best_epoch": best["epoch"], "weights": weights, "checkpoint": str(best_path)})
    log.info("final on %s (%s, epoch %d, %s weights, %d clips x %d crops): top1 %.4f  top5 %.4f  mean class %.4f%s"
             "  failed %d", split, best_path.name, best["epoch"], weights, views["clips"], views["crops"],
             final["top1"], final["top5"], final["mean_class_acc"],
             f"  pair {final['pair_acc']:.4f}" if "pair_acc" in final else "", final["num_failed"])
    tracker.summary({f"final_{k}": v for k, v in final.items() if isinstance(v, (int, float))})
    tracker.log_table("predictions", *sample_predictions(result, run.info.class_names), step=run.step)
    if (run.run_dir / "confusion_matrix.png").is_file():
        tracker.log_image("confusion_matrix", run.run_dir / "confusion_matrix.png", step=run.step)
    log.info("run directory: %s", run.run_dir.resolve())
    return final
