"""The configuration schema of the apps: every key a user can set, with its one default, its type
and its help, as Hydra structured configs in the ConfigStore.

``conf/*.yaml`` hold only the defaults lists, the Hydra settings and the variants that share a
schema (``data=kinetics400|...|ssv2`` extend ``data=list``); ``conf/experiment/`` the papers'
recipes. The model group is the model registry: ``model=<name>`` for every registered model, its
keys the fields of the model family's spec (``models/specs.py``). Importing this module imports no
torch, so ``--help`` and config errors answer at once.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, make_dataclass
from pathlib import Path
from typing import Any, List, Optional, Tuple

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from ..data.config import DataConfig, DataOverrides, MotionDataConfig
from ..models.registry import variants
from ..options import option


def _conf_dir() -> str:
    """The copy of ``conf/`` a wheel ships inside the package (``pip install .``: setup.py puts it
    there), else ``conf/`` at the top of the checkout (``python train.py``, an editable install)."""
    packaged = Path(__file__).resolve().parents[1] / "conf"
    return str(packaged if packaged.is_dir() else Path(__file__).resolve().parents[2] / "conf")


CONF_DIR = _conf_dir()

# ============================================================================= model
def _model_node_class(spec_cls: type) -> type:
    """``model`` node of a model family: ``name``, ``pretrained`` and the spec's fields."""
    node = make_dataclass(f"{spec_cls.__name__.removesuffix('Spec')}Model", [
        ("name", str, option(MISSING, "registered model (set by model=<name>)")),
        ("pretrained", Optional[str], option(None, "weights to initialise from: a file (official checkpoint, "
                                             "torchvision ResNet, a run's checkpoint) or torchvision:<weights>"))],
        bases=(spec_cls,))
    node.__doc__ = spec_cls.__doc__
    return node


# ============================================================================= optimisation
@dataclass
class SGDConfig:
    """SGD with momentum (``optim=sgd``), called with the parameter groups (no weight decay on norms
    and biases)."""

    _target_: str = "torch.optim.SGD"
    _partial_: bool = True
    lr: float = option(0.1, "base learning rate (scale with the batch size)", gt=0)
    momentum: float = option(0.9, "momentum", ge=0, lt=1)
    weight_decay: float = option(1e-4, "weight decay of conv/linear weights", ge=0)
    nesterov: bool = option(False, "Nesterov momentum")


@dataclass
class AdamWConfig:
    """AdamW (``optim=adamw``), called with the parameter groups (no weight decay on norms and
    biases)."""

    _target_: str = "torch.optim.AdamW"
    _partial_: bool = True
    lr: float = option(3e-3, "base learning rate, for batch 16 on the motion benchmark (scale with the batch size)",
                       gt=0)
    betas: Tuple[float, float] = option((0.9, 0.999), "Adam's beta1, beta2", ge=0, lt=1)
    weight_decay: float = option(0.05, "weight decay of conv/linear weights", ge=0)


@dataclass
class CosineScheduleConfig:
    """Linear warm-up, then cosine decay, stepped every optimiser update (``sched=cosine``)."""

    _target_: str = "video_sparse.engine.optim.warmup_cosine_lr"
    _partial_: bool = True
    warmup_epochs: float = option(1.0, "epochs of linear warm-up", ge=0)
    final_lr_ratio: float = option(0.0, "final lr / base lr", ge=0, le=1)


# ============================================================================= execution
@dataclass
class RuntimeConfig:
    """Where and how the model runs."""

    batch_size: int = option(16, "clips per process and step (torchrun's global batch: batch_size x processes "
                             "x accumulate)", ge=1)
    num_workers: int = option(2, "DataLoader worker processes per process (decoding runs there)", ge=0)
    device: str = option("auto", "auto | cpu | cuda | cuda:N")
    amp: str = option("off", "mixed precision: off | bf16 | fp16", choices=("off", "bf16", "fp16"))
    loader_timeout: float = option(1800.0, "seconds a batch may take to arrive from the DataLoader workers before the "
                                   "run stops with an error (0: no limit; one hung video times out sooner, as an "
                                   "unreadable one)", ge=0)


