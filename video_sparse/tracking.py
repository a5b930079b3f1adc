"""Experiment tracking with wandb (``logger.mode``: offline by default, online, disabled)."""
from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


class Tracker:
    """Thin wrapper so the training loop reads ``tracker.log({...}, step)`` whatever the mode."""

    def __init__(self, mode: str, project: str, run_dir: str | Path, config: dict, name: str | None = None,
                 enabled: bool = True):
        self.run = None
        if mode == "disabled" or not enabled:
            return
        import wandb

        os.environ.setdefault("WANDB_SILENT", "true")
        self.run = wandb.init(project=project, name=name, dir=str(run_dir), config=config, mode=mode,
                              resume="allow", id=_run_id(run_dir))
        log.info("wandb %s run in %s", mode, Path(run_dir) / "wandb")

    def log(self, values: dict, step: int | None = None) -> None:
        if self.run is not None:
            self.run.log(values, step=step)

    def log_image(self, key: str, path: str | Path, step: int | None = None) -> None:
        if self.run is not None:
            import wandb
            self.run.log({key: wandb.Image(str(path))}, step=step)

    def summary(self, values: dict) -> None:
        if self.run is not None:
            self.run.summary.update(values)

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None


def _run_id(run_dir: str | Path) -> str:
    """One wandb run per output folder, so a resumed training continues the same run."""
    import hashlib
    return hashlib.sha1(str(Path(run_dir).resolve()).encode()).hexdigest()[:16]
