"""The command-line boundary shared by the apps (train.py, eval.py, scan): Hydra composes the
config from the schema, the checks run once, and every mistake a user can make ends in one line
on stderr (printed once, with close matches and the fix) and exit status 2 — Hydra's own
composition errors included. ``--help`` prints every key with its value and help. Under
``torchrun`` every rank agrees on one run directory and only rank 0 logs to the console/file.

Nothing here imports torch: the task function imports what it needs after the checks.
"""
from __future__ import annotations

import contextlib
import difflib
import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException, ValidationError

from ..errors import UserError, place_error, write_error
from . import config as schema  # registers the structured configs
from .config import CONF_DIR, unique_dir

log = logging.getLogger("video_sparse")


def fail(msg: str) -> None:
    """The one line of a user's mistake: stderr and the run's log file, exit status 2."""
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, "%s", (msg,), None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


def _override_value(key: str, argv: list[str]) -> str:
    return next((a.split("=", 1)[1] for a in reversed(argv) if a.lstrip("+~").split("=", 1)[0] == key), "...")


def _value_without(config_name: str, key: str, argv: list[str]) -> str | None:
    """``key``'s value in the config composed without the overrides of ``key`` (for a Fix)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from ..options import text

    overrides = [a for a in argv[1:] if not a.startswith("-") and "=" in a
                 and not a.lstrip("+~").split("=", 1)[0].startswith((key, "hydra."))]
    try:
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            value = OmegaConf.select(compose(config_name=config_name, overrides=overrides), key, default="???")
        return None if value == "???" else text(value)
    except Exception:  # noqa: BLE001 - only a hint for the message; other overrides may be wrong too
        return None


# OmegaConf's words for a type in its messages -> what the key takes
HYDRA_TYPES = ((r"ListConfig", "a list"), (r"Integer|\bint\b", "an integer"), (r"Float|\bfloat\b", "a number"),
               (r"Boolean|\bbool\b", "true or false"), (r"String|\bstring\b|\bstr\b", "a string"))


def hydra_error_message(e: BaseException, argv: list[str], config_name: str) -> str:
    """One line for an error Hydra raises while composing the config."""
    if isinstance(e, MissingConfigException) and e.missing_cfg_file and "/" in e.missing_cfg_file:
        group, name = e.missing_cfg_file.rsplit("/", 1)
        options = sorted(e.options or [])
        close = difflib.get_close_matches(name, options, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        return (f"{group}={name}: there is no {group} {name!r}.{hint} Options: {', '.join(options)}. "
                f"Fix: {group}={close[0] if close else '<one of them>'}")
    if isinstance(e, OverrideParseException):
        return (f"cannot read the command line: {str(e).splitlines()[0]}. Fix: key=value pairs; quote lists and "
                "strings with special characters, e.g. 'predict=[a.mp4,b.mp4]'")
    cause = e.__cause__ if isinstance(e.__cause__, OmegaConfBaseException) else e
    key = getattr(cause, "full_key", None)
    script = Path(argv[0]).name
    script = f"python {script}" if script.endswith(".py") else script  # or a console script
    if isinstance(cause, ValidationError) and key:
        key = re.sub(r"\[\d+\]$", "", key)  # an element of a list: the list's key
        message = str(cause).splitlines()[0]
        want = next((w for pattern, w in HYDRA_TYPES if re.search(pattern, message.split(" to ")[-1])), "")
        if key != getattr(cause, "full_key"):
            want = f"a list of {want.split(' ', 1)[-1]}s" if want else "a list"
        example = _value_without(config_name, key, argv)
        fix = f"{key}={example}" if example else f"{script} --help lists the type of every key"
        return f"{key} must be {want or 'of another type'}, got {_override_value(key, argv)!r}. Fix: {fix}"
    if isinstance(cause, (KeyError, AttributeError)) and key:  # ConfigKeyError / ConfigAttributeError
        parent = key.rsplit(".", 1)[0] if "." in key else ""
        node = getattr(cause, "parent_node", None)
        known = [str(k) for k in node.keys()] if node is not None else []
        close = difflib.get_close_matches(key.rsplit(".", 1)[-1], known, n=1)
        where = f"{parent}." if parent else ""
        hint = f" Did you mean {where}{close[0]}?" if close else ""
        fix = f"{where}{close[0]}={_override_value(key, argv)}" if close else \
            f"one of the keys {script} --help lists"
        return f"{key} is not a config key.{hint} Fix: {fix}"
    return f"{str(e).splitlines()[0]} Fix: {script} --help lists the groups and keys"


def share_run_dir(argv: list[str]) -> None:
    """Under ``torchrun`` each rank runs Hydra, which would name the run directory after its own
    clock (ranks starting either side of a second would write to different folders). Join the
    process group first and give every rank rank 0's ``hydra.run.dir``; ranks > 0 write no
    ``.hydra/`` copy of the config. Call before Hydra composes."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or "-m" in argv or "--multirun" in argv:
        return
    from ..engine.distributed import broadcast_object, init_distributed

    device = next((a.split("=", 1)[1] for a in argv if a.startswith("trainer.device=")), "auto")
    world = init_distributed(device)
    if not any(a.startswith("hydra.run.dir=") for a in argv):
        argv.append("hydra.run.dir=" + broadcast_object(
            unique_dir(time.strftime("outputs/%Y-%m-%d/%H-%M-%S")) if world.is_main else None))
    if not world.is_main:
        argv.append("hydra.output_subdir=null")