@dataclass
class TrainerConfig(RuntimeConfig):
    """The training loop."""

    epochs: int = option(11, "epochs", ge=1)
    seed: int = option(0, "seed of the data order, augmentation and initialisation")
    accumulate: int = option(1, "optimiser step every N batches (DDP syncs on the Nth only)", ge=1)
    clip_grad: Optional[float] = option(None, "max gradient norm (null: no clipping)", gt=0)
    compile: bool = option(False, "torch.compile the model (the first steps are slow while it compiles)")
    channels_last: bool = option(False, "channels-last (NTHWC) memory format for weights and inputs")
    sync_bn: bool = option(False, "SyncBatchNorm across processes under DDP (CUDA only)")
    ema_decay: Optional[float] = option(None, "EMA of the weights (e.g. 0.9998): evaluated each epoch, selects "
                                        "best.pt, checkpointed (null: off)", gt=0, lt=1)
    ema_warmup_steps: int = option(0, "EMA decay ramps as (1 + s) / (warmup + s) over the first steps (0: "
                                   "constant)", ge=0)
    layer_decay: Optional[float] = option(None, "layer-wise lr decay (e.g. 0.75): depth d of L trains at lr x "
                                          "decay^(L-1-d) (null: off)", gt=0, le=1)
    precise_bn: int = option(0, "recompute BN statistics over N training batches before each validation (0: off)",
                             ge=0)
    nonfinite: str = option("error", "a NaN/inf loss: error (stop; last.pt stays the last good state) | skip (skip "
                            "the step, count it)", choices=("error", "skip"))
    label_smoothing: float = option(0.0, "label smoothing of the cross-entropy", ge=0, lt=1)
    mixup: float = option(0.0, "mixup alpha (Beta(a, a) mixing weights; 0: off; typical 0.8)", ge=0)
    cutmix: float = option(0.0, "cutmix alpha (the same box in every frame; 0: off; typical 1.0)", ge=0)
    mix_prob: float = option(1.0, "probability that a batch is mixed (with mixup or cutmix on)", ge=0, le=1)
    mix_switch_prob: float = option(0.5, "with both on: probability of cutmix rather than mixup for a batch", ge=0,
                                    le=1)
    resume: Optional[str] = option("auto", "auto (continue from checkpoints/last.pt of this run dir) | none | a "
                                   "checkpoint path")
    save_every_steps: int = option(0, "also write last.pt every N optimiser steps inside an epoch (0: off)", ge=0)
    preempt_signals: List[str] = option(["SIGTERM", "SIGUSR1", "SIGUSR2"], "signals that mean preemption (SLURM, "
                                        "torchrun, submitit): finish the step, write last.pt there, exit; the same "
                                        "command continues (Ctrl-C, SIGINT, always does the same)",
                                        choices=("SIGTERM", "SIGUSR1", "SIGUSR2", "SIGINT", "SIGHUP", "SIGQUIT",
                                                 "SIGXCPU"))
    keep_epochs: int = option(0, "keep checkpoints/epoch_NNN.pt of the last K epochs besides last.pt and best.pt",
                              ge=0)


@dataclass
class TestConfig:
    """Views of the final evaluation (per-epoch validation uses 1 x 1)."""

    clips: int = option(1, "temporal views per video", ge=1)
    crops: int = option(1, "spatial crops per view (1: centre; 3: both ends and the centre)", ge=1)
    strict: bool = option(False, "a missing or unreadable video is an error (false: excluded, counted in "
                          "num_failed)")


@dataclass
class LoggerConfig:
    """Experiment tracking with wandb (``logger=wandb``)."""

    mode: str = option("offline", "offline (files under <run>/wandb, sync later) | online | disabled",
                       choices=("offline", "online", "disabled"))
    project: str = option("video_sparse", "wandb project")
    name: Optional[str] = option(None, "wandb run name (null: wandb's)")
    id: Optional[str] = option(None, "wandb run id (null: derived from the run directory, so a resumed run "
                               "continues its run)")
    log_every: int = option(10, "per-step loss / lr / clips per second / data time, every N optimiser steps", ge=1)


