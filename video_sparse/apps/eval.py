"""``python eval.py``: re-evaluate a checkpoint on its run's dataset (or on ``data.*`` overrides, or
on ``data=<dataset>``) with ``test.clips`` x ``test.crops`` views; or classify files
(``predict=[...]``), draw timelines of long videos (``predict.window=<s>``), write every video's
pooled features (``features=true``). Weights files (pytorchvideo's zoo) with ``model=<name>
data=<dataset>``. The work is :func:`video_sparse.engine.evaluator.evaluate_checkpoint`. Exit
status 1 when ``predict=`` (or its timelines) could read none of its videos, so that scripts stop,
as after a scan that finds unreadable files."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from omegaconf import DictConfig

from . import launch
from .checks import check_eval


def main() -> None:
    launch.main("eval", evaluate, check_eval)


def evaluate(cfg: DictConfig, run_dir: Path) -> dict:
    from ..engine.evaluator import evaluate_checkpoint  # imports torch: after the checks

    result = evaluate_checkpoint(cfg, run_dir)
    single = int(os.environ.get("WORLD_SIZE", "1")) == 1  # under torchrun each rank counts its own timelines
    if single and cfg.predict.paths and result.get("num_failed") and not result.get("num_videos"):
        print(f"error: none of the {result['num_failed']} videos of predict= could be read (each is named above)",
              file=sys.stderr)
        sys.exit(1)
    return result

