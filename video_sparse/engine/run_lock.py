"""One live process per directory: an exclusive lock on ``<directory>/.lock`` held for the run's
life (the operating system releases it when the process ends, however it ends)."""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

from ..errors import UserError, write_error

LOCK_FILE = ".lock"


class DirectoryInUse(UserError, RuntimeError):
    """Another live process holds the directory."""


class DirectoryLock:
    """``with DirectoryLock(run_dir, "hydra.run.dir"):`` — refuses (one line) while another live
    process holds ``directory``; ``key`` names the setting that chooses another one."""

    def __init__(self, directory: str | os.PathLike, key: str):
        self.path, self.key, self.fd = Path(directory) / LOCK_FILE, key, None

    def __enter__(self) -> "DirectoryLock":
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise write_error(e, f"into {self.key}={self.path.parent}", f"{self.key}=<a writable directory>") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise DirectoryInUse(f"{self.path.parent}: another live process (pid {owner}) is writing into this "
                                 f"directory. Fix: wait until it ends, or {self.key}=<another directory>") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self.fd = fd
        return self

    def __exit__(self, *exc) -> None:
        os.close(self.fd)  # releases the lock