# ============================================================================= the apps
@dataclass
class TrainConfig:
    """``python train.py``: train ``model`` on ``data``."""

    data: Any = MISSING
    model: Any = MISSING
    optim: Any = MISSING
    sched: Any = MISSING
    logger: Any = MISSING
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    test: TestConfig = field(default_factory=TestConfig)


@dataclass
class PredictConfig:
    """``eval.py predict=<files>`` (short for ``predict.paths``): classify files instead of
    evaluating; with ``predict.window``, a timeline of each video."""

    paths: Optional[Any] = option(None, "a video path or a list of paths (or annotation files) to classify")
    topk: int = option(5, "classes printed per predicted video (predict_topk=K is short for predict.topk=K)", ge=1)
    window: Optional[float] = option(None, "seconds: slide clips of this length over each whole video and write a "
                                     "timeline of class probabilities (null: one prediction per video)", gt=0)
    stride: Optional[float] = option(None, "seconds between timeline windows (null: half the window)", gt=0)


@dataclass
class EvalConfig:
    """``python eval.py checkpoint=...``: evaluate a checkpoint with multi-view testing, or classify
    files (``predict=[...]``)."""

    checkpoint: Optional[str] = option(None, "a checkpoints/best.pt or last.pt written by train.py, or a weights "
                                       "file (a pytorchvideo zoo checkpoint, a state_dict; pytorchvideo:<name> "
                                       "downloads one) with model= and data=")
    split: str = option("val", "annotation to evaluate: val (data.val_ann) | test (data.test_ann)",
                        choices=("val", "test"))
    predict: PredictConfig = field(default_factory=lambda: PredictConfig())
    features: bool = option(False, "write the pooled pre-classifier features of every video (of split, or of "
                            "predict.paths) instead of evaluating: features.npy (per view and averaged, every head) "
                            "and features.csv")
    features_dir: Optional[str] = option(None, "where the feature files go (null: the run directory); an unfinished "
                                         "extraction there is resumed")
    weights: str = option("auto", "auto (the EMA weights when the run kept an EMA; a weights file's own) | ema | model",
                          choices=("auto", "ema", "model"))
    runtime: str = option("auto", "what runs the model: auto (onnxruntime for an exported .onnx checkpoint, else "
                          "PyTorch) | torch | onnxruntime", choices=("auto", "torch", "onnxruntime"))
    trust_pt2: bool = option(False, "load a .pt2 checkpoint (torch.export): its loading unpickles, which runs any code "
                             "a crafted file holds, so only a file you exported or whose source you trust")
    data: Any = MISSING
    model: Any = option(None, "model=<name> for a weights file (a training checkpoint brings its own)")
    trainer: RuntimeConfig = field(default_factory=lambda: RuntimeConfig(batch_size=8, num_workers=1))
    test: TestConfig = field(default_factory=TestConfig)
    logger: Any = MISSING


@dataclass
class ExportConfig:
    """``python -m video_sparse.export checkpoint=... format=onnx|pt2``: write a model as ONNX or as
    a ``torch.export`` program (any batch size, the clip lengths its graph allows), then check it
    against PyTorch."""

    checkpoint: Optional[str] = option(None, "a train.py checkpoint, or a weights file with model= and data= (null: "
                                       "model=<name> with its initial or model.pretrained weights)")
    format: str = option("onnx", "onnx (onnxruntime, TensorRT, ...) | pt2 (a torch.export program)",
                         choices=("onnx", "pt2"))
    output: Optional[str] = option(None, "the file to write (null: <model name>.<format> in the run directory)")
    frames: Optional[int] = option(None, "frames of the example clip (null: data.frames); the file takes the clip "
                                   "lengths on which the model runs the same graph (printed)", ge=2)
    size: Optional[int] = option(None, "frame size, fixed in the file (null: data.size)", ge=8)
    weights: str = option("auto", "auto (the EMA weights when the run kept an EMA) | ema | model",
                          choices=("auto", "ema", "model"))
    opset: int = option(18, "ONNX opset", ge=17)
    tolerance: float = option(1e-4, "largest relative error of the exported logits against PyTorch on a random "
                              "clip (fp32), checked after writing", gt=0)
    data: Any = MISSING
    model: Any = option(None, "model=<name>: a registered model (with checkpoint: the model of a weights file)")


