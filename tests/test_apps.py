"""The Hydra apps end to end, run as a user runs them: train -> eval -> predict, config errors,
and a training killed with SIGKILL that resumes."""
import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from helpers import ROOT, run_app


def test_train_eval_predict_end_to_end(tmp_path, tiny_overrides):
    run_dir = tmp_path / "run"
    overrides = [o for o in tiny_overrides if not o.startswith("logger.mode")]
    run_app("train.py", overrides + [f"hydra.run.dir={run_dir}", "logger.mode=offline"], tmp_path)
    for name in ("checkpoints/last.pt", "checkpoints/best.pt", "metrics.json", "predictions.csv",
                 "confusion_matrix.png", "train.log", ".hydra/config.yaml"):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "wandb").is_dir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics) >= {"top1", "top5", "mean_class_acc", "num_videos", "num_failed", "views", "pair_acc"}
    assert metrics["num_videos"] == 10 and metrics["num_failed"] == 0
    assert metrics["views"] == {"clips": 1, "crops": 1}
    assert "epoch 1/1" in (run_dir / "train.log").read_text()

    # eval.py re-evaluates with several views, on the dataset recorded in the checkpoint
    eval_dir = tmp_path / "eval"
    proc = run_app("eval.py", [f"checkpoint={run_dir}/checkpoints/best.pt", "test.clips=2", "test.crops=3",
                               "logger.mode=disabled", "trainer.num_workers=0", f"hydra.run.dir={eval_dir}"], tmp_path)
    assert "top1" in proc.stdout and "2 clips x 3 crops" in proc.stdout
    ev = json.loads((eval_dir / "metrics.json").read_text())
    assert ev["views"] == {"clips": 2, "crops": 3} and ev["num_videos"] == 10
    rows = list(csv.DictReader(open(eval_dir / "predictions.csv")))
    assert len(rows) == 10 and {"path", "label", "pred", "top1_name", "top1_prob"} <= set(rows[0])

    # predict classifies single files and prints the top-k class names
    videos = [r["path"] for r in rows[:2]]
    pred_dir = tmp_path / "pred"
    proc = run_app("eval.py", [f"checkpoint={run_dir}/checkpoints/best.pt", f"predict=[{videos[0]},{videos[1]}]",
                               "predict_topk=3", "logger.mode=disabled", f"hydra.run.dir={pred_dir}"], tmp_path)
    assert videos[0] in proc.stdout and videos[1] in proc.stdout
    assert any(name in proc.stdout for name in ("moving left", "growing", "fading in"))
    rows = list(csv.DictReader(open(pred_dir / "predictions.csv")))
    assert [r["path"] for r in rows] == videos and "top3_name" in rows[0] and "top4_name" not in rows[0]


def test_help_lists_config_groups(tmp_path):
    out = run_app("train.py", ["--help"], tmp_path).stdout
    for group in ("data:", "model:", "optim:", "sched:", "logger:"):
        assert group in out
    assert "motion" in out and "c2d_small" in out and "adamw" in out


