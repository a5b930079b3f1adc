"""Fault tolerance at research scale: a failing rank ends the job with its error once, preemption
checkpoints and resumes exactly, resuming checks the run it continues, the final evaluation finds
weights, files are shared as the umask says, hung data loading stops."""
import os
import random
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from helpers import ROOT, run_app, train_in_process
from video_sparse.engine.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_ranks(script, args, cwd):
    """Run ``script args`` as the two ranks of a job started as SLURM starts tasks (no torchrun);
    returns the processes and their (stdout, stderr)."""
    env = dict(os.environ, WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()))
    procs = [subprocess.Popen([sys.executable, str(script), *args], cwd=cwd, text=True, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=dict(env, RANK=str(r), LOCAL_RANK=str(r)))
             for r in range(2)]
    try:
        return procs, [p.communicate(timeout=240) for p in procs]
    finally:
        for p in procs:
            p.kill()


FAILING_TRAIN = """
import runpy, sys, time
from video_sparse.engine import trainer

def fail_on(rank, where):
    real = getattr(trainer, where)
    def wrapped(run, *args, **kwargs):
        if run.world.rank == rank and (where != "optimizer_step" or run.step == 3):
            print("failing at %.3f" % time.time(), file=sys.stderr, flush=True)
            raise OSError(28, "No space left on device (injected on rank %d)" % rank)
        return real(run, *args, **kwargs)
    setattr(trainer, where, wrapped)

fail_on({rank}, {where!r})
sys.argv[0] = {train!r}
runpy.run_path({train!r}, run_name="__main__")
"""


@pytest.mark.parametrize("rank, where", [(1, "optimizer_step"), (0, "validate_and_checkpoint")])
def test_one_failing_rank_ends_every_rank_with_its_error_once(tmp_path, tiny_overrides, rank, where):
    """Two ranks started as SLURM starts tasks (no torchrun watching them): one raises mid-epoch
    (rank 1 at step 3) or while the other waits in a collective (rank 0 before writing the epoch's
    checkpoint); both are gone within seconds, the error is printed once, by its rank."""
    script = tmp_path / "failing_train.py"
    script.write_text(FAILING_TRAIN.format(rank=rank, where=where, train=str(ROOT / "train.py")))
    args = tiny_overrides + ["model=c2d_small", "trainer.epochs=3", "data.train_size=40",
                             f"hydra.run.dir={tmp_path / 'run'}"]
    env = dict(os.environ, WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()))
    start = time.time()
    procs = [subprocess.Popen([sys.executable, str(script), *args], cwd=tmp_path, text=True, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=dict(env, RANK=str(r), LOCAL_RANK=str(r)))
             for r in range(2)]
    try:
        outputs = [p.communicate(timeout=240) for p in procs]
    finally:
        for p in procs:
            p.kill()
    elapsed = time.time() - start
    failing, other = outputs[rank][1], outputs[1 - rank][1]
    failed_at = float(failing.split("failing at ")[1].split()[0])
    assert all(p.returncode != 0 for p in procs)
    assert failing.count("OSError: [Errno 28] No space left on device (injected") == 1, failing[-3000:]
    assert "Traceback" not in other and "injected" not in other, other[-3000:]
    assert f"rank {1 - rank} stops: rank {rank} failed" in other, other[-3000:]
    assert elapsed < 120  # startup and the tiny data set included; a waiting rank would take 30 min
    gone = time.time() - failed_at
    print(f"both ranks gone {gone:.1f} s after the error")
    assert gone < 60  # from the error to both processes gone


def test_under_torchrun_the_failing_rank_is_the_root_cause(tmp_path, tiny_overrides):
    """torchrun reports the first process it finds ended as the job's root cause: the healthy rank
    waits until the failing one is gone (and the agent has seen it) before it ends."""
    script = tmp_path / "failing_train.py"
    script.write_text(FAILING_TRAIN.format(rank=1, where="optimizer_step", train=str(ROOT / "train.py")))
    args = tiny_overrides + ["model=c2d_small", "trainer.epochs=3", "data.train_size=40",
                             f"hydra.run.dir={tmp_path / 'run'}"]
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(script), *args], cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert proc.returncode != 0
    root_cause = proc.stderr.split("Root Cause (first observed failure):")[1]
    assert "rank      : 1 (local_rank: 1)" in root_cause.split("====")[0], proc.stderr[-3000:]