@dataclass
class ScanConfig:
    """``python -m video_sparse.data.scan data=...``: decode the first, middle and last frame of
    every listed video, check its seeks; report each one's stream, frames, fps and status."""

    data: Any = MISSING
    videos: Optional[List[str]] = option(None, "video files or folders (their video files) to scan instead of "
                                         "the annotation lists; each is printed with its stream, frames, fps and "
                                         "status")
    splits: List[str] = option(["train", "val", "test"], "annotation lists to check (data.<split>_ann; unset ones "
                               "are skipped)", choices=("train", "val", "test"))
    workers: Optional[int] = option(None, "decoding processes (null: every CPU core)", ge=1)
    report: str = option("scan_report.csv", "written in the run directory")


APPS = {"train": TrainConfig, "eval": EvalConfig, "scan": ScanConfig, "export": ExportConfig}
# Shorter spellings of keys on the command line (key=value -> full.key=value), per app: the
# documented commands classify files with predict=... and predict_topk=...
SHORTHANDS = {"eval": {"predict": "predict.paths", "predict_topk": "predict.topk"}}


def expand_shorthands(app: str, overrides: list[str]) -> list[str]:
    """``overrides`` with each shorthand key of ``app`` (:data:`SHORTHANDS`) spelled out."""
    names = SHORTHANDS.get(app, {})
    out = []
    for arg in overrides:
        key, eq, value = arg.partition("=")
        out.append(f"{names[key]}={value}" if eq and key in names else arg)
    return out
GROUPS = {"data": {"list": DataConfig, "motion": MotionDataConfig, "run": DataOverrides},
          "optim": {"sgd": SGDConfig, "adamw": AdamWConfig},
          "sched": {"cosine": CosineScheduleConfig}, "logger": {"wandb": LoggerConfig}}


def model_nodes() -> dict[str, Any]:
    """``model=<name>`` -> the node of that registered model (its spec's values)."""
    node_classes: dict[type, type] = {}
    nodes = {}
    for name, variant in variants().items():
        spec_cls = type(variant.spec)
        node_cls = node_classes.setdefault(spec_cls, _model_node_class(spec_cls))
        nodes[name] = node_cls(name=name, **{f.name: getattr(variant.spec, f.name)
                                            for f in dataclasses.fields(variant.spec)})
    return nodes


def register_configs() -> None:
    """Store the schema in Hydra's ConfigStore (``train_schema``, ``eval_schema``, ``scan_schema``
    and the group options)."""
    cs = ConfigStore.instance()
    for app, node in APPS.items():
        cs.store(name=f"{app}_schema", node=node)
    for group, options in GROUPS.items():
        for name, node in options.items():
            cs.store(group=group, name=name, node=node)
    for name, node in model_nodes().items():
        cs.store(group="model", name=name, node=node)


register_configs()


def unique_dir(path: str) -> str:
    """``path``, or ``path-2``, ``path-3`` ...: the first that did not exist, created here. Creating
    the last component is atomic, so two jobs started in the same second get two run directories
    (the config's default ``hydra.run.dir`` is ``${unique_dir:outputs/<date>/<time>}``)."""
    candidate, n = path, 1
    while True:
        try:
            Path(candidate).mkdir(parents=True)
            return candidate
        except FileExistsError:
            n += 1
            candidate = f"{path}-{n}"


if not OmegaConf.has_resolver("unique_dir"):  # cached: resolved once per composed config
    OmegaConf.register_new_resolver("unique_dir", unique_dir, use_cache=True)
