"""Optimiser groups, schedule, metrics, atomic checkpoints and exact resume."""
import json
import math

import pytest
import torch

from helpers import compose, train_in_process
from video_sparse.engine import checkpoint as ckpt_mod
from video_sparse.engine.checkpoint import load_checkpoint, save_checkpoint
from video_sparse.engine.metrics import classification_metrics, confusion_matrix
from video_sparse.engine.optim import param_groups, warmup_cosine_lr


def test_no_weight_decay_on_norms_and_biases():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Linear(4, 2))
    decay, no_decay = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} == {id(model[0].weight), id(model[2].weight)}
    assert len(no_decay["params"]) == 4  # conv bias, bn weight + bias, linear bias


def test_warmup_cosine_schedule():
    kw = dict(base_lr=0.4, steps_per_epoch=10, total_steps=50, warmup_epochs=1)
    lrs = [warmup_cosine_lr(s, **kw) for s in range(50)]
    assert lrs[0] == pytest.approx(0.04) and lrs[9] == pytest.approx(0.4)
    assert lrs[10] == pytest.approx(0.4)
    assert lrs[30] == pytest.approx(0.2)  # half-way through the cosine
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert warmup_cosine_lr(50, **kw) == pytest.approx(0.0)
    assert warmup_cosine_lr(50, **kw, final_lr_ratio=0.1) == pytest.approx(0.04)
    assert warmup_cosine_lr(0, base_lr=1.0, steps_per_epoch=10, total_steps=10, warmup_epochs=0) == 1.0


def test_metrics_against_hand_counts():
    probs = torch.tensor([[0.7, 0.2, 0.1, 0.0], [0.1, 0.2, 0.3, 0.4], [0.5, 0.4, 0.1, 0.0], [0.0, 0.1, 0.2, 0.7]])
    target = torch.tensor([0, 2, 1, 3])
    m = classification_metrics(probs, target, pairs=[(0, 1), (2, 3)])
    assert m["top1"] == pytest.approx(0.5)          # videos 0 and 3
    assert m["top5"] == pytest.approx(1.0)
    assert m["mean_class_acc"] == pytest.approx((1 + 0 + 0 + 1) / 4)
    assert m["pair_acc"] == pytest.approx(1.0)      # 2 -> 3 and 1 -> 0 stay in their pairs
    cm = confusion_matrix(probs.argmax(1), target, 4)
    assert cm.tolist() == [[1, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 0, 1]]


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint({"epoch": 1, "w": torch.ones(3)}, path)

    def dying_save(obj, f):  # simulate a kill in the middle of writing
        f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt_mod.torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"epoch": 2, "w": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temp file left behind


def test_unreadable_checkpoint_is_named(tmp_path):
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    with pytest.raises(RuntimeError, match="bad.pt"):
        load_checkpoint(tmp_path / "bad.pt")


def _state(run_dir):
    return load_checkpoint(run_dir / "checkpoints" / "last.pt")


def test_resume_continues_exactly(tmp_path, tiny_overrides, monkeypatch):
    """An interrupted run resumed with trainer.resume=auto ends with the same weights as a run
    that was never interrupted."""
    from video_sparse.engine import trainer

    overrides = tiny_overrides + ["trainer.epochs=2", "trainer.batch_size=5", "model.dropout=0.3"]
    train_in_process(overrides, tmp_path / "straight")

    real_save = trainer.save_checkpoint

    def save_then_die(state, path):
        real_save(state, path)
        if path.name == "last.pt":
            raise KeyboardInterrupt("killed after epoch 1")

    monkeypatch.setattr(trainer, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train_in_process(overrides, tmp_path / "resumed")
    assert _state(tmp_path / "resumed")["epoch"] == 1
    monkeypatch.undo()
    train_in_process(overrides + ["trainer.resume=auto"], tmp_path / "resumed")

    a, b = _state(tmp_path / "straight"), _state(tmp_path / "resumed")
    assert a["epoch"] == b["epoch"] == 2
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=0, atol=0)
    assert [h["train_loss"] for h in a["history"]] == [h["train_loss"] for h in b["history"]]
    metrics = json.loads((tmp_path / "resumed" / "metrics.json").read_text())
    assert 0 <= metrics["top1"] <= 1 and metrics["num_videos"] == 10 and not math.isnan(metrics["pair_acc"])


def test_dual_head_model_trains_and_evaluates(tmp_path, tiny_overrides):
    """sifa_small returns (main, dual) logits: the loop sums their losses, evaluation averages
    their softmaxes, and the checkpoint re-evaluates through eval's code path."""
    metrics = train_in_process(tiny_overrides + ["model=sifa_small"], tmp_path)
    assert metrics["num_videos"] == 10 and 0 <= metrics["top1"] <= 1
    state = load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    assert any(k.startswith("head_dual.") for k in state["model"])


def test_eval_excludes_unreadable_videos_and_scores_the_rest_as_if_alone(tmp_path, tiny_overrides):
    """eval.py on N listed videos of which 3 are unreadable: num_videos = N - 3, num_failed = 3, and
    the same accuracies as evaluating the N - 3 good ones alone; test.strict=true refuses the set."""
    from pathlib import Path

    from video_sparse.engine.evaluator import evaluate_checkpoint
    from video_sparse.engine.evaluate import StrictEvaluationError

    train_in_process(tiny_overrides + ["model=c2d_small"], tmp_path / "run")
    ckpt = tmp_path / "run" / "checkpoints" / "best.pt"
    root = Path(load_checkpoint(ckpt)["config"]["data"]["root"])
    good = [line.split() for line in (root / "val.txt").read_text().splitlines()]
    good = [f"{root / path} {label}" for path, label in good]
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "text.mp4").write_text("not a video")
    data = (root / good[0].split()[0]).read_bytes()
    (tmp_path / "truncated.mp4").write_bytes(data[: len(data) // 4])
    bad = [f"{tmp_path / name} 0" for name in ("empty.mp4", "text.mp4", "truncated.mp4")]
    (tmp_path / "good.txt").write_text("\n".join(good) + "\n")
    (tmp_path / "mixed.txt").write_text("\n".join(good[:3] + bad[:2] + good[3:] + bad[2:]) + "\n")

    def evaluate(ann, name, *extra):
        cfg = compose("eval", [f"checkpoint={ckpt}", f"data.val_ann={tmp_path / ann}", "trainer.device=cpu",
                               "trainer.num_workers=0", "logger.mode=disabled", *extra])
        (tmp_path / name).mkdir()
        return evaluate_checkpoint(cfg, tmp_path / name)

    alone, mixed = evaluate("good.txt", "alone"), evaluate("mixed.txt", "mixed")
    n = len(good) + 3
    assert (mixed["num_videos"], mixed["num_failed"]) == (n - 3, 3) and alone["num_failed"] == 0
    for key in ("top1", "top5", "mean_class_acc", "pair_acc"):
        assert mixed[key] == alone[key], key
    assert sorted(Path(p).name for p in mixed["failed_videos"]) == ["empty.mp4", "text.mp4", "truncated.mp4"]
    strict = r"test.strict=true: \d videos cannot be decoded \(first: .*empty.mp4"
    with pytest.raises(StrictEvaluationError, match=strict):
        evaluate("mixed.txt", "strict", "test.strict=true")