INTERRUPTED_TRAIN = """
import os, runpy, signal, sys
from video_sparse.engine import trainer

real_predict = trainer.predict
def predict(model, loader, *args, **kwargs):
    if os.environ["RANK"] == "1":  # Ctrl-C reaching this rank alone, in its only validation batch
        model.register_forward_pre_hook(lambda m, i: os.kill(os.getpid(), signal.SIGINT))
    return real_predict(model, loader, *args, **kwargs)
trainer.predict = predict
sys.argv[0] = {train!r}
runpy.run_path({train!r}, run_name="__main__")
"""


def test_ctrl_c_on_one_of_two_ranks_while_validating_ends_both_with_one_line_and_a_checkpoint(tmp_path,
                                                                                          tiny_overrides):
    """Two ranks as SLURM starts them; SIGINT reaches rank 1 in its only validation batch (its
    shard: 4 videos, rank 0's: 5, so rank 0 has a second batch): the ranks agree at the next poll,
    rank 0 writes last.pt with the validation pending, says so in one line, both exit 130."""
    script = tmp_path / "interrupted_train.py"
    script.write_text(INTERRUPTED_TRAIN.format(train=str(ROOT / "train.py")))
    args = tiny_overrides + ["model=c2d_small", "data.train_size=16", "data.val_size=9",
                             f"hydra.run.dir={tmp_path / 'run'}"]
    procs, outputs = _two_ranks(script, args, tmp_path)
    assert [p.returncode for p in procs] == [130, 130], outputs[0][1][-2000:] + outputs[1][1][-2000:]
    said = [(out + err).count("interrupted by SIGINT (Ctrl-C) while validating epoch 1") for out, err in outputs]
    assert said == [1, 0] and not any("Traceback" in err for _, err in outputs), outputs[1][1][-2000:]
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert state["validation_pending"] and state["epoch"] == 0 and state["world_size"] == 2


@pytest.mark.parametrize("signum, said", [
    pytest.param(signal.SIGTERM, "preempted by SIGTERM", marks=pytest.mark.slow),  # same machinery as SIGINT's
    (signal.SIGINT, "interrupted by SIGINT (Ctrl-C)")])
def test_a_signal_to_every_process_then_resume_is_bit_identical(tmp_path, uninterrupted_run, signum, said):
    """SLURM's preemption signal (or a terminal's Ctrl-C) reaches every process of the job
    (DataLoader workers included) at a random moment: the run finishes its step, writes last.pt
    there, says so in one line, exits 128 + signal; the same command continues to exactly the
    weights of an uninterrupted run."""
    args, straight = uninterrupted_run
    run_dir = tmp_path / "preempted"
    proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args, f"hydra.run.dir={run_dir}"], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    last = run_dir / "checkpoints" / "last.pt"
    deadline = time.time() + 240
    while not last.exists() and time.time() < deadline and proc.poll() is None:  # epoch 1 is done
        time.sleep(0.02)
    time.sleep(random.uniform(0, 0.4))
    os.killpg(proc.pid, signum)
    stderr = proc.communicate(timeout=120)[1]
    assert proc.returncode == 128 + signum, stderr[-3000:]
    assert "Traceback" not in stderr and "Error" not in stderr, stderr[-3000:]
    assert said in (run_dir / "train.log").read_text()
    state = load_checkpoint(last)
    assert 10 <= state["step"] < 30

    run_app("train.py", args + [f"hydra.run.dir={run_dir}"], tmp_path)
    a = load_checkpoint(straight / "checkpoints" / "last.pt")
    b = load_checkpoint(last)
    assert a["step"] == b["step"] == 30
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), f"{k} differs after SIGTERM at step {state['step']}"
    assert "resumed from" in (run_dir / "train.log").read_text()


def test_preemption_in_process_checkpoints_the_step_it_was_signalled_in(tmp_path, tiny_overrides, monkeypatch):
    from video_sparse.engine import trainer

    real_step = trainer.optimizer_step

    def signalled_at_step_7(run, skip):
        real_step(run, skip)
        if run.step == 7:
            os.kill(os.getpid(), signal.SIGUSR1)
    monkeypatch.setattr(trainer, "optimizer_step", signalled_at_step_7)
    previous = signal.getsignal(signal.SIGUSR1)
    with pytest.raises(SystemExit) as exit_info:
        train_in_process(tiny_overrides + ["model=c2d_small", "trainer.epochs=2"], tmp_path)
    assert exit_info.value.code == 128 + signal.SIGUSR1
    assert signal.getsignal(signal.SIGUSR1) is previous  # handlers are given back
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert (state["epoch"], state["batch"], state["step"]) == (1, 2, 7)  # 5 steps per epoch


