"""Shared wrapper of the Hydra entry points: user mistakes end in one clear line, not a traceback;
under ``torchrun`` every rank agrees on one run directory and only rank 0 logs to the console/file."""
from __future__ import annotations

import logging
import os
import sys
import time

from omegaconf import OmegaConf
from omegaconf.errors import MissingMandatoryValue

from .config import ConfigError
from .data.dataset import AnnotationError
from .engine.checkpoint import CheckpointError
from .engine.distributed import broadcast_object, current_world, destroy_distributed, init_distributed
from .engine.evaluate import StrictEvaluationError
from .engine.trainer import NonFiniteLossError

log = logging.getLogger("video_sparse")


def share_run_dir(argv: list[str]) -> None:
    """Under ``torchrun`` each rank runs Hydra, which would name the run directory after its own
    clock (ranks starting either side of a second would write to different folders). Join the
    process group first and give every rank rank 0's ``hydra.run.dir``; ranks > 0 write no
    ``.hydra/`` copy of the config. Call before the ``@hydra.main`` function."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or "-m" in argv or "--multirun" in argv:
        return
    device = next((a.split("=", 1)[1] for a in argv if a.startswith("trainer.device=")), "auto")
    world = init_distributed(device)
    if not any(a.startswith("hydra.run.dir=") for a in argv):
        argv.append("hydra.run.dir=" + broadcast_object(time.strftime("outputs/%Y-%m-%d/%H-%M-%S")))
    if not world.is_main:
        argv.append("hydra.output_subdir=null")


def _quiet_other_ranks() -> None:
    """Ranks > 0: warnings and errors on the console only; rank 0 writes the run's log file."""
    if current_world().is_main:
        return
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logging.FileHandler):
            root.removeHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("video_sparse").setLevel(logging.WARNING)


def _fail(msg: str) -> None:
    log.error("%s", msg)
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


def run_app(fn, cfg, run_dir):
    try:
        device = OmegaConf.select(cfg, "trainer.device", default="auto") if OmegaConf.is_config(cfg) else "auto"
        init_distributed(device)  # joins the group of a multi-task submitit job
        _quiet_other_ranks()
        return fn(cfg, run_dir)
    except (ConfigError, AnnotationError, StrictEvaluationError, CheckpointError, NonFiniteLossError) as e:
        _fail(str(e))
    except MissingMandatoryValue as e:
        key = getattr(e, "full_key", None) or "a required key"
        _fail(f"{key} must be set (it is ??? in the config). Fix: add {key}=... to the command line")
    finally:
        destroy_distributed()
