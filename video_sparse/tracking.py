"""Experiment tracking with wandb (``logger.mode``: offline by default, online, disabled).

wandb is imported only when a run is tracked: with ``mode="disabled"``, or ``enabled=False`` on the non-zero
ranks of a distributed job, every method is a no-op that writes nothing and starts no process.
"""
from __future__ import annotations

import atexit
import hashlib
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MODES = ("offline", "online", "disabled")


class Tracker:
    """Thin wrapper so the training loop reads ``tracker.log({...}, step)`` whatever the mode.

    One output folder is one wandb run: the run id is derived from ``run_dir`` (or given as ``run_id``) and the
    run is opened with ``resume="allow"``, so a training resumed in the same folder continues the same run (its
    steps continue as long as the caller passes them, as the trainer does).

    ``finish()`` closes the run and stops wandb's service process; it may be called more than once, and runs at
    interpreter exit for a tracker left open. As a context manager the tracker finishes on leaving the block,
    marking the run failed (exit code 1) if the block raised::

        with Tracker("offline", "video_sparse", run_dir, config) as tracker:
            tracker.log({"loss": loss}, step)
    """

    def __init__(self, mode: str, project: str, run_dir: str | Path, config: dict, name: str | None = None,
                 enabled: bool = True, run_id: str | None = None):
        if mode not in MODES:
            raise ValueError(f"logger mode must be one of {MODES}, got {mode!r}")
        self.run = None
        self.run_id: str | None = None
        self.directory: Path | None = None  # wandb's folder for this run: <run_dir>/wandb/<mode>-run-<time>-<id>
        if mode == "disabled" or not enabled:
            return
        import wandb

        os.environ.setdefault("WANDB_SILENT", "true")
        self.run = wandb.init(project=project, name=name, dir=str(run_dir), config=config, mode=mode,
                              resume="allow", id=run_id or _run_id(run_dir))
        atexit.register(self.finish)
        self.run_id, self.directory = self.run.id, Path(self.run.settings.sync_dir)
        log.info("wandb %s run %s in %s", mode, self.run_id, self.directory)

    def log(self, values: dict[str, Any], step: int | None = None) -> None:
        if self.run is not None:
            self.run.log(values, step=step)

    def log_image(self, key: str, path: str | Path, step: int | None = None) -> None:
        if self.run is not None:
            import wandb
            self.run.log({key: wandb.Image(str(path))}, step=step)

    def log_table(self, key: str, columns: list[str], rows: list[list], step: int | None = None) -> None:
        """A table of rows, e.g. sample predictions ``columns=["video", "label", "predicted", "score"]``."""
        if self.run is not None:
            import wandb
            self.run.log({key: wandb.Table(columns=list(columns), data=[list(row) for row in rows])}, step=step)

    def summary(self, values: dict[str, Any]) -> None:
        if self.run is not None:
            self.run.summary.update(values)

    def finish(self, exit_code: int | None = None) -> None:
        """Close the run (``exit_code`` None: 0, or 1 if the process is dying of an uncaught exception) and stop
        wandb's service process, which would otherwise live until the interpreter exits. Idempotent."""
        if self.run is None:
            return
        import wandb

        run, self.run = self.run, None
        atexit.unregister(self.finish)
        try:
            run.finish(exit_code=exit_code)
        finally:
            wandb.teardown()  # one tracked run per process: the trainer's or the evaluation's

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        self.finish(exit_code=None if exc_type is None else 1)


def _run_id(run_dir: str | Path) -> str:
    """One wandb run per output folder, so a resumed training continues the same run."""
    return hashlib.sha1(str(Path(run_dir).resolve()).encode()).hexdigest()[:16]