def _quiet_other_ranks() -> None:
    """Ranks > 0: warnings and errors on the console only; rank 0 writes the run's log file."""
    from ..engine.distributed import current_world

    if current_world().is_main:
        return
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logging.FileHandler):
            root.removeHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("video_sparse").setLevel(logging.WARNING)


def run_task(task: Callable[[DictConfig, Path], Any], check: Callable[[DictConfig], None], cfg: DictConfig,
             run_dir: str | Path, record: "RunRecord | None" = None) -> Any:
    """``check(cfg)`` (the checks a schema cannot express), then ``task(cfg, run_dir)`` in the
    distributed group of a torchrun / submitit job, the run directory locked by rank 0 for the
    task's life (one live process per directory); a :class:`UserError` ends in :func:`fail`, after
    ``record`` (the directory's ``.hydra/`` before Hydra rewrote it) is put back."""
    record = record or RunRecord(None)
    try:
        check(cfg)
        from ..engine.distributed import failures_end_every_rank, init_distributed  # imports torch: after the checks
        from ..engine.run_lock import DirectoryLock
        world = init_distributed(cfg.trainer.device if "trainer" in cfg else "auto")  # joins a multi-task submitit job
        _quiet_other_ranks()
        with failures_end_every_rank(world), \
                DirectoryLock(run_dir, "hydra.run.dir") if world.is_main else contextlib.nullcontext():
            return task(cfg, Path(run_dir))
    except UserError as e:
        record.restore()  # the run directory's .hydra/ as it was before this refused command
        fail(str(e))
    except MissingMandatoryValue as e:
        record.restore()
        key = getattr(e, "full_key", None) or "a required key"
        fail(f"{key} must be set (it is ??? in the config). Fix: add {key}=... to the command line")
    except KeyboardInterrupt:  # Ctrl-C outside the training loop's handler, or twice
        interrupted(Path(run_dir))
    finally:
        if "torch" in sys.modules:
            from ..engine.distributed import destroy_distributed
            destroy_distributed()


def interrupted(run_dir: Path) -> None:
    """The one line of a Ctrl-C that could not wait for a checkpoint, and exit status 130."""
    last = run_dir / "checkpoints" / "last.pt"
    then = (f": {last} is the last checkpoint. Fix: run the same command (same hydra.run.dir) to continue from it"
            if last.is_file() else "")
    print(f"interrupted (Ctrl-C){then}", file=sys.stderr, flush=True)
    sys.exit(130)


def main(config_name: str, task: Callable[[DictConfig, Path], Any], check: Callable[[DictConfig], None]) -> None:
    """Run an app on ``sys.argv``: ``--help``, or Hydra with ``config_name`` from ``conf/`` calling
    :func:`run_task`. Composition errors (unknown group option or key, wrong type, unparsable
    override) end in :func:`fail`."""
    argv = sys.argv
    argv[1:] = schema.expand_shorthands(config_name, argv[1:])
    if "--help" in argv[1:] or "-h" in argv[1:]:
        from .help import print_help
        _reporting_hydra_errors(argv, config_name, lambda: print_help(config_name, argv))
        return
    share_run_dir(argv)
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra raises instead of printing its report; we print one line
    record = RunRecord(next((a.split("=", 1)[1] for a in argv if a.startswith("hydra.run.dir=")), None))

    started = []

    @hydra.main(version_base="1.3", config_path=CONF_DIR, config_name=config_name)
    def hydra_main(cfg: DictConfig) -> None:
        started.append(True)
        run_task(task, check, cfg, HydraConfig.get().runtime.output_dir, record)

    try:
        _reporting_hydra_errors(argv, config_name, hydra_main)
    except OSError as e:  # Hydra creating the run directory, its log file or .hydra/: before the task
        if started or place_error(e) is None:
            raise
        _fail_run_dir(e)


class RunRecord:
    """The ``.hydra/`` files of an existing run directory, read before Hydra writes this command's
    over them, so that a refused command (a config error, a refused resume, a directory in use)
    leaves the run's record as it was."""

    def __init__(self, run_dir: str | None):
        self.files: dict[Path, bytes | None] = {}
        if run_dir and (Path(run_dir) / ".hydra").is_dir():
            for name in ("config.yaml", "hydra.yaml", "overrides.yaml"):
                path = Path(run_dir) / ".hydra" / name
                self.files[path] = path.read_bytes() if path.is_file() else None

    def restore(self) -> None:
        for path, content in self.files.items():
            if content is None:
                path.unlink(missing_ok=True)
            else:
                path.write_bytes(content)


def _reporting_hydra_errors(argv: list[str], config_name: str, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except (HydraException, OmegaConfBaseException) as e:
        if disk := place_error(e):  # the default run directory (${unique_dir:...}) cannot be created
            _fail_run_dir(disk)
        fail(hydra_error_message(e, argv, config_name))


def _fail_run_dir(error: OSError) -> None:
    fail(str(write_error(error, "the run directory", "hydra.run.dir=<a writable directory>")))
