"""Documented options: dataclass fields that carry their help text and the checks a type cannot
express (choices, bounds). The configuration schema (``apps/config.py``) and the models'
hyper-parameters (``models/specs.py``) are declared with :func:`option`, so ``--help``, the
reference (docs/config.md) and validation all read the one declaration of each key."""
from __future__ import annotations

import dataclasses
import difflib
import math
import re
from collections.abc import Sequence
from typing import Any

from .errors import UserError


class ConfigError(UserError, ValueError):
    """A config value is wrong (outside its option's choices or bounds, or at odds with another);
    the message names the key and how to fix it."""


def option(default: Any, help: str, *, choices: Sequence | None = None, ge: float | None = None,
           gt: float | None = None, le: float | None = None, lt: float | None = None,
           length: int | None = None) -> Any:
    """A dataclass field with its default, help text and checks (``choices``; bounds ``ge``,
    ``gt``, ``le``, ``lt`` apply to numbers, and to each element of a list; ``length``: a list
    of exactly that many values, e.g. one per stage; None always passes where the type allows it)."""
    meta = {"help": help, "choices": None if choices is None else tuple(choices), "ge": ge, "gt": gt, "le": le,
            "lt": lt, "length": length}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def option_help(f: dataclasses.Field) -> str:
    return f.metadata.get("help", "")


def _boundstext(meta: dict) -> str:
    parts = [f"{sym} {meta[k]}" for k, sym in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))
             if meta.get(k) is not None]
    return " and ".join(parts)


def _number_ok(v: Any, meta: dict) -> bool:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return True  # types are the schema's business
    return not ((meta.get("ge") is not None and v < meta["ge"]) or (meta.get("gt") is not None and v <= meta["gt"])
                or (meta.get("le") is not None and v > meta["le"]) or (meta.get("lt") is not None and v >= meta["lt"]))


def text(v: Any) -> str:
    """A value as it is written on the command line (``null``, ``true``, ``[1,2]``)."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, Sequence) and not isinstance(v, str):
        return "[" + ",".join(text(x) for x in v) + "]"
    return str(v)


def default_of(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None if f.default is dataclasses.MISSING else f.default


def describe(f: dataclasses.Field) -> str:
    """What a field accepts, in words (for messages and the reference)."""
    meta = f.metadata
    if meta.get("choices"):
        return "one of " + ", ".join(text(c) for c in meta["choices"])
    integer = re.search(r"\bint\b", str(f.type))
    if "Tuple" in str(f.type) or "List" in str(f.type):
        count = f"{meta['length']} " if meta.get("length") else ""
        kind = "strings" if re.search(r"\bstr\b", str(f.type)) else "integers" if integer else "numbers"
        return f"a list of {count}{kind} {_boundstext(meta)}".rstrip()
    return f"{'an integer' if integer else 'a number'} {_boundstext(meta)}"


def check_value(key: str, f: dataclasses.Field, value: Any) -> None:
    """Raise :class:`ConfigError` naming ``key`` when ``value`` breaks ``f``'s choices or bounds."""
    meta = f.metadata
    values = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value]
    if meta.get("length") is not None and value is not None and len(values) != meta["length"]:
        raise ConfigError(f"{key} must be {describe(f)}, got {text(value)} ({len(values)} values). "
                          f"Fix: {key}={text(default_of(f))}")
    choices = meta.get("choices")
    for v in values:
        if v is None:
            continue
        if isinstance(v, float) and not math.isfinite(v):  # nan passes every bound; inf is no setting
            fix = text(default_of(f)) if default_of(f) is not None else "<a finite number>"
            raise ConfigError(f"{key} must be a finite number, got {text(value)}. Fix: {key}={fix}")
        bad = (choices is not None and not any(v == c and type(v) is type(c) for c in choices)) or \
            not _number_ok(v, meta)
        if bad:
            close = difflib.get_close_matches(v, [c for c in choices if isinstance(c, str)], n=1) \
                if choices and isinstance(v, str) else []
            hint = f" Did you mean {close[0]}?" if close else ""
            example = close[0] if close else text(choices[0]) if choices else text(default_of(f))
            raise ConfigError(f"{key} must be {describe(f)}, got {text(value)}.{hint} Fix: {key}={example}")


def check_options(obj: Any, prefix: str, cls: type) -> None:
    """Check the :func:`option` fields of the dataclass ``cls`` on ``obj`` (an instance, or a
    config node of it); keys in messages read ``prefix.<field>``."""
    for f in dataclasses.fields(cls):
        if not f.metadata:
            continue
        if not dataclasses.is_dataclass(obj):  # a config node: its ??? (required, unset) keys are checked where read
            from omegaconf import OmegaConf
            if OmegaConf.is_missing(obj, f.name):
                continue
        check_value(f"{prefix}.{f.name}" if prefix else f.name, f, getattr(obj, f.name))
