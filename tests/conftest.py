import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("WANDB_MODE", "offline")


@pytest.fixture(scope="session")
def motion_cache(tmp_path_factory):
    """One tiny motion set, generated once per test session and shared."""
    return tmp_path_factory.mktemp("motion_cache")


def tiny(motion_cache):
    """Hydra overrides for a seconds-long run on a tiny motion set."""
    return [f"data.cache_dir={motion_cache}", "data.train_size=20", "data.val_size=10", "data.video_frames=8",
            "data.video_size=32", "data.frames=4", "data.size=32", "data.short_side=32", "trainer.epochs=1",
            "trainer.batch_size=4", "trainer.num_workers=0", "logger.mode=disabled", "trainer.device=cpu"]


@pytest.fixture
def tiny_overrides(motion_cache):
    return tiny(motion_cache)


def compose(config_name, overrides):
    from hydra import compose as hydra_compose, initialize_config_dir

    import video_sparse.apps.config  # noqa: F401  (registers the schema)
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return hydra_compose(config_name=config_name,
                             overrides=video_sparse.apps.config.expand_shorthands(config_name, overrides))


def compose_with_hydra(config_name, overrides):
    """Like :func:`compose`, with the ``hydra`` node (launcher, sweeper) kept."""
    from hydra import compose as hydra_compose, initialize_config_dir

    import video_sparse.apps.config  # noqa: F401  (registers the schema)
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return hydra_compose(config_name=config_name, return_hydra_config=True,
                             overrides=video_sparse.apps.config.expand_shorthands(config_name, overrides))


def run_app(script, args, cwd, timeout=300, check=True):
    """Run ``python train.py|eval.py args`` as a user would; returns the CompletedProcess."""
    import subprocess
    proc = subprocess.run([sys.executable, str(ROOT / script), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                             f"{proc.stderr[-5000:]}")
    return proc


def train_in_process(overrides, run_dir):
    """What ``python train.py <overrides>`` does after parsing (the checks, then the training loop),
    in this process: the seconds of a fresh interpreter saved where the command line is not the
    subject (the apps are run as commands by tests/test_apps.py)."""
    from video_sparse.apps.checks import check_train
    from video_sparse.engine import trainer

    cfg = compose("train", overrides)
    check_train(cfg)
    return trainer.train(cfg, run_dir)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, motion_cache):
    """A one-epoch sifa_small run on a tiny motion set (10 validation videos), shared by the tests
    of what eval.py does with a checkpoint."""
    run_dir = tmp_path_factory.mktemp("trained_run")
    train_in_process(tiny(motion_cache) + ["model=sifa_small"], run_dir)
    return run_dir


@pytest.fixture(scope="session")
def uninterrupted_run(tmp_path_factory, motion_cache):
    """``(args, run_dir)``: a 30-step c2d_small run whose every source of randomness is on (dropout,
    mixup, two DataLoader workers), run straight through once; the runs killed or preempted with
    the same ``args`` must resume to exactly its weights."""
    args = tiny(motion_cache) + ["model=c2d_small", "model.dropout=0.3", "trainer.mixup=0.8", "trainer.epochs=3",
                                 "data.train_size=40", "trainer.num_workers=2"]
    cwd = tmp_path_factory.mktemp("uninterrupted")
    run_app("train.py", args + [f"hydra.run.dir={cwd / 'run'}"], cwd)
    return args, cwd / "run"
