"""Process groups for DDP: torchrun's environment, Hydra's submitit SLURM launcher, or one process.

One process group serves CPU and CUDA tensors ("cpu:gloo,cuda:nccl" on GPUs) so that Python
objects (run directory, predictions) travel over gloo while gradients use NCCL.
"""
from __future__ import annotations

import contextlib
import datetime
import io
import logging
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler, Sampler

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class World:
    rank: int = 0
    local_rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def _submitit_env() -> None:
    """Translate a multi-task submitit job (``hydra/launcher=submitit_slurm`` with
    ``tasks_per_node`` > 1 or ``nodes`` > 1) into torchrun's variables."""
    if "WORLD_SIZE" in os.environ or "SUBMITIT_EXECUTOR" not in os.environ:
        return
    import submitit

    env = submitit.JobEnvironment()
    if env.num_tasks <= 1:
        return
    os.environ.update(RANK=str(env.global_rank), LOCAL_RANK=str(env.local_rank), WORLD_SIZE=str(env.num_tasks),
                      MASTER_ADDR=env.hostnames[0],
                      MASTER_PORT=os.environ.get("MASTER_PORT", str(20000 + int(str(env.job_id).split("_")[0]) % 20000)))


def init_distributed(device: str = "auto") -> World:
    """Join the process group described by the environment (idempotent); a single process
    without torchrun or a multi-task submitit job gets ``World(0, 0, 1)``."""
    if dist.is_available() and dist.is_initialized():
        return current_world()
    _submitit_env()
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device != "cpu" and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend="cpu:gloo,cuda:nccl" if use_cuda else "gloo",
                            timeout=datetime.timedelta(minutes=int(os.environ.get("VIDEO_SPARSE_DIST_TIMEOUT_MIN", 30))))
    return current_world()


def current_world() -> World:
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    return World(dist.get_rank(), int(os.environ.get("LOCAL_RANK", dist.get_rank())), dist.get_world_size())


def destroy_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if current_world().distributed:
        dist.barrier()


@contextlib.contextmanager
def main_first(world: World):
    """Rank 0 runs the block first (e.g. generates a dataset cache), then the others."""
    if not world.is_main:
        barrier()
    yield
    if world.is_main:
        barrier()


def broadcast_object(obj, src: int = 0):
    """``obj`` of rank ``src`` on every rank (identity without a process group)."""
    if not current_world().distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_objects(obj) -> list:
    """Every rank's ``obj`` (tensors, numbers, strings and their lists, tuples and dicts), in rank
    order (``[obj]`` without a process group). Tensors travel as ``torch.save`` bytes, which the
    restricted unpickler of ``all_gather_object`` would refuse to rebuild."""
    world = current_world()
    if not world.distributed:
        return [obj]
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    out = [None] * world.size
    dist.all_gather_object(out, buffer.getvalue())
    return [torch.load(io.BytesIO(b), weights_only=True) for b in out]


def all_reduce_sum(values: list[float]) -> list[float]:
    """Element-wise sum over ranks, in float64 so that counts stay exact."""
    if not current_world().distributed:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


def any_rank(flag: bool) -> bool:
    """True on every rank if ``flag`` is true on any rank (all ranks must call it together)."""
    return all_reduce_sum([float(flag)])[0] > 0


# ----------------------------------------------------------------------------- one failing rank ends them all
FAILURE_POLL_S = 1.0  # how often every rank looks for another's failure
ACK_WAIT_S = 10.0  # how long a failing rank waits for the others to see its failure before it exits
EXIT_WAIT_S = 30.0  # how long the others wait for it to be gone before they exit (another host: OTHER_HOST_WAIT_S)
OTHER_HOST_WAIT_S = 5.0
AGENT_WAIT_S = 2.0  # torchrun's agent polls every 0.1 s (--monitor-interval): it sees the failed rank alone


def _failure_key() -> str:
    # torchrun keeps its store across restarts of the workers: one key per attempt
    return f"video_sparse/failed/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}"


def _store() -> dist.TCPStore:
    """A client of the rendezvous store (torchrun's agent, or rank 0's for env:// and submitit),
    one per thread that uses it."""
    return dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False,
                         timeout=datetime.timedelta(seconds=30), wait_for_workers=False)