def _train(tmp_path, tiny_overrides, *extra):
    return train_in_process(tiny_overrides + ["model=c2d_small", *extra], tmp_path)


@pytest.mark.parametrize("override, key", [
    ("optim.lr=0.01", "optim.lr"), ("optim=sgd", "optim._target_"), ("sched.warmup_epochs=0", "sched.warmup_epochs"),
    ("trainer.batch_size=2", "trainer.batch_size"), ("trainer.accumulate=2", "trainer.accumulate"),
    ("trainer.amp=bf16", "trainer.amp"), ("trainer.layer_decay=0.5", "trainer.layer_decay"),
    ("trainer.epochs=2", "trainer.epochs"), ("model.dropout=0.1", "model.dropout"), ("trainer.seed=1", "trainer.seed"),
])
def test_resume_refuses_settings_that_change_the_saved_state(tmp_path, tiny_overrides, override, key):
    _train(tmp_path, tiny_overrides)
    with pytest.raises(CheckpointError, match=rf"last.pt: cannot continue that run with other settings \({key} .*"
                                              r"Fix:.*model.pretrained=.*last.pt trainer.resume=none"):
        _train(tmp_path, tiny_overrides, override)


def test_resume_accepts_safe_changes_and_refuses_other_world_sizes_and_weights_files(tmp_path, tiny_overrides):
    _train(tmp_path, tiny_overrides)
    _train(tmp_path, tiny_overrides, "trainer.num_workers=1", "test.clips=2", "logger.log_every=1")  # resumes
    last = tmp_path / "checkpoints" / "last.pt"
    state = load_checkpoint(last)
    state["world_size"] = 2
    torch.save(state, last)
    with pytest.raises(CheckpointError, match=r"other settings \(processes 2 -> 1\)"):
        _train(tmp_path, tiny_overrides)

    weights = tmp_path / "weights.pt"
    torch.save(state["model"], weights)
    with pytest.raises(CheckpointError, match=rf"{weights}: a weights file.*Fix: .*model.pretrained={weights}"):
        _train(tmp_path / "b", tiny_overrides, f"trainer.resume={weights}")


def test_final_evaluation_uses_the_weights_that_exist_without_best(tmp_path, tiny_overrides, monkeypatch):
    """Resuming another run whose best is never beaten, or NaN validation, leaves no best.pt:
    the final evaluation takes last.pt (or the resumed file) and metrics.json says which."""
    import json

    _train(tmp_path / "a", tiny_overrides, "trainer.epochs=2", "trainer.keep_epochs=2")
    epoch1 = tmp_path / "a" / "checkpoints" / "epoch_001.pt"
    state = load_checkpoint(epoch1)
    state["best_top1"] = 2.0  # unbeatable
    torch.save(state, epoch1)
    final = _train(tmp_path / "b", tiny_overrides, "trainer.epochs=2", f"trainer.resume={epoch1}")
    assert not (tmp_path / "b" / "checkpoints" / "best.pt").exists()
    assert final["checkpoint"].endswith("b/checkpoints/last.pt") and final["best_epoch"] == 2
    assert json.loads((tmp_path / "b" / "metrics.json").read_text())["checkpoint"] == final["checkpoint"]

    finished = tmp_path / "a" / "checkpoints" / "last.pt"  # nothing left to train: the resumed file itself
    final = _train(tmp_path / "c", tiny_overrides, "trainer.epochs=2", f"trainer.resume={finished}")
    assert final["checkpoint"] == str(finished)

    from video_sparse.engine import trainer
    monkeypatch.setattr(trainer, "classification_metrics",
                        lambda *a, **k: {"top1": float("nan"), "top5": float("nan"), "mean_class_acc": float("nan")})
    nan = float("nan")
    monkeypatch.setattr(trainer, "report", lambda *a, extra, **k: dict(extra, top1=nan, top5=nan, mean_class_acc=nan,
                                                                          num_failed=0))
    final = _train(tmp_path / "d", tiny_overrides)
    assert final["checkpoint"].endswith("d/checkpoints/last.pt")


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_checkpoints_are_created_with_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        save_checkpoint({"x": torch.zeros(1)}, tmp_path / "best.pt")
    finally:
        os.umask(old)
    assert (tmp_path / "best.pt").stat().st_mode & 0o777 == mode


