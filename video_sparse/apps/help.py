"""``--help`` and the configuration reference (docs/config.md), both read from the schema.

``python train.py [overrides] --help`` composes the config with the overrides and prints every
group's options and every key with its value and help. ``python -m video_sparse.apps.help``
writes the reference: every key of the apps and every model option, with defaults and help.
"""
from __future__ import annotations

import dataclasses
import sys
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from ..models.registry import variants
from ..options import default_of, text
from . import config as schema
from .config import CONF_DIR

USAGE = {"train": "python train.py", "eval": "python eval.py", "scan": "python -m video_sparse.data.scan",
         "export": "python -m video_sparse.export"}


def _fields(node: Any) -> list[dataclasses.Field]:
    cls = OmegaConf.get_type(node) if isinstance(node, DictConfig) else type(node)
    return [f for f in dataclasses.fields(cls) if not f.name.startswith("_")] if dataclasses.is_dataclass(cls) else []


def _doc(node: Any) -> str:
    cls = OmegaConf.get_type(node) if isinstance(node, DictConfig) else type(node)
    return " ".join((cls.__doc__ or "").replace("``", "").split()) if dataclasses.is_dataclass(cls) else ""


def _line(key: str, value: Any, help: str) -> str:
    return f"  {f'{key} = {text(value)}':<44} {help}"


def key_lines(cfg: DictConfig) -> list[str]:
    """``key = value   help`` for every key of a composed config, by section."""
    lines = []
    for section, node in cfg.items():
        if section == "hydra":
            continue
        if not isinstance(node, DictConfig):
            f = next(f for f in _fields(cfg) if f.name == section)
            lines.append(_line(section, node, f.metadata.get("help", "")))
            continue
        lines.append(f"\n{section}: {_doc(node)}")
        values = OmegaConf.to_container(node, resolve=False)
        for f in _fields(node):
            value = values[f.name]
            lines.append(_line(f"{section}.{f.name}", value, f.metadata.get("help", "")))
    return lines


def print_help(app: str, argv: list[str]) -> None:
    overrides = [a for a in argv[1:] if not a.startswith(("-", "hydra."))]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name=app, overrides=overrides, return_hydra_config=True)
        loader = GlobalHydra.instance().config_loader()
        choices = cfg.hydra.runtime.choices
        groups = [f"  {g:<11} " + ", ".join(f"[{o}]" if choices.get(g) == o else o
                                            for o in loader.get_group_options(g))
                  for g in ("data", "model", "optim", "sched", "logger") if g in choices]
        experiments = loader.get_group_options("experiment")
    print(_doc(schema.APPS[app]()) + "\n")
    print(f"usage: {USAGE[app]} [group=option ...] [key=value ...]   (sweeps: -m; Hydra's flags: --hydra-help)")
    if groups:
        print("\nconfig groups (the option in use in brackets):\n" + "\n".join(groups))
        if app == "train":
            print(f"  +experiment (paper recipes, added with +experiment=<name>): {', '.join(experiments)}")
        if app == "eval":
            zoo = ", ".join(e for e in experiments if e.startswith("ptv_"))
            print(f"  +experiment (model-zoo test protocols, for zoo weights: checkpoint=<file>): {zoo}")
    print("\nkeys (key = value in this config, and what it is; set any of them as key=value):")
    print("\n".join(key_lines(cfg)))


# ============================================================================= the reference
def _md(s: str) -> str:
    return " ".join(s.replace("``", "`").replace("|", "\\|").split())


def _field_rows(fields: list[dataclasses.Field], prefix: str, values: Any = None) -> list[str]:
    rows = ["| key | default | meaning |", "|---|---|---|"]
    for f in fields:
        default = getattr(values, f.name) if values is not None else default_of(f)
        rows.append(f"| `{prefix}{f.name}` | `{text(default)}` | {_md(f.metadata.get('help', ''))} |")
    return rows


def reference() -> str:
    """docs/config.md: every key of the apps and every model option."""
    out = ["# Configuration reference", "",
           "Generated from the schema (`video_sparse/apps/config.py`, `video_sparse/models/specs.py`, "
           "`video_sparse/models/zoo.py`) by `python -m video_sparse.apps.help > docs/config.md`; a test keeps it "
           "current. `python train.py [overrides] --help` prints the same for a composed config.", ""]
    sections = [("train.py", schema.TrainConfig), ("eval.py", schema.EvalConfig), ("scan", schema.ScanConfig),
                ("export", schema.ExportConfig)]
    for title, app in sections:
        out += [f"## {title}", "", _md(app.__doc__), ""]
        own = [f for f in dataclasses.fields(app) if f.metadata]
        if own:
            out += [*_field_rows(own, ""), ""]
        for f in dataclasses.fields(app):
            node = f.default_factory() if f.default_factory is not dataclasses.MISSING else None
            if node is not None and dataclasses.is_dataclass(node):
                out += [f"`{f.name}`: {_md(type(node).__doc__)}", "", *_field_rows(_fields(node), f"{f.name}.", node),
                        ""]
        groups = [g for g in ("data", "model", "optim", "sched", "logger") if g in app.__dataclass_fields__]
        if groups:
            out += [f"Groups: {', '.join(f'`{g}`' for g in groups)} (below).", ""]
    for group, options in schema.GROUPS.items():
        for name, node_cls in options.items():
            out += [f"## `{group}={name}`", "", _md(node_cls.__doc__), "",
                    *_field_rows(_fields(node_cls()), f"{group}."), ""]
    out += ["## Models (`model=<name>`)", "",
            "Every field of a model's family is a `model.*` key; a variant sets some of them (listed beside it).", ""]
    by_family: dict[type, list] = {}
    for name, variant in variants().items():
        by_family.setdefault(type(variant.spec), []).append(variant)
    for spec_cls, members in by_family.items():
        base = spec_cls()
        out += [f"### {spec_cls.__name__}", "", _md(spec_cls.__doc__), "", *_field_rows(_fields(base), "model."),
                "| `model.pretrained` | `null` | weights to initialise from: a file or torchvision:<weights> |", "",
                "| model | classes | differs from the defaults | what |", "|---|---|---|---|"]
        for v in members:
            differs = ", ".join(f"{f.name}={text(getattr(v.spec, f.name))}" for f in _fields(base)
                                if getattr(v.spec, f.name) != getattr(base, f.name))
            out.append(f"| `{v.name}` | {v.num_classes} | {_md(differs) or '-'} | {_md(v.doc)} |")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    sys.stdout.write(reference() + "\n")
