"""Read back what wandb wrote for an offline run, for tests.

An offline run lives in ``<dir>/wandb/offline-run-<date>_<time>-<id>/``; everything it logged is in the
transaction log ``run-<id>.wandb`` beside ``files/``. wandb 0.31 writes that log from its Go service (wandb-core)
and ships no Python reader (``wandb.sdk.internal.datastore`` is gone), so this module reads the format itself:
a 7-byte file header (``":W&B"``, magic 0xBEE1, version 0), then LevelDB-log-style chunks in 32 KiB blocks, each
``crc32 (uint32) | length (uint16) | type (uint8) | data``, that join into serialized ``wandb_internal_pb2.Record``
protobufs. An offline run of wandb 0.31 has no ``files/config.yaml`` nor ``wandb-summary.json``, so config and
summary are read from the log too.

wandb itself is imported only to read a log, so ``child_processes`` can check a process that must not load it.
"""
from __future__ import annotations

import json
import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wandb.proto import wandb_internal_pb2 as pb

FILE_HEADER = struct.Struct("<4sHB")  # ident, magic, version
CHUNK_HEADER = struct.Struct("<IHB")  # crc32, length, type
BLOCK_SIZE = 32 * 1024
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def offline_run_dirs(root: str | Path) -> list[Path]:
    """The offline runs wandb made under ``root`` (the ``dir`` given to ``wandb.init``), oldest first."""
    runs = (Path(root) / "wandb").glob("offline-run-*")
    return sorted(runs, key=lambda run_dir: _run_record(run_dir).start_time.ToNanoseconds())


def iter_records(log_file: str | Path) -> Iterator[pb.Record]:
    """Every record of a ``.wandb`` transaction log, in the order written."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(log_file).read_bytes()
    ident, magic, version = FILE_HEADER.unpack_from(data)
    if (ident, magic, version) != (b":W&B", 0xBEE1, 0):
        raise ValueError(f"{log_file} is not a wandb transaction log (header {ident!r} {magic:#x} v{version})")
    pos, parts = FILE_HEADER.size, []
    while pos + CHUNK_HEADER.size <= len(data):
        if BLOCK_SIZE - pos % BLOCK_SIZE < CHUNK_HEADER.size:  # a block's zero-filled tail
            pos += BLOCK_SIZE - pos % BLOCK_SIZE
            continue
        crc, length, kind = CHUNK_HEADER.unpack_from(data, pos)
        start = pos + CHUNK_HEADER.size
        chunk = data[start:start + length]
        if zlib.crc32(chunk, zlib.crc32(bytes([kind]))) != crc:  # crc32 of the type byte then the data
            raise ValueError(f"{log_file}: bad checksum in the chunk at byte {pos}")
        pos = start + length
        parts.append(chunk)
        if kind in (FULL, LAST):
            record = pb.Record()
            record.ParseFromString(b"".join(parts))
            parts = []
            yield record


def read_offline_history(run_dir: str | Path) -> list[dict]:
    """The rows ``run.log`` wrote, in order: ``{"_step": 0, "loss": 1.0, ..., "_runtime": ..., "_timestamp": ...}``.

    Values are decoded from JSON; a media value is its metadata dict (``{"_type": "image-file", "path": ...}``).
    """
    return [_items_to_dict(record.history.item) for record in _records(run_dir) if record.HasField("history")]


def read_offline_config(run_dir: str | Path) -> dict:
    """The run's config as given to ``wandb.init`` plus later ``run.config`` updates (without wandb's ``_wandb``)."""
    config = {}
    for record in _records(run_dir):
        if record.HasField("run"):
            config.update(_items_to_dict(record.run.config.update))
        elif record.HasField("config"):
            config.update(_items_to_dict(record.config.update))
            for item in record.config.remove:
                config.pop(item.key, None)
    config.pop("_wandb", None)
    return config


def read_offline_summary(run_dir: str | Path) -> dict:
    """The run's final summary: the last logged values and ``run.summary`` updates."""
    summary = {}
    for record in _records(run_dir):
        if record.HasField("summary"):
            summary.update(_items_to_dict(record.summary.update))
            for item in record.summary.remove:
                summary.pop(item.key, None)
    return summary


def read_offline_run_id(run_dir: str | Path) -> str:
    return _run_record(run_dir).run_id


def read_offline_exit_code(run_dir: str | Path) -> int | None:
    """The exit code the run was finished with, None if it never finished."""
    exits = [record.exit.exit_code for record in _records(run_dir) if record.HasField("exit")]
    return exits[-1] if exits else None


def _records(run_dir: str | Path) -> Iterator[pb.Record]:
    (log_file,) = Path(run_dir).glob("run-*.wandb")
    return iter_records(log_file)


def _run_record(run_dir: str | Path) -> pb.RunRecord:
    return next(record.run for record in _records(run_dir) if record.HasField("run"))


def _items_to_dict(items) -> dict:
    """History/config items to a dict; an item keyed by a path (``nested_key``) goes into nested dicts."""
    out = {}
    for item in items:
        *parents, key = item.nested_key or [item.key]
        node = out
        for parent in parents:
            node = node.setdefault(parent, {})
        node[key] = json.loads(item.value_json)
    return out


def child_processes(pid: int | None = None) -> list[str]:
    """Command lines of the running children of process ``pid`` (default: this one). Linux only: reads /proc."""
    pid = os.getpid() if pid is None else pid
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except (OSError, ValueError):  # not a process, or one that just ended
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]  # the name before ")" may hold spaces
        if int(ppid) == pid and state != "Z":  # a zombie has ended, only not yet been waited for
            found.append(cmdline)
    return found
