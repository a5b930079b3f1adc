"""The base class of every mistake a user can make and fix (a config value, a path, a file), and
the one line for a place the user chose that cannot be written."""
from __future__ import annotations

import errno
import os
from pathlib import Path

# errors of the place written to, not of the program: a full disk, no permission, a path under a file
PLACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR,
                errno.EEXIST, errno.ENAMETOOLONG)


class UserError(Exception):
    """A user's mistake: the message names the thing and how to fix it. The apps print it as one
    line and exit with status 2; every layer's own error (annotations, checkpoints, model options,
    ...) derives from it."""


class WriteError(UserError, OSError):
    """A file or folder the user chose cannot be written: a full disk, no permission, a path
    under a file."""


def place_error(error: BaseException) -> OSError | None:
    """The ``OSError`` of the place written to in ``error`` or its causes (libraries wrap them)."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in PLACE_ERRNOS:
            return error
        error = error.__cause__ or error.__context__
    return None


def write_error(error: OSError, what: str, fix: str) -> WriteError:
    """One line: ``what`` could not be written, why (the operating system's words), the fix."""
    where = f" ({error.filename})" if error.filename and str(error.filename) not in what else ""
    return WriteError(f"cannot write {what}{where}: {error.strerror or error}. Fix: {fix}")


def check_writable_dir(directory: str | os.PathLike, what: str, fix: str) -> Path:
    """Create ``directory`` (and its parents) and a probe file in it, before any work is done: a
    place that cannot be written raises :class:`WriteError` (``what``: how the user named it)."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise WriteError(f"cannot write into {what}: {directory} is a file, not a directory. Fix: {fix}")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise write_error(e, f"into {what}", fix) from e
    return directory
