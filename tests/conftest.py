"""The fixtures the tests share; the helpers they import are in helpers.py."""
import pytest

from helpers import run_app, tiny, train_in_process


@pytest.fixture(scope="session")
def motion_cache(tmp_path_factory):
    """One tiny motion set, generated once per test session and shared."""
    return tmp_path_factory.mktemp("motion_cache")


@pytest.fixture
def tiny_overrides(motion_cache):
    return tiny(motion_cache)


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
