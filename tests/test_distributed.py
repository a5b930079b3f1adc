"""DDP on CPU: two gloo processes under torchrun train one run (one set of files) and evaluate
every video exactly once, matching a single-process evaluation of the same checkpoint (metrics,
predictions and extracted features)."""
import csv
import json
import subprocess
import sys

import pytest

from helpers import ROOT, compose, run_app


def torchrun(script, args, cwd, nproc=2, timeout=400):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           str(ROOT / script), *args]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"torchrun {script} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


def _rows(path):
    return list(csv.DictReader(open(path)))


def test_two_process_training_and_evaluation_match_one_process(tmp_path, tiny_overrides):
    # 21 training videos: 10 per rank, batches of 2 x accumulate 2 -> 2 steps per epoch, one left over;
    # 11 validation videos: shards of 6 and 5, nothing padded.
    args = tiny_overrides + ["data.train_size=21", "data.val_size=11", "trainer.batch_size=2", "trainer.accumulate=2",
                             "trainer.epochs=2", "trainer.num_workers=1", "model=sifa_small"]
    proc = torchrun("train.py", args, tmp_path)
    runs = list((tmp_path / "outputs").glob("*/*"))
    assert len(runs) == 1, f"ranks wrote to {runs}: one run directory expected"
    run = runs[0]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.pt", "last.pt"]
    log = (run / "train.log").read_text()
    assert log.count("epoch 2/2") == 1 and "2 process(es)" in log  # rank 0 alone writes the log
    assert proc.stdout.count("run directory") <= 2

    import torch
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert state["world_size"] == 2 and len(state["rng"]) == 2 and state["step"] == 4
    assert not torch.equal(state["rng"][0]["torch"], state["rng"][1]["torch"])  # own dropout stream per rank

    final = json.loads((run / "metrics.json").read_text())
    assert final["num_videos"] == 11 and final["num_failed"] == 0
    assert len(_rows(run / "predictions.csv")) == 11

    ckpt = run / "checkpoints" / "best.pt"
    common = [f"checkpoint={ckpt}", "trainer.device=cpu", "trainer.num_workers=0", "logger.mode=disabled",
              "trainer.batch_size=3"]
    run_app("eval.py", common + [f"hydra.run.dir={tmp_path / 'single'}"], tmp_path)
    torchrun("eval.py", common + [f"hydra.run.dir={tmp_path / 'ddp'}"], tmp_path)
    single = json.loads((tmp_path / "single" / "metrics.json").read_text())
    ddp = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    for key in ("top1", "top5", "mean_class_acc", "pair_acc", "num_videos", "num_failed"):
        assert single[key] == ddp[key] == final[key], key
    a, b = _rows(tmp_path / "single" / "predictions.csv"), _rows(tmp_path / "ddp" / "predictions.csv")
    assert [r["path"] for r in a] == [r["path"] for r in b] and len({r["path"] for r in b}) == 11
    for ra, rb in zip(a, b):
        assert ra["pred"] == rb["pred"]
        assert float(ra["top1_prob"]) == pytest.approx(float(rb["top1_prob"]), abs=1e-5)

    # features=true: each rank writes its shard, rank 0 gathers one file equal to a single process's
    from video_sparse.engine.evaluator import evaluate_checkpoint
    (tmp_path / "f1").mkdir()
    evaluate_checkpoint(compose("eval", common + ["features=true", "test.clips=2"]), tmp_path / "f1")  # in process
    torchrun("eval.py", common + ["features=true", "test.clips=2", f"hydra.run.dir={tmp_path / 'f2'}"], tmp_path)
    import numpy as np
    one, two = np.load(tmp_path / "f1" / "features.npy"), np.load(tmp_path / "f2" / "features.npy")
    assert one.shape[:2] == (11, 3)
    np.testing.assert_allclose(two, one, rtol=1e-5, atol=1e-6)
    assert (tmp_path / "f2" / "features.csv").read_text() == (tmp_path / "f1" / "features.csv").read_text()
    assert json.loads((tmp_path / "f2" / "features.json").read_text())["processes"] == 2
    assert not list((tmp_path / "f2").glob("features.part*"))


@pytest.mark.slow  # 12 s; SLURM-style ranks without torchrun run by default in test_fault_tolerance.py
def test_submitit_tasks_form_one_ddp_run(tmp_path, tiny_overrides):
    """hydra/launcher=submitit_slurm with tasks_per_node=N starts N tasks per node; they join one
    process group from submitit's job environment. submitit_local runs that same path here."""
    sweep = tmp_path / "sweep"
    run_app("train.py", ["-m", "hydra/launcher=submitit_local", "hydra.launcher.tasks_per_node=2",
                         "hydra.launcher.cpus_per_task=1", "hydra.launcher.timeout_min=5", f"hydra.sweep.dir={sweep}",
                         *tiny_overrides, "data.val_size=11", "trainer.batch_size=2"], tmp_path)
    import torch
    state = torch.load(sweep / "0" / "checkpoints" / "last.pt", weights_only=True)
    assert state["world_size"] == 2
    log = (sweep / "0" / "train.log").read_text()
    assert log.count("epoch 1/1") == 1 and "2 process(es)" in log
    assert json.loads((sweep / "0" / "metrics.json").read_text())["num_videos"] == 11


def test_slurm_launcher_config_composes(tmp_path):
    from helpers import compose_with_hydra
    cfg = compose_with_hydra("train", ["hydra/launcher=submitit_slurm", "hydra.launcher.nodes=2",
                                       "hydra.launcher.gpus_per_node=8", "hydra.launcher.tasks_per_node=8",
                                       "hydra.launcher.timeout_min=2880", "hydra.launcher.partition=gpu"])
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.nodes, launcher.gpus_per_node, launcher.tasks_per_node, launcher.timeout_min) == (2, 8, 8, 2880)
