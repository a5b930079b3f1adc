"""Research-scale training options: EMA, layer-wise lr decay, precise BN, checkpoint policy and
refusals, non-finite losses, wandb contents; each against a hand computation or a plain run."""
import json
import logging
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from helpers import train_in_process
from video_sparse.engine.checkpoint import CheckpointError, load_checkpoint
from video_sparse.engine.ema import ModelEma, ema_weights
from video_sparse.engine.optim import param_groups
from video_sparse.engine.precise_bn import recompute_bn_stats
from video_sparse.models import build_model


def test_ema_is_the_exponential_average_of_the_weights():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    ema = ModelEma(model, decay=0.9)
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    for _ in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        model(torch.randn(5, 3))  # moves the BN running statistics and its counter
        ema.update(model)
        for k, v in model.state_dict().items():
            expected[k] = 0.9 * expected[k] + 0.1 * v if v.is_floating_point() else v.clone()
    got = ema.module.state_dict()
    for k in expected:
        torch.testing.assert_close(got[k], expected[k], rtol=1e-6, atol=1e-6)
    assert int(ema.updates) == 3
    assert set(ema_weights({"ema": ema.state_dict()})) == set(model.state_dict())


def test_ema_warmup_ramps_the_decay():
    ema = ModelEma(nn.Linear(2, 2), decay=0.999, warmup_steps=10)
    assert ema.current_decay() == pytest.approx(1 / 10)
    ema.updates.fill_(90)
    assert ema.current_decay() == pytest.approx(91 / 100)
    ema.updates.fill_(10 ** 6)
    assert ema.current_decay() == 0.999


def test_layer_decay_scales_each_stage():
    model = build_model("c2d_small", num_classes=3)
    groups = param_groups(model, 0.05, layer_decay=0.5)
    by_id = {id(p): g for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert by_id[id(named["conv1.weight"])]["lr_scale"] == 0.5 ** 5
    assert by_id[id(named["head.fc.weight"] if "head.fc.weight" in named else
                     next(p for n, p in named.items() if n.startswith("head") and p.ndim == 2))]["lr_scale"] == 1.0
    stage2 = next(n for n in named if n.startswith("layer2") and n.endswith("conv1.weight"))
    assert by_id[id(named[stage2])]["lr_scale"] == 0.5 ** 3
    assert by_id[id(named["bn1.weight"])]["weight_decay"] == 0.0 and by_id[id(named["conv1.weight"])]["weight_decay"] == 0.05
    assert sum(len(g["params"]) for g in groups) == len(named)
    with pytest.raises(ValueError, match="trainer.layer_decay"):
        param_groups(nn.Linear(2, 2), 0.0, layer_decay=0.7)


def test_precise_bn_is_the_average_of_batch_statistics():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 1), nn.BatchNorm2d(3))
    batches = [torch.randn(4, 2, 5, 5) * (i + 1) + i for i in range(4)]
    with torch.no_grad():
        feats = [model[0](b) for b in batches]
    mean = torch.stack([f.mean((0, 2, 3)) for f in feats]).mean(0)
    var = torch.stack([f.var((0, 2, 3), unbiased=True) for f in feats]).mean(0)
    model.eval()
    used = recompute_bn_stats(model, iter(batches + [torch.full((4, 2, 5, 5), 1e6)]), 4, lambda m, b: m(b))
    assert used == 4 and not model.training and model[1].momentum == 0.1
    torch.testing.assert_close(model[1].running_mean, mean, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model[1].running_var, var, rtol=1e-5, atol=1e-5)