@pytest.mark.parametrize("override,message", [
    ("model.name=c2d_smal", "model.name: unknown model 'c2d_smal'. Did you mean c2d_small"),
    ("trainer.epochs=abc", "trainer.epochs must be an integer, got 'abc'. Fix: trainer.epochs=11"),
    ("trainer.epochs=0", "trainer.epochs must be an integer >= 1, got 0"),
    ("trainer.amp=fp8", "trainer.amp must be one of off, bf16, fp16"),
    ("data.short_side=16", "data.short_side (16) must be >= data.size"),
    ("trainer.resume=/nope/last.pt", "trainer.resume: checkpoint not found: /nope/last.pt"),
    ("model.pretrained=/nope/w.pt", "model.pretrained: file not found: /nope/w.pt"),
    ("data.cache_frames=maybe", "data.cache_frames must be true or false, got 'maybe'. Fix: data.cache_frames=true"),
    ("data.sampling=segment", "data.cache_frames=true keeps the decoded frames of uniform sampling"),
])
def test_config_mistakes_fail_fast_with_key_and_fix(tmp_path, tiny_overrides, override, message):
    start = time.time()
    proc = run_app("train.py", tiny_overrides + [override, f"hydra.run.dir={tmp_path}/run"], tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Fix:" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()
    assert time.time() - start < 60


def test_list_dataset_missing_annotation_fails_fast(tmp_path):
    (tmp_path / "classes.txt").write_text("a\nb\n")
    proc = run_app("train.py", ["data=list", f"data.root={tmp_path}", "data.train_ann=train.txt",
                                "data.val_ann=val.txt", "data.labels=classes.txt", "logger.mode=disabled",
                                f"hydra.run.dir={tmp_path}/run"], tmp_path, check=False)
    assert proc.returncode == 2
    assert f"data.train_ann: file not found: {tmp_path}/train.txt" in proc.stderr


def test_list_dataset_unset_key_is_named(tmp_path):
    proc = run_app("train.py", ["data=list", "logger.mode=disabled", f"hydra.run.dir={tmp_path}/run"], tmp_path,
                   check=False)
    assert proc.returncode == 2 and "data.root" in proc.stderr and "Traceback" not in proc.stderr


def test_unknown_model_group_option(tmp_path):
    proc = run_app("train.py", ["model=nonexistent"], tmp_path, check=False)
    assert proc.returncode != 0 and "c2d_small" in proc.stderr


def test_eval_requires_existing_checkpoint(tmp_path):
    proc = run_app("eval.py", [f"checkpoint={tmp_path}/none.pt", f"hydra.run.dir={tmp_path}/e"], tmp_path, check=False)
    assert proc.returncode == 2 and "checkpoint: file not found" in proc.stderr


def test_sigkill_at_a_random_step_then_resume_is_bit_identical(tmp_path, uninterrupted_run):
    """kill -9 at a random moment of a run that checkpoints every step never corrupts last.pt, and
    resume=auto ends with exactly the weights of an uninterrupted run (CPU; dropout, mixup and
    DataLoader workers all draw random numbers; writing checkpoints draws none)."""
    import random

    import torch

    args, straight = uninterrupted_run
    args = args + ["trainer.save_every_steps=1"]

    run_dir = tmp_path / "killed"
    kill_after = random.Random().randint(2, 24)  # of 30 steps; the polling below may lag a few steps behind
    proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args, f"hydra.run.dir={run_dir}"], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    last = run_dir / "checkpoints" / "last.pt"
    deadline, seen_mtime, step = time.time() + 240, None, 0
    while step < kill_after and time.time() < deadline and proc.poll() is None:
        if last.exists() and last.stat().st_mtime_ns != seen_mtime:
            seen_mtime = last.stat().st_mtime_ns
            step = torch.load(last, weights_only=True)["step"]
        time.sleep(0.02)
    time.sleep(random.uniform(0, 0.3))  # anywhere in the next step, the next checkpoint write included
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    state = torch.load(last, weights_only=True)  # loads: not corrupted
    # step 30 is a kill during the final evaluation: resume must still finish it
    assert kill_after <= state["step"] <= 30, f"killed after step {state['step']} (wanted >= {kill_after})"

    run_app("train.py", args + [f"hydra.run.dir={run_dir}", "trainer.resume=auto"], tmp_path)
    a = torch.load(straight / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(last, weights_only=True)
    assert a["step"] == b["step"] == 30
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), f"{k} differs after a kill at step {state['step']}"
    assert [h["train_loss"] for h in a["history"]] == [h["train_loss"] for h in b["history"]]
    assert json.loads((straight / "metrics.json").read_text())["top1"] == \
        json.loads((run_dir / "metrics.json").read_text())["top1"]
    assert "resumed from" in (run_dir / "train.log").read_text()
    assert not [p for p in last.parent.iterdir() if p.suffix == ".tmp"]  # a write cut by the kill is cleaned


def test_truncated_checkpoint_is_one_clear_error(tmp_path):
    (tmp_path / "best.pt").write_bytes(b"PK\x03\x04 truncated")
    proc = run_app("eval.py", [f"checkpoint={tmp_path}/best.pt", f"hydra.run.dir={tmp_path}/e", "logger.mode=disabled"],
                   tmp_path, check=False)
    assert proc.returncode == 2 and "best.pt: not a readable checkpoint" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_multirun_sweep_with_the_basic_launcher(tmp_path, tiny_overrides):
    sweep = tmp_path / "sweep"
    run_app("train.py", ["-m", *tiny_overrides, "model=c2d_small", "trainer.seed=0,1", f"hydra.sweep.dir={sweep}"],
            tmp_path)
    for job in ("0", "1"):
        assert json.loads((sweep / job / "metrics.json").read_text())["num_videos"] == 10
        assert (sweep / job / "checkpoints" / "best.pt").is_file()
