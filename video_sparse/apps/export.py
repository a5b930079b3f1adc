"""``python -m video_sparse.export checkpoint=... [format=onnx|pt2]``: write a model for serving.

From a train.py checkpoint (its model, weights, classes and data config), a weights file
(``model=<name> data=<dataset>``, as in eval.py) or a registered model alone (``model=<name>``,
with ``model.pretrained`` weights if any). The file takes clips ``(N, 3, T, size, size)`` of any
batch size and every clip length the model's graph allows (printed); it stores the model name, the
class names and the run's data config, so that ``eval.py checkpoint=<file>.onnx`` evaluates and
predicts with it like with the checkpoint. Right after writing, the exported model runs on a random
clip and must match PyTorch (``tolerance``); the result is printed.
"""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ..options import ConfigError
from . import launch
from .checks import check_export


def main() -> None:
    launch.main("export", export_command, check_export)


def _model_to_export(cfg: DictConfig):
    """``(model, data config, class names, weights, model name)`` of ``cfg.checkpoint``, or of
    ``cfg.model`` alone."""
    from ..data import dataset_classes
    from ..models import model_from_config
    from ..engine.loading import load_for_inference
    from ..models.registry import variants

    if cfg.checkpoint is not None:
        model, data_cfg, class_names, _, weights, name = load_for_inference(cfg.checkpoint, model=cfg.model,
                                                                            data=cfg.data, weights=cfg.weights)
        return model, data_cfg, class_names, weights, name
    if "name" in cfg.data:  # data=<dataset>: its class list
        class_names, _ = dataset_classes(cfg.data)
    else:
        class_names = [f"class_{i}" for i in range(variants()[cfg.model.name].num_classes)]
    weights = "pretrained" if cfg.model.get("pretrained") else "initial"
    return model_from_config(cfg.model, len(class_names)), cfg.data, class_names, weights, cfg.model.name


def export_command(cfg: DictConfig, run_dir: Path) -> dict:
    """Export, check and report; returns the output path and the check's numbers."""
    from ..engine.export import export_model, metadata_json

    model, data_cfg, class_names, weights, name = _model_to_export(cfg)
    frames, size = cfg.frames or data_cfg.get("frames"), cfg.size or data_cfg.get("size")
    if frames is None or size is None:
        raise ConfigError(f"model={cfg.model.name} without a checkpoint or data=<dataset> has no clip shape. "
                          "Fix: frames=8 size=224 (or data=<dataset>)")
    output = Path(cfg.output) if cfg.output is not None else Path(run_dir) / f"{name}.{cfg.format}"
    data = OmegaConf.to_container(data_cfg, resolve=True) if isinstance(data_cfg, DictConfig) else dict(data_cfg)
    # what eval.py reads the clips with: the file's own clip shape
    data.update(frames=int(frames), size=int(size), short_side=max(int(data.get("short_side") or size), int(size)))
    metadata = metadata_json(model=name, class_names=list(class_names), data=data, weights=weights,
                             frames=int(frames), size=int(size), source=str(cfg.checkpoint or f"model={name}"))
    print(f"exporting {name} ({weights} weights, {len(class_names)} classes) to {cfg.format} for clips "
          f"(N, 3, T, {size}, {size}) ...", flush=True)
    check = export_model(model, output, cfg.format, int(frames), int(size), model_name=name, metadata=metadata,
                         tolerance=cfg.tolerance, opset=cfg.opset)
    print(f"wrote {output} ({output.stat().st_size / 2**20:.1f} MiB), any batch size and {check.lengths}; "
          f"{check.summary()} (tolerance {cfg.tolerance:g})")
    return {"output": str(output), "errors": check.errors, "shape": list(check.shape), "lengths": str(check.lengths)}


if __name__ == "__main__":
    main()