def test_options_train_and_checkpoint(tmp_path, tiny_overrides):
    """EMA (evaluated, selects best.pt, weights of the final evaluation), precise BN, layer decay,
    channels-last, bf16 autocast, last-K epoch copies and mid-epoch checkpoints in one run."""
    overrides = tiny_overrides + ["model=c2d_small", "trainer.epochs=3", "trainer.ema_decay=0.5",
                                  "trainer.precise_bn=2", "trainer.layer_decay=0.8", "trainer.channels_last=true",
                                  "trainer.amp=bf16", "trainer.keep_epochs=2", "trainer.save_every_steps=2"]
    final = train_in_process(overrides, tmp_path)
    assert final["weights"] == "ema" and final["num_videos"] == 10
    ckpts = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert ckpts == ["best.pt", "epoch_002.pt", "epoch_003.pt", "last.pt"]
    last = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert last["epoch"] == 3 and last["batch"] == 0 and last["step"] == 15 and int(last["ema"]["updates"]) == 15
    assert all("val_ema_top1" in h for h in last["history"])
    assert load_checkpoint(tmp_path / "checkpoints" / "epoch_002.pt")["epoch"] == 2
    best = load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    assert best["best_top1"] == max(h["val_ema_top1"] for h in last["history"])
    assert (tmp_path / "per_class.csv").is_file()


def _train_one_epoch(tmp_path, tiny_overrides, *extra):
    return train_in_process(tiny_overrides + ["model=c2d_small", *extra], tmp_path)


def test_truncated_or_foreign_checkpoint_is_refused_and_best_kept(tmp_path, tiny_overrides):
    _train_one_epoch(tmp_path, tiny_overrides)
    best = (tmp_path / "checkpoints" / "best.pt").read_bytes()
    last = tmp_path / "checkpoints" / "last.pt"
    data = last.read_bytes()

    # another architecture in the same run directory
    with pytest.raises(CheckpointError, match=r"other settings \(model.name 'c2d_small' -> 'sifa_small'.*Fix"):
        train_in_process(tiny_overrides + ["model=sifa_small"], tmp_path)
    # another class list
    state = load_checkpoint(last)
    state["class_names"] = state["class_names"][:-1]
    torch.save(state, last)
    with pytest.raises(CheckpointError, match=r"trained on \d+ classes.*Fix"):
        train_in_process(tiny_overrides + ["model=c2d_small"], tmp_path)
    # truncated on disk
    last.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="last.pt: not a readable checkpoint.*Fix"):
        train_in_process(tiny_overrides + ["model=c2d_small"], tmp_path)
    assert (tmp_path / "checkpoints" / "best.pt").read_bytes() == best


def test_nonfinite_loss_stops_keeping_the_last_good_checkpoint_or_is_skipped(tmp_path, tiny_overrides, monkeypatch):
    from video_sparse.engine import trainer

    real_loss, calls = trainer.multi_head_loss, {"n": 0}

    def loss_nan_on_call_7(*args, **kwargs):  # epoch 2 (5 steps per epoch), step 2
        calls["n"] += 1
        loss = real_loss(*args, **kwargs)
        return loss * float("nan") if calls["n"] == 7 else loss

    monkeypatch.setattr(trainer, "multi_head_loss", loss_nan_on_call_7)
    with pytest.raises(trainer.NonFiniteLossError, match=r"loss is nan at epoch 2.*last.pt.*nonfinite=skip"):
        _train_one_epoch(tmp_path / "a", tiny_overrides, "trainer.epochs=2")
    assert load_checkpoint(tmp_path / "a" / "checkpoints" / "last.pt")["epoch"] == 1

    calls["n"] = 4  # nan at step 3 of epoch 1: no checkpoint yet, and the message does not name one
    with pytest.raises(trainer.NonFiniteLossError, match=r"loss is nan at epoch 1, step 2; no checkpoint was written "
                                                         r"yet\. Fix: .*then start again"):
        _train_one_epoch(tmp_path / "c", tiny_overrides, "trainer.epochs=2")
    assert not (tmp_path / "c" / "checkpoints" / "last.pt").exists()

    calls["n"] = 0
    _train_one_epoch(tmp_path / "b", tiny_overrides, "trainer.epochs=2", "trainer.nonfinite=skip")
    state = load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")
    assert [h["train_skipped_steps"] for h in state["history"]] == [0, 1] and state["step"] == 10
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_offline_wandb_run_holds_config_history_and_confusion_matrix(tmp_path, tiny_overrides):
    from wandb_offline import offline_run_dirs, read_offline_config, read_offline_history

    overrides = [o for o in tiny_overrides if not o.startswith("logger.mode")]
    _train_one_epoch(tmp_path, overrides, "logger.mode=offline", "logger.log_every=2", "trainer.epochs=2")
    (run,) = offline_run_dirs(tmp_path)
    config = read_offline_config(run)
    assert config["model"]["name"] == "c2d_small" and config["trainer"]["epochs"] == 2
    history = read_offline_history(run)
    steps = [h for h in history if "train/loss" in h]
    assert [h["_step"] for h in steps] == [2, 4, 6, 8, 10]
    assert all({"train/lr", "train/clips_per_s", "train/data_time_s"} <= set(h) for h in steps)
    epochs = [h for h in history if "val_top1" in h]
    assert [h["epoch"] for h in epochs] == [1, 2] and [h["_step"] for h in epochs] == [5, 10]
    assert any("confusion_matrix" in h for h in history) and any("predictions" in h for h in history)
    images = list(run.glob("files/media/images/confusion_matrix*.png"))
    assert len(images) == 1


