"""``python train.py``: the schema's ``TrainConfig``, checked once, handed to the training loop."""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from . import launch
from .checks import check_train


def train(cfg: DictConfig, run_dir: Path) -> dict:
    from ..engine.trainer import train as training_loop  # imports torch: after the checks

    return training_loop(cfg, run_dir)


def main() -> None:
    launch.main("train", train, check_train)
