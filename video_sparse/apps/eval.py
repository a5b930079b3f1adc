"""``python eval.py``: re-evaluate a checkpoint on its run's dataset (or on ``data.*`` overrides, or
on ``data=<dataset>``) with ``test.clips`` x ``test.crops`` views; or classify files
(``predict=[...]``), draw timelines of long videos (``predict.window=<s>``), write every video's
pooled features (``features=true``). Weights files (pytorchvideo's zoo) with ``model=<name>
data=<dataset>``. The work is :func:`video_sparse.engine.evaluator.evaluate_checkpoint`."""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from . import launch
from .checks import check_eval


def main() -> None:
    launch.main("eval", evaluate, check_eval)


def evaluate(cfg: DictConfig, run_dir: Path) -> dict:
    from ..engine.evaluator import evaluate_checkpoint  # imports torch: after the checks

    return evaluate_checkpoint(cfg, run_dir)

