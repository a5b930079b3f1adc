"""Preemption: a scheduler's warning signal becomes a checkpoint at the next step and a clean exit.

SLURM sends SIGTERM when it preempts a job (or the signal of ``--signal``, SIGUSR2 under submitit,
some time before the end of the wall time); torchrun forwards SIGTERM to its workers. The handler
only records the signal. Between optimiser steps the ranks agree (one all-reduce) whether any of
them got one; then every rank takes part in writing ``last.pt`` at that step and the run ends with
:class:`Preempted`. :meth:`Preemption.exit` then hands the signal to the handler that was there
before (submitit's requeues the job) and exits with ``128 + signal``, the status of a process the
signal ended. Run again with the same ``hydra.run.dir``, ``trainer.resume=auto`` continues exactly.

Ctrl-C (SIGINT) is always one of the signals: the first one ends the run the same way (exit 130);
a second one, for who cannot wait for the step, raises ``KeyboardInterrupt`` at once.
"""
from __future__ import annotations

import atexit
import functools
import logging
import multiprocessing
import os
import signal
import sys
import threading
from typing import Sequence

from .distributed import all_gather_objects, any_rank

log = logging.getLogger(__name__)


class Preempted(Exception):
    """Raised by the training loop once the checkpoint of a preempted run is written."""

    def __init__(self, signum: int, where: str):
        what = "interrupted by SIGINT (Ctrl-C)" if signum == signal.SIGINT else \
            f"preempted by {signal.Signals(signum).name}"
        super().__init__(f"{what} {where}")
        self.signum = signum


def ignore_signals(names: Sequence[str], main_exiting, worker_id: int = 0) -> None:
    """DataLoader ``worker_init_fn``: SLURM signals every process of a job step, and a worker
    ended by SIGTERM would fail the batch the main process is about to checkpoint. The signals are
    ignored only while the main process runs: at its exit, multiprocessing ends the (persistent)
    workers still alive with SIGTERM and waits for them, which would wait forever.
    ``main_exiting``: :func:`main_exiting_event`."""
    def ignore_until_main_exits(signum, frame):
        if main_exiting.is_set():
            os._exit(0)  # as asked; a non-zero status would be reported as a worker failure

    for name in names:
        signal.signal(getattr(signal, name), ignore_until_main_exits)


@functools.cache
def main_exiting_event():
    """A multiprocessing event set when this process starts exiting: before multiprocessing's
    own exit handler terminates the workers (``atexit`` runs the last registered first)."""
    event = multiprocessing.Event()
    atexit.register(event.set)
    return event


def handled_signals(preempt_signals: Sequence[str]) -> list[str]:
    """``trainer.preempt_signals`` and SIGINT (Ctrl-C): what the loop and its workers handle."""
    return list(dict.fromkeys([*preempt_signals, "SIGINT"]))


class Preemption:
    """Context manager recording ``signals`` (names such as ``"SIGTERM"``; SIGINT is added) while
    training runs. Outside the main thread (where Python cannot install handlers) it records nothing."""

    def __init__(self, signals: Sequence[str]):
        self.signals = [getattr(signal, name) for name in handled_signals(signals)]
        self.received: int | None = None
        self.previous: dict[int, object] = {}

    def __enter__(self) -> "Preemption":
        if threading.current_thread() is threading.main_thread():
            for signum in self.signals:
                self.previous[signum] = signal.signal(signum, self._record)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)

    def _record(self, signum: int, frame) -> None:
        if self.received is None:  # the first one counts; logging here could deadlock on its lock
            self.received = signum
        elif signum == signal.SIGINT:  # Ctrl-C twice: now
            raise KeyboardInterrupt

    def requested(self) -> int:
        """The signal a rank received (the lowest rank's), 0 if none did. A collective: every rank
        calls it at the same point of the loop."""
        if not any_rank(self.received is not None):
            return 0
        return next(s for s in all_gather_objects(self.received) if s is not None)

    def exit(self, error: Preempted) -> None:
        """Pass the signal on to the handler installed before (submitit's requeue) and exit."""
        previous = self.previous.get(error.signum)
        if callable(previous) and previous is not signal.default_int_handler:
            previous(error.signum, None)
        sys.exit(128 + error.signum)
