"""Shared wrapper of the Hydra entry points: user mistakes end in one clear line, not a traceback."""
from __future__ import annotations

import logging
import sys

from omegaconf.errors import MissingMandatoryValue

from .config import ConfigError
from .data.dataset import AnnotationError
from .engine.evaluate import StrictEvaluationError

log = logging.getLogger("video_sparse")


def run_app(fn, cfg, run_dir):
    try:
        return fn(cfg, run_dir)
    except (ConfigError, AnnotationError, StrictEvaluationError) as e:
        log.error("%s", e)
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except MissingMandatoryValue as e:
        key = getattr(e, "full_key", None) or "a required key"
        msg = f"{key} must be set (it is ??? in the config). Fix: add {key}=... to the command line"
        log.error("%s", msg)
        print(f"error: {msg}", file=sys.stderr)
        sys.exit(2)