def test_disabled_logger_writes_no_wandb_files(tmp_path, tiny_overrides):
    _train_one_epoch(tmp_path, tiny_overrides)  # tiny_overrides: logger.mode=disabled
    assert not (tmp_path / "wandb").exists()


@pytest.mark.slow
def test_compiled_training_matches_eager(tmp_path, tiny_overrides):
    """trainer.compile=true (about a minute of compilation on a CPU) trains the same model."""
    eager = _train_one_epoch(tmp_path / "eager", tiny_overrides)
    compiled = _train_one_epoch(tmp_path / "compiled", tiny_overrides, "trainer.compile=true")
    a = load_checkpoint(tmp_path / "eager" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "compiled" / "checkpoints" / "last.pt")
    assert a["history"][0]["train_loss"] == pytest.approx(b["history"][0]["train_loss"], rel=1e-3)  # fused kernels round differently
    for k, v in a["model"].items():  # AdamW turns rounding differences of near-zero gradients into lr-sized
        if v.is_floating_point():      # steps: 5 steps at lr <= 3e-3 move a weight by at most 1.5e-2
            torch.testing.assert_close(b["model"][k], v, rtol=0, atol=1.5e-2)
    assert not any(k.startswith("_orig_mod") for k in b["model"])  # checkpoints hold the plain model's names
    assert eager["num_videos"] == compiled["num_videos"] == 10


def test_fp16_trains_with_a_checkpointed_grad_scaler(tmp_path, tiny_overrides):
    final = _train_one_epoch(tmp_path, tiny_overrides, "trainer.amp=fp16", "trainer.clip_grad=1.0")
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert state["scaler"]["scale"] > 0 and state["scaler"]["_growth_tracker"] >= 0
    assert final["num_videos"] == 10
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_final_evaluation_runs_on_the_test_list_when_given(tmp_path, tiny_overrides, caplog):
    """data.test_ann (labelled) is where train.py's final evaluation runs, and metrics.json says
    which split it is on; without it, the validation list."""

    caplog.set_level(logging.INFO, logger="video_sparse")
    val = train_in_process(tiny_overrides + ["model=c2d_small"], tmp_path / "val")
    assert val["split"] == "val" and val["num_videos"] == 10
    root = load_checkpoint(tmp_path / "val" / "checkpoints" / "best.pt")["config"]["data"]["root"]
    lines = (Path(root) / "val.txt").read_text().splitlines()[:4]
    (tmp_path / "test.txt").write_text("".join(f"{root}/{line}\n" for line in lines))
    test = train_in_process(tiny_overrides + ["model=c2d_small", f"data.test_ann={tmp_path}/test.txt", "test.clips=2"],
                            tmp_path / "test")
    assert test["split"] == "test" and test["num_videos"] == 4 and test["views"] == {"clips": 2, "crops": 1}
    assert json.loads((tmp_path / "test" / "metrics.json").read_text())["split"] == "test"
    assert "final on test (best.pt, epoch 1" in caplog.text and "final on val (best.pt, epoch 1" in caplog.text