class Foreign:  # what another framework's checkpoint pickles besides tensors
    pass


def test_unreadable_checkpoints_say_what_the_file_is(tmp_path):
    torch.save({"model": Foreign()}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(tmp_path / "foreign.pt")
    assert "holds Python objects" in str(e.value) and "weights_only" not in str(e.value)
    (tmp_path / "cut.pt").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(tmp_path / "cut.pt")
    assert "not a readable checkpoint" in str(e.value) and "epoch_NNN" not in str(e.value)
    assert "Fix: another checkpoint of" in str(e.value) and "foreign.pt" in str(e.value)
    (tmp_path / "noise.pt").write_bytes(bytes(range(256)) * 20)  # random bytes are not "Python objects"
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(tmp_path / "noise.pt")
    assert "not a readable checkpoint" in str(e.value) and "neither a zip archive nor a pickle" in str(e.value)
    assert "Python objects" not in str(e.value) and "weights_only" not in str(e.value)


class _HangingDataset(torch.utils.data.Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        time.sleep(60)
        return torch.zeros(1)


def test_a_hung_data_loader_worker_is_an_error_after_the_timeout():
    from video_sparse.engine.runtime import data_loader

    loader = data_loader(_HangingDataset(), 2, 1, torch.device("cpu"), timeout=1)
    start = time.time()
    with pytest.raises(RuntimeError, match="timed out"):
        next(iter(loader))
    assert time.time() - start < 30


PERSISTENT_WORKERS_AT_EXIT = textwrap.dedent("""
    import multiprocessing, os, signal, time
    import torch
    from torch.utils.data import TensorDataset
    from video_sparse.engine.runtime import data_loader
    loader = data_loader(TensorDataset(torch.arange(8.0)), 2, 2, torch.device("cpu"), sampler=list(range(8)),
                         train=True, ignore_signals=("SIGTERM",))
    for epoch in range(2):
        for i, batch in enumerate(loader):
            if epoch == 0 and i == 1:  # each worker has sent a batch: a preemption signal to all, they keep serving
                for worker in multiprocessing.active_children():
                    os.kill(worker.pid, signal.SIGTERM)
                time.sleep(0.2)
    still_referenced = loader  # as a Run's loaders are at the end of train.py
    print("served", flush=True)
""")


def test_workers_that_ignore_preemption_signals_still_end_with_the_main_process():
    """multiprocessing ends the workers still alive at exit with SIGTERM and waits for them: a
    finished run once waited forever on workers that ignored it."""
    proc = subprocess.run([sys.executable, "-c", PERSISTENT_WORKERS_AT_EXIT], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0 and "served" in proc.stdout, proc.stderr[-3000:]
    assert "DataLoader worker" not in proc.stderr, proc.stderr[-3000:]


def test_slurm_launcher_preset_kills_tasks_on_a_bad_exit_and_signals_before_the_end():
    from submitit.slurm.slurm import _make_sbatch_string

    from helpers import compose_with_hydra
    launcher = compose_with_hydra("train", ["hydra/launcher=slurm", "hydra.launcher.tasks_per_node=8"]).hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher") and launcher.tasks_per_node == 8
    script = _make_sbatch_string(command="python train.py", folder="/tmp/x", setup=list(launcher.setup),
                                 signal_delay_s=launcher.signal_delay_s)
    assert "export SLURM_KILL_BAD_EXIT=1" in script and "#SBATCH --signal=USR2@120" in script
    assert launcher.max_num_timeout > 0


def test_failure_watch_is_a_no_op_in_one_process():
    from video_sparse.engine.distributed import World, failures_end_every_rank

    with pytest.raises(ValueError):
        with failures_end_every_rank(World()):
            raise ValueError("plain")


FAILURE_WATCH_UNIT = textwrap.dedent("""
    import os, sys, time
    import torch.distributed as dist
    from video_sparse.engine.distributed import failures_end_every_rank, init_distributed
    world = init_distributed("cpu")
    with failures_end_every_rank(world, poll_s=0.1):
        if world.rank == 0:
            time.sleep(0.5)
            raise KeyError("the original error")
        dist.barrier()  # rank 1 waits for rank 0 forever
    print("unreachable")
""")


def test_a_rank_waiting_in_a_collective_is_ended_by_another_ranks_failure(tmp_path):
    script = tmp_path / "watch.py"
    script.write_text(FAILURE_WATCH_UNIT)
    env = dict(os.environ, WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()))
    procs = [subprocess.Popen([sys.executable, str(script)], env=dict(env, RANK=str(r), LOCAL_RANK=str(r)), text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for r in range(2)]
    start = time.time()
    out = [p.communicate(timeout=60) for p in procs]
    assert time.time() - start < 30
    assert "the original error" in out[0][1] and "the original error" not in out[1][1]
    assert "rank 1 stops: rank 0 failed" in out[1][1] and procs[1].returncode == 1
    assert "unreachable" not in out[0][0] + out[1][0]


def test_resume_reads_a_renamed_option_under_its_new_name():
    """A run saved with model.sifa (now model.temporal) resumes with the same value and is refused
    with another: the old name is not silently dropped."""
    from video_sparse.engine.checkpoint import check_resumable

    ckpt = {"optimizer": {}, "rng": {}, "config": {"model": {"name": "sifa_small", "sifa": False}}}
    check_resumable(ckpt, "last.pt", {"model": {"name": "sifa_small", "temporal": False}}, 1)
    with pytest.raises(CheckpointError, match=r"model.temporal False -> True"):
        check_resumable(ckpt, "last.pt", {"model": {"name": "sifa_small", "temporal": True}}, 1)


def test_preemption_while_validating_stops_it_and_the_resumed_run_validates_first(tmp_path, tiny_overrides,
                                                                                   monkeypatch):
    """A signal at the second validation batch ends the run at the third (not after the whole
    validation): last.pt holds the trained epoch with its validation pending; the same command
    validates it, then trains on, to exactly the weights and history of an uninterrupted run
    (precise BN, EMA, dropout and mixup on: every consumer of the random streams)."""
    from video_sparse.engine import trainer

    args = tiny_overrides + ["model=c2d_small", "model.dropout=0.3", "trainer.mixup=0.8", "trainer.epochs=2",
                             "trainer.precise_bn=2", "trainer.ema_decay=0.9"]
    train_in_process(args, tmp_path / "straight")
    real_predict, batches = trainer.predict, []

    def signalled_in_first_validation(model, loader, *a, **kw):
        def count(module, inputs):
            batches.append(1)
            if len(batches) == 2:
                os.kill(os.getpid(), signal.SIGUSR1)
        hook = model.register_forward_pre_hook(count) if not batches else None
        try:
            return real_predict(model, loader, *a, **kw)
        finally:
            hook and hook.remove()
    monkeypatch.setattr(trainer, "predict", signalled_in_first_validation)
    with pytest.raises(SystemExit) as exit_info:
        train_in_process(args, tmp_path / "preempted")
    assert exit_info.value.code == 128 + signal.SIGUSR1
    assert len(batches) == 2  # the third batch never ran
    pending = load_checkpoint(tmp_path / "preempted" / "checkpoints" / "last.pt")
    assert pending["validation_pending"] and (pending["epoch"], pending["step"], pending["history"]) == (0, 5, [])
    assert not (tmp_path / "preempted" / "checkpoints" / "best.pt").exists()

    monkeypatch.setattr(trainer, "predict", real_predict)
    train_in_process(args, tmp_path / "preempted")
    a = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "preempted" / "checkpoints" / "last.pt")
    assert a["step"] == b["step"] == 10 and not b["validation_pending"]
    for part in ("model", "ema"):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), f"{part}.{k} differs after a preempted validation"
    drop_time = [{k: v for k, v in r.items() if k != "epoch_time_s"} for r in a["history"]]
    assert drop_time == [{k: v for k, v in r.items() if k != "epoch_time_s"} for r in b["history"]]


def test_a_second_ctrl_c_stops_at_once_with_one_line_naming_the_last_checkpoint(tmp_path, capsys):
    from video_sparse.apps.launch import run_task
    from video_sparse.engine.preemption import Preemption

    with Preemption(["SIGTERM"]) as preemption:  # SIGINT is handled whatever the configured signals
        os.kill(os.getpid(), signal.SIGINT)
        assert preemption.received == signal.SIGINT
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler

    def task(cfg, run_dir):
        raise KeyboardInterrupt
    save_checkpoint({"step": 3}, tmp_path / "checkpoints" / "last.pt")
    with pytest.raises(SystemExit) as exit_info:
        run_task(task, lambda cfg: None, {}, tmp_path)
    assert exit_info.value.code == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"interrupted (Ctrl-C): {tmp_path / 'checkpoints' / 'last.pt'} is the last checkpoint. Fix: run "
                   "the same command (same hydra.run.dir) to continue from it"]
