"""``eval.py`` (the app is a shim): re-evaluate a checkpoint on its run's dataset (or on ``data.*``
overrides, or on ``data=<dataset>``) with ``test.clips`` x ``test.crops`` views; or classify files
(``predict=[...]``), draw timelines of long videos (``predict.window=<s>``), write every video's
pooled features (``features=true``). Under ``torchrun`` every rank evaluates its shard and rank 0
reports the gathered whole (features: each rank writes its shard, rank 0 gathers the files once)."""
from __future__ import annotations

import contextlib
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ..errors import WriteError, check_writable_dir, place_error, write_error
from .loading import LoadedModel, load_for_inference
from .run_lock import DirectoryLock


def file_sha256(path: str) -> str:
    import hashlib

    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def evaluate_checkpoint(cfg: DictConfig, run_dir: Path) -> dict:
    """Evaluate ``cfg.checkpoint`` (or predict with it, draw timelines, extract features); write the
    report into ``run_dir``. (Imports torch here, after the checks, so that the command line answers
    at once.)"""
    from ..data import build_dataset, build_predict_dataset, resolve_data
    from .distributed import init_distributed, main_first
    from .runtime import resolve_device

    world = init_distributed(cfg.trainer.device)
    if cfg.features and cfg.features_dir is not None and world.is_main:
        check_writable_dir(cfg.features_dir, f"features_dir={cfg.features_dir}", "features_dir=<a writable "
                           "directory>")  # before the model and the data are loaded
    evaluated = load_for_inference(cfg.checkpoint, model=cfg.model, data=cfg.data, weights=cfg.weights,
                                   device=cfg.trainer.device, trust_pt2=cfg.trust_pt2)
    device = resolve_device(cfg.trainer.device, world.local_rank)
    evaluated.model.to(device)
    paths = predict_paths(cfg)
    if cfg.predict.window is not None:
        return _timelines(cfg, evaluated, paths, device, run_dir)
    if paths:
        info = None
        dataset = build_predict_dataset(evaluated.data_cfg, paths, clips=cfg.test.clips, crops=cfg.test.crops)
    else:
        with main_first(world):
            data_cfg, info = resolve_data(evaluated.data_cfg, class_names=evaluated.class_names,
                                          class_source=evaluated.class_source, progress=world.is_main)
        evaluated = evaluated._replace(data_cfg=data_cfg)
        dataset = build_dataset(data_cfg, cfg.split, clips=cfg.test.clips, crops=cfg.test.crops, info=info)
    if cfg.features:
        return _features(cfg, evaluated, dataset, device, run_dir)
    if paths:
        return _predict(cfg, evaluated, dataset, device, run_dir)
    return _evaluate(cfg, evaluated, dataset, info, device, run_dir)


def predict_paths(cfg: DictConfig) -> list[str]:
    """``predict.paths`` as a list (empty: evaluate ``split``)."""
    paths = cfg.predict.paths
    return [str(paths)] if isinstance(paths, str) else [str(p) for p in paths or []]


def _loader(cfg: DictConfig, dataset, device):
    from .runtime import data_loader

    return data_loader(dataset, cfg.trainer.batch_size, cfg.trainer.num_workers, device,
                       timeout=cfg.trainer.loader_timeout)


