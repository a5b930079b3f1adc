"""Evaluate a checkpoint with multi-view testing, or classify video files (``predict=[...]``)."""
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from video_sparse.apps import run_app, share_run_dir


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    from video_sparse.engine.evaluate import evaluate_checkpoint

    run_app(evaluate_checkpoint, cfg, HydraConfig.get().runtime.output_dir)


if __name__ == "__main__":
    share_run_dir(sys.argv)
    main()
