"""Loading weights into a model: the one place where checkpoint formats are handled."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import torch
import torch.nn as nn

log = logging.getLogger(__name__)


@dataclass
class LoadReport:
    """What :func:`load_pretrained` did with each key."""

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)      # in the model, not in the checkpoint
    unexpected: list[str] = field(default_factory=list)   # in the checkpoint, not in the model
    mismatched: list[str] = field(default_factory=list)   # same key, different shape: not loaded

    def summary(self) -> str:
        def few(keys):
            return f" ({', '.join(keys[:8])}{', ...' if len(keys) > 8 else ''})" if keys else ""
        return (f"loaded {len(self.loaded)} tensors; missing {len(self.missing)}{few(self.missing)}; "
                f"unexpected {len(self.unexpected)}{few(self.unexpected)}; "
                f"shape-mismatched {len(self.mismatched)}{few(self.mismatched)}")


def _state_dict_of(obj) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict):
        for key in ("model", "state_dict", "model_state"):
            if key in obj and isinstance(obj[key], dict):
                return _state_dict_of(obj[key])
        if all(isinstance(v, torch.Tensor) for v in obj.values()):
            # DataParallel/DDP checkpoints prefix every key with "module."
            return {k.removeprefix("module."): v for k, v in obj.items()}
    raise ValueError("checkpoint holds no state_dict (expected a dict of tensors, or one under "
                     "'model' / 'state_dict')")


def load_pretrained(model: nn.Module, path_or_state_dict: str | os.PathLike | dict, strict: bool = False) -> LoadReport:
    """Load a checkpoint of this project (or a plain state_dict) into ``model``.

    Tensors whose shape differs from the model's (e.g. a classifier for another number of
    classes) are skipped and reported. Prints and returns a :class:`LoadReport`; with
    ``strict=True`` any missing, unexpected or mismatched key raises instead.
    """
    source = path_or_state_dict
    if not isinstance(source, dict):
        if not os.path.isfile(source):
            raise FileNotFoundError(f"pretrained weights not found: {source}")
        source = torch.load(source, map_location="cpu", weights_only=True)
    state = _state_dict_of(source)
    own = model.state_dict()
    report = LoadReport()
    to_load = {}
    for k, v in state.items():
        if k not in own:
            report.unexpected.append(k)
        elif own[k].shape != v.shape:
            report.mismatched.append(f"{k}: {tuple(v.shape)} vs model {tuple(own[k].shape)}")
        else:
            to_load[k] = v
            report.loaded.append(k)
    report.missing = [k for k in own if k not in state]
    if strict and (report.missing or report.unexpected or report.mismatched):
        raise RuntimeError(f"strict loading failed: {report.summary()}")
    model.load_state_dict(to_load, strict=False)
    log.info("load_pretrained: %s", report.summary())
    print(f"load_pretrained: {report.summary()}")
    return report
