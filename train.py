"""Train a video model. ``python train.py --help`` lists the config groups; see README."""
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from video_sparse.apps import run_app, share_run_dir


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> None:
    from video_sparse.engine.trainer import train

    run_app(train, cfg, HydraConfig.get().runtime.output_dir)


if __name__ == "__main__":
    share_run_dir(sys.argv)
    main()