@contextlib.contextmanager
def failures_end_every_rank(world: World, poll_s: float = FAILURE_POLL_S):
    """Run the block so that an exception on any rank ends every rank within seconds, with the
    error printed once: without it, the others would wait in their next collective for the
    process group's timeout (30 min), and under SLURM / submitit nothing else stops them.

    The failing rank writes its rank and error to the rendezvous store, waits (up to
    :data:`ACK_WAIT_S`) until the other ranks have seen it, and raises its error; every other
    rank's watcher thread, polling the store, logs one line and ends its process (``os._exit(1)``:
    its main thread may be blocked inside a collective). A second rank failing at the same time
    exits with one line instead of repeating the error. ``SystemExit`` (preemption, a user error's
    exit status) is every rank's own decision, not a failure.
    """
    if not world.distributed or "MASTER_ADDR" not in os.environ:
        yield
        return
    stop = threading.Event()
    watcher = threading.Thread(target=_watch_failures, args=(world, stop, poll_s), daemon=True,
                               name="video_sparse-failures")
    watcher.start()
    try:
        yield
    except Exception as e:
        stop.set()
        first = _report_failure(world, e)
        if not first:  # mostly a collective that broke when the failing rank exited: let it be the first
            with contextlib.suppress(Exception):
                _, host, pid = _store().get(_failure_key()).decode().split()
                _wait_until_gone(host, int(pid))
            _stop_process(f"rank {world.rank} stops: another rank failed first (its error is printed by that rank); "
                          f"here: {type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}")
        raise
    finally:
        stop.set()


def _report_failure(world: World, error: BaseException) -> bool:
    """Publish this rank's failure; True if it is the first. Waits until the others saw it."""
    try:
        store = _store()
        key = _failure_key()
        first = store.add(key + "/count", 1) == 1
        if first:
            store.set(key, f"{world.rank} {socket.gethostname()} {os.getpid()}")
            deadline = time.time() + ACK_WAIT_S
            while time.time() < deadline and store.add(key + "/seen", 0) < world.size - 1:
                time.sleep(0.05)
        return first
    except Exception:  # noqa: BLE001 - the store may be gone with rank 0; the error itself still matters
        return True


def _watch_failures(world: World, stop: threading.Event, poll_s: float) -> None:
    try:
        store, key = _store(), _failure_key()
        while not stop.wait(poll_s):
            if store.check([key]):
                failed, host, pid = store.get(key).decode().split()
                if failed == str(world.rank):  # this rank's own failure, being reported by its main thread
                    return
                store.add(key + "/seen", 1)
                _wait_until_gone(host, int(pid))
                _stop_process(f"rank {world.rank} stops: rank {failed} failed (its error is printed by that rank)")
    except Exception:  # noqa: BLE001 - the store ended (rank 0 finished or died): nothing left to watch
        return


def _wait_until_gone(host: str, pid: int) -> None:
    """Let the failing rank exit first, and under torchrun give its agent the time to see that:
    the agent reports the processes it finds ended as the job's failures, the first as the root
    cause (and ends the others itself)."""
    if host != socket.gethostname():
        time.sleep(OTHER_HOST_WAIT_S)
        return
    deadline = time.time() + EXIT_WAIT_S
    while time.time() < deadline and _alive(pid):
        time.sleep(0.05)
    if "TORCHELASTIC_RUN_ID" in os.environ:
        time.sleep(AGENT_WAIT_S)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (an exited one its parent has not reaped yet does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:  # gone, or no /proc (macOS): ask the kernel
        try:
            os.kill(pid, 0)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:  # the pid now belongs to another user's process
            return False


def _stop_process(message: str) -> None:
    """One line on stderr (and in the log), then the end of this process, whatever its main thread
    is blocked in; its DataLoader workers follow their parent."""
    log.error(message)
    print(f"error: {message}", file=sys.stderr, flush=True)
    logging.shutdown()
    os._exit(1)


class TrainSampler(DistributedSampler):
    """``DistributedSampler`` (shuffled per epoch from ``seed + epoch``, full batches) that can
    start part-way through an epoch: ``set_epoch(epoch, start=k)`` skips this rank's first ``k``
    indices, the ones a resumed run already trained on."""

    def __init__(self, dataset, world: World, seed: int):
        super().__init__(dataset, num_replicas=world.size, rank=world.rank, shuffle=True, seed=seed, drop_last=True)
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        super().set_epoch(epoch)
        self.start = start

    def __iter__(self):
        return iter(list(super().__iter__())[self.start:])

    def __len__(self) -> int:
        return self.num_samples - self.start


class ShardSampler(Sampler):
    """Evaluation shard of this rank: indices ``rank, rank + world, ...`` in order, without the
    padding of ``DistributedSampler`` so that gathering counts every video exactly once."""

    def __init__(self, dataset, world: World):
        self.indices = list(range(world.rank, len(dataset), world.size))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)