def _evaluate(cfg: DictConfig, evaluated: LoadedModel, dataset, info, device, run_dir: Path) -> dict:
    from .distributed import current_world
    from .evaluate import predict, report, sample_predictions
    from ..tracking import Tracker

    world = current_world()
    result = predict(evaluated.model, _loader(cfg, dataset, device), device, cfg.trainer.amp,
                     desc=f"eval {cfg.split}", strict=cfg.test.strict, progress=world.is_main)
    if not world.is_main:
        return {}
    class_names = evaluated.class_names
    metrics = report(result, class_names, run_dir, views={"clips": cfg.test.clips, "crops": cfg.test.crops},
                     split=cfg.split, pairs=info.pairs, extra={"weights": evaluated.weights})
    with Tracker(cfg.logger.mode, cfg.logger.project, run_dir, OmegaConf.to_container(cfg, resolve=True),
                 name=cfg.logger.name, run_id=cfg.logger.id) as tracker:
        tracker.summary({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
        tracker.log_table("predictions", *sample_predictions(result, class_names))
        if (run_dir / "confusion_matrix.png").is_file():
            tracker.log_image("confusion_matrix", run_dir / "confusion_matrix.png")
    print(f"{cfg.checkpoint} ({metrics['weights']} weights) on {cfg.split} "
          f"({evaluated.data_cfg.get(f'{cfg.split}_ann')}): {len(dataset)} videos, {world.size} process(es)\n"
          f"{_summary_table(metrics)}")
    print(f"report: {run_dir.resolve()}")
    return metrics


def _predict(cfg: DictConfig, evaluated: LoadedModel, dataset, device, run_dir: Path) -> dict:
    from .distributed import current_world
    from .evaluate import predict
    from .metrics import write_predictions

    world = current_world()
    result = predict(evaluated.model, _loader(cfg, dataset, device), device, cfg.trainer.amp, desc="predict",
                     progress=world.is_main)
    if world.is_main:
        write_predictions(run_dir / "predictions.csv", result["paths"], result["probs"], result["labels"],
                          evaluated.class_names, topk=cfg.predict.topk)
        print(_predict_table(result["paths"], result["probs"], evaluated.class_names, cfg.predict.topk))
    return {"num_videos": int(result["valid"].sum()), "num_failed": int((~result["valid"]).sum())}


def _features(cfg: DictConfig, evaluated: LoadedModel, dataset, device, run_dir: Path) -> dict:
    """``features=true``: the pooled features of every video into ``features_dir`` (resumed there)."""
    import os

    from .distributed import current_world
    from .features import extract_features

    world = current_world()
    out_dir = Path(cfg.features_dir) if cfg.features_dir is not None else run_dir
    paths = predict_paths(cfg)
    checkpoint = str(cfg.checkpoint)
    about = {"model": evaluated.model_name, "checkpoint": os.path.abspath(checkpoint),
             # a checkpoint rewritten at the same path (a run that kept training) is another extraction
             "checkpoint_sha256": file_sha256(checkpoint) if os.path.isfile(checkpoint) else checkpoint,
             "weights": evaluated.weights, "videos_of": paths or f"{cfg.split} ({evaluated.data_cfg.get(f'{cfg.split}_ann')})"}
    # one live extraction per directory (the run directory is locked already)
    own = world.is_main and out_dir.resolve() != Path(run_dir).resolve()
    try:
        with DirectoryLock(out_dir, "features_dir") if own else contextlib.nullcontext():
            summary = extract_features(evaluated.model, dataset, out_dir, evaluated.class_names, about=about,
                                       batch_size=cfg.trainer.batch_size, num_workers=cfg.trainer.num_workers,
                                       device=device, amp=cfg.trainer.amp, loader_timeout=cfg.trainer.loader_timeout,
                                       progress=world.is_main)
    except WriteError:
        raise
    except Exception as e:  # a full disk while writing the index or the gathered array
        if (disk := place_error(e)) is None:
            raise
        raise write_error(disk, f"features into features_dir={out_dir}", "free space there, or features_dir=<a "
                          "directory with room>: the same command resumes from the rows written") from e
    if world.is_main:
        print(f"features of {summary['num_videos']} videos x {summary['views']} views (+ their mean) x "
              f"{summary['dim']}: {Path(summary['features']).resolve()} (index: features.csv, layout: features.json)")
    return summary


def _timelines(cfg: DictConfig, evaluated: LoadedModel, paths: list[str], device, run_dir: Path) -> dict:
    """``predict.window``: a CSV and a PNG timeline per video (videos shared out over the ranks)."""
    from ..data import build_window_clips
    from ..data.decode import VideoDecodeError
    from .distributed import current_world
    from .timeline import plot_timeline, timeline_summary, video_timeline

    world = current_world()
    stride = cfg.predict.stride if cfg.predict.stride is not None else cfg.predict.window / 2
    done, failed = 0, []
    names = timeline_names(paths)
    for path, name in list(zip(paths, names))[world.rank::world.size]:
        stem = run_dir / f"{name}.timeline"
        try:
            clips = build_window_clips(evaluated.data_cfg, path, cfg.predict.window, stride, clips=cfg.test.clips,
                                       crops=cfg.test.crops)
            windows, probs = video_timeline(evaluated.model, clips, evaluated.class_names, f"{stem}.csv",
                                            batch_size=cfg.trainer.batch_size, device=device, amp=cfg.trainer.amp,
                                            progress=world.is_main)
        except VideoDecodeError as e:
            print(f"{path}\n    (no timeline: {e})")
            failed.append(path)
            continue
        if not windows:
            print(f"{path}\n    (no timeline: {clips.error})")
            failed.append(path)
            continue
        plot_timeline(windows, probs, evaluated.class_names, f"{stem}.png", k=cfg.predict.topk,
                      title=f"{Path(path).name}: windows of {cfg.predict.window:g} s every {stride:g} s")
        print(timeline_summary(path, windows, probs, evaluated.class_names))
        if damage := clips.damage():
            print(f"    (damaged frames: {damage})")
        if clips.error:
            print(f"    (the timeline ends early: {clips.error})")
            failed.append(path)
        print(f"    timeline: {stem.resolve()}.csv, .png")
        done += 1
    return {"num_videos": done, "num_failed": len(failed)}


def timeline_names(paths: list[str]) -> list[str]:
    """The name of each video's timeline files: its file's stem, and where several videos share a
    stem (``a/clip.mp4``, ``b/clip.mp4``), the stem and the video's position in ``paths``
    (``clip.1``, ``clip.2``): no video's timeline overwrites another's."""
    stems = [Path(p).stem for p in paths]
    return [s if stems.count(s) == 1 else f"{s}.{i + 1}" for i, s in enumerate(stems)]


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
        if not ok:  # not classified: say why, the warnings above give the decoder's error
            lines.append("    (not classified: file not found)" if not Path(p).is_file() else
                         "    (not classified: no decoder can read it)")
            continue
        lines += [f"    {v:7.2%}  {class_names[i]}" for v, i in zip(val, idx)]
    return "\n".join(lines)
