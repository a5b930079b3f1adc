"""pytorchvideo's zoo architectures as registered models: pytorchvideo's parameters and names, its
outputs at the zoo's clips, zoo checkpoints through load_pretrained, any clip, and no
``pytorchvideo.transforms``."""
import json
import subprocess
import sys
import urllib.error

import pytest
import torch
import torch.nn as nn

import video_sparse
from video_sparse.models.ptv import ClippedAvgPool3d, slowfast_pathways
from video_sparse.models.weights import WeightsError, load_pretrained

from helpers import ROOT, compose, run_app, train_in_process

hub = pytest.importorskip("pytorchvideo.models.hub")

# Our name -> pytorchvideo's hub builder, the zoo clip (T, side), trainable parameters at 400 classes.
ZOO = {
    "x3d_xs": ("x3d_xs", (4, 160), 3_794_274),
    "x3d_s": ("x3d_s", (13, 160), 3_794_274),
    "x3d_m": ("x3d_m", (16, 224), 3_794_274),
    "slow_r50": ("slow_r50", (8, 224), 32_454_096),
    "slowfast_r50": ("slowfast_r50", (32, 224), 34_566_488),
    "ptv_c2d_r50": ("c2d_r50", (8, 224), 24_327_632),
    "i3d_r50": ("i3d_r50", (8, 224), 28_043_472),
    "r2plus1d_r50": ("r2plus1d_r50", (16, 224), 28_107_600),
    "csn_r101": ("csn_r101", (32, 224), 22_213_776),
    "mvit_base_16x4": ("mvit_base_16x4", (16, 224), 36_610_672),
}
NANOS = ["x3d_nano", "slow_nano", "slowfast_nano", "ptv_c2d_nano", "i3d_nano", "r2plus1d_nano", "csn_nano", "mvit_nano"]


def trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def randomize_norm_statistics(model: nn.Module) -> None:
    """Non-trivial BatchNorm statistics, so that eval-mode outputs depend on them."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) * 0.2 - 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


def pytorchvideo_output(name: str, theirs: nn.Module, clip: torch.Tensor) -> torch.Tensor:
    """The zoo model's output as pytorchvideo computes it, before its final softmax (X3D, R(2+1)D)."""
    head = theirs.blocks[-1] if hasattr(theirs, "blocks") and not name.startswith("mvit") else None
    if head is not None and isinstance(getattr(head, "activation", None), nn.Softmax):
        head.activation = None
    return theirs(slowfast_pathways(clip, 4) if name == "slowfast_r50" else clip)


@pytest.mark.parametrize("name", list(ZOO))
def test_parameters_and_names_equal_pytorchvideos_builders(name):
    hub_name, _, count = ZOO[name]
    # the meta device skips the initialisation (MViT's builder reads a tensor's value: a real one)
    with torch.device("cpu" if name.startswith("mvit") else "meta"):
        ours, theirs = video_sparse.build_model(name, 400), getattr(hub, hub_name)()
    assert trainable(ours) == trainable(theirs) == count
    assert {k: v.shape for k, v in ours.state_dict().items()} == \
        {"net." + k: v.shape for k, v in theirs.state_dict().items()}


@pytest.mark.parametrize("name", list(ZOO))
def test_zoo_checkpoint_gives_pytorchvideos_logits(name):
    hub_name, (t, side), _ = ZOO[name]
    torch.manual_seed(0)
    theirs = getattr(hub, hub_name)().eval()
    randomize_norm_statistics(theirs)
    ours = video_sparse.build_model(name, 400).eval()
    report = load_pretrained(ours, {"model_state": theirs.state_dict()}, strict=True)
    assert not report.dropped
    clip = torch.randn(1, 3, t, side, side)
    with torch.no_grad():
        expected = pytorchvideo_output(name, theirs, clip)
        torch.testing.assert_close(ours(clip), expected, rtol=1e-5, atol=1e-6)


def test_zoo_checkpoint_file_with_another_class_count_keeps_the_backbone(tmp_path):
    theirs = hub.x3d_xs()
    path = tmp_path / "X3D_XS.pyth"
    torch.save({"model_state": theirs.state_dict(), "epoch": 300}, path)
    ours = video_sparse.build_model("x3d_xs", 10)
    report = load_pretrained(ours, str(path))
    assert report.dropped == ["blocks.5.proj.bias", "blocks.5.proj.weight"]
    assert not report.missing[2:] and set(report.missing) == {"net.blocks.5.proj.weight", "net.blocks.5.proj.bias"}
    assert not report.unexpected and not report.mismatched
    torch.testing.assert_close(ours.net.blocks[0].conv.conv_t.weight, theirs.blocks[0].conv.conv_t.weight)


def test_zoo_checkpoint_by_hub_name_downloads_or_names_the_url(monkeypatch):
    theirs = hub.x3d_xs()
    urls = []

    def offline(url, **kwargs):
        urls.append(url)
        raise urllib.error.URLError("no network")
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(WeightsError, match=r"download https://dl\.fbaipublicfiles\.com/pytorchvideo/model_zoo/"
                                           r"kinetics/X3D_XS\.pyth where there is network"):
        load_pretrained(video_sparse.build_model("x3d_xs", 400), "pytorchvideo:x3d_xs")
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", lambda url, **kw: {"model_state": theirs.state_dict()})
    report = load_pretrained(video_sparse.build_model("x3d_xs", 400), "pytorchvideo:x3d_xs", strict=True)
    assert len(report.loaded) == len(theirs.state_dict())
    with pytest.raises(WeightsError, match="unknown pytorchvideo checkpoint 'x3d_xxl'.*slowfast_r50"):
        load_pretrained(video_sparse.build_model("x3d_xs", 400), "pytorchvideo:x3d_xxl")


@pytest.mark.parametrize("name", NANOS)
def test_nano_baselines_train_at_other_clips(name):
    model = video_sparse.build_model(name, 10)
    clips = [(4, 64, 64), (8, 48, 80)] if not name.startswith("mvit") else [(4, 64, 64)]
    for t, h, w in clips:
        x = torch.randn(2, 3, t, h, w)
        out = model(x)
        assert out.shape == (2, 10)
        out.sum().backward()
        assert all(p.grad is not None for p in model.parameters() if p.requires_grad), name
        model.zero_grad()


def test_clip_errors_name_the_fix():
    with pytest.raises(ValueError, match=r"multiple of alpha=2 frames.*Fix: data.frames=4"):
        video_sparse.build_model("slowfast_nano", 10)(torch.randn(1, 3, 5, 64, 64))
    with pytest.raises(ValueError, match=r"takes 4x64x64 clips.*Fix: data.frames=4 data.size=64"):
        video_sparse.build_model("mvit_nano", 10)(torch.randn(1, 3, 8, 64, 64))
    with pytest.raises(ValueError, match=r"at least 2 frames"):
        video_sparse.build_model("ptv_c2d_nano", 10)(torch.randn(1, 3, 1, 64, 64))
    with pytest.raises(ValueError, match=r"\(N, 3, T, H, W\)"):
        video_sparse.build_model("x3d_nano", 10)(torch.randn(3, 4, 64, 64))
    with pytest.raises(video_sparse.models.registry.ModelError, match="leaves the fast pathway without channels"):
        video_sparse.build_model("slowfast_nano", 10, width=4)
    with pytest.raises(video_sparse.models.registry.ModelError, match=r"stages \[1, 5\] must be block indices below"):
        video_sparse.build_model("mvit_nano", 10, stages=[1, 5])


def test_head_pool_spans_the_frames_and_zoo_windows_in_space():
    pool = ClippedAvgPool3d((4, 7, 7))
    x = torch.randn(2, 3, 4, 9, 8, dtype=torch.float64)  # the zoo's frames, a larger crop
    torch.testing.assert_close(pool(x), nn.AvgPool3d((4, 7, 7), stride=1)(x))
    other = torch.randn(2, 3, 6, 3, 9, dtype=torch.float64)  # more frames, a smaller map in H
    expected = torch.stack([other[:, :, :, :, i:i + 7].mean(dim=(2, 3, 4)) for i in range(3)], -1)
    torch.testing.assert_close(pool(other), expected.view(2, 3, 1, 1, 3))


def test_slowfast_pathways_are_evenly_spaced_frames():
    x = torch.arange(32.0).view(1, 1, 32, 1, 1)
    slow, fast = slowfast_pathways(x, 4)
    assert slow.flatten().tolist() == [0, 4, 8, 13, 17, 22, 26, 31] and torch.equal(fast, x)
    # pytorchvideo's PackPathway indices (torch.linspace(...).long()) at every clip length
    for alpha in (2, 4, 8):
        for T in range(alpha, 1025):
            x = torch.arange(float(T)).view(1, 1, T, 1, 1)
            expected = torch.linspace(0, T - 1, T // alpha).long()
            assert torch.equal(slowfast_pathways(x, alpha)[0].flatten().long(), expected), (alpha, T)


def test_nothing_imports_pytorchvideo_transforms():
    code = ("import sys, torch, video_sparse, video_sparse.models.weights as w\n"
            "from video_sparse.models.registry import variants\n"
            "[video_sparse.build_model(n, 10) for n in variants() if n.endswith('_nano')]\n"
            "w.pytorchvideo_zoo_urls()\n"
            "print([m for m in sys.modules if m.startswith('pytorchvideo.transforms')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
    for path in (ROOT / "video_sparse").rglob("*.py"):
        assert "pytorchvideo.transforms" not in path.read_text().replace("``pytorchvideo.transforms``", ""), path


@pytest.mark.parametrize("name", ["slowfast_nano", "mvit_nano"])  # x3d_nano: test_eval_app_takes_a_zoo_file
def test_train_app_runs_the_baselines(name, tiny_overrides, tmp_path):
    extra = ["model.size=32"] if name == "mvit_nano" else []
    train_in_process([*tiny_overrides, f"model={name}", *extra], tmp_path / "run")
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["num_videos"] == 10


def test_c2d_baseline_is_blind_to_reversal_and_slow_is_not():
    torch.manual_seed(0)
    clip = torch.randn(2, 3, 4, 64, 64, dtype=torch.float64)
    gaps = {}
    for name in ("ptv_c2d_nano", "slow_nano"):
        model = video_sparse.build_model(name, 10).double().eval()
        for m in model.modules():  # pytorchvideo zeroes each residual branch's last BN scale: open them
            if isinstance(m, nn.BatchNorm3d):
                nn.init.uniform_(m.weight, 0.5, 1.5)
        with torch.no_grad():
            gaps[name] = (model(clip) - model(clip.flip(2))).abs().max().item()
    assert gaps["ptv_c2d_nano"] < 1e-12 < 1e-6 < gaps["slow_nano"], gaps


def test_the_config_check_takes_a_pytorchvideo_hub_name():
    from video_sparse.apps.checks import check_model
    from video_sparse.options import ConfigError

    check_model(compose("train", ["model=slowfast_nano", "model.pretrained=pytorchvideo:slowfast_r50"]))
    with pytest.raises(ConfigError, match=r"file not found: /nope\.pyth.*pytorchvideo:slowfast_r50"):
        check_model(compose("train", ["model=slowfast_nano", "model.pretrained=/nope.pyth"]))


@pytest.mark.slow  # 13 s; the zoo logits tests and the weights-file tests of eval run by default
def test_eval_app_takes_a_zoo_file_with_model_and_data(tiny_overrides, tmp_path):
    """A zoo file (pytorchvideo's names under ``model_state``) of a trained run's weights evaluates
    through model=<name> data=<dataset> exactly as the run's own checkpoint; without them, or with
    a model they do not fit, one line says what to add."""
    train_in_process([*tiny_overrides, "model=x3d_nano"], tmp_path / "run")
    ckpt = torch.load(tmp_path / "run/checkpoints/best.pt", weights_only=True)
    zoo_state = {k.removeprefix("net."): v for k, v in ckpt["model"].items()}
    torch.save({"model_state": zoo_state, "epoch": 1, "cfg": "..."}, tmp_path / "zoo.pyth")
    data = [o for o in tiny_overrides if o.startswith("data.")]
    common = ["test.clips=2", "logger.mode=disabled", "trainer.num_workers=0"]
    run_app("eval.py", [f"checkpoint={tmp_path}/run/checkpoints/best.pt", *common, f"hydra.run.dir={tmp_path}/own"],
            tmp_path)
    proc = run_app("eval.py", [f"checkpoint={tmp_path}/zoo.pyth", "model=x3d_nano", "data=motion", *data, *common,
                               f"hydra.run.dir={tmp_path}/zoo"], tmp_path)
    assert "(file weights)" in proc.stdout
    own, zoo = (json.loads((tmp_path / run / "metrics.json").read_text()) for run in ("own", "zoo"))
    assert (own.pop("weights"), zoo.pop("weights")) == ("model", "file") and own == zoo
    assert (tmp_path / "own/predictions.csv").read_text() == (tmp_path / "zoo/predictions.csv").read_text()

    # the mistakes, in this process (the app prints a UserError as its one line: tests/test_config.py)
    from video_sparse.apps.checks import check_eval
    from video_sparse.engine.loading import load_for_inference
    from video_sparse.errors import UserError
    for args, message in [
            ([f"checkpoint={tmp_path}/zoo.pyth"], "not a train.py checkpoint, so it names neither model nor classes"),
            ([f"checkpoint={tmp_path}/zoo.pyth", "model=x3d_nano"], "Fix: add model=<name> data=<dataset>"),
            ([f"checkpoint={tmp_path}/zoo.pyth", "model=slow_nano", "data=motion", *data],
             "does not fit model=slow_nano with 10 classes (the motion benchmark)"),
            ([f"checkpoint={tmp_path}/run/checkpoints/best.pt", "model=x3d_nano"],
             "is a training checkpoint and brings its model (x3d_nano). Fix: leave model unset"),
            (["checkpoint=pytorchvideo:x3d_s"], "needs the model it is the weights of")]:
        cfg = compose("eval", [*args, *common])
        with pytest.raises(UserError) as info:
            check_eval(cfg)
            load_for_inference(cfg.checkpoint, model=cfg.model, data=cfg.data, weights=cfg.weights)
        assert message in str(info.value), (args, str(info.value))


# The zoo's test protocols (PySlowFast's configs/Kinetics/pytorchvideo/*.yaml: NUM_FRAMES x SAMPLING_RATE,
# TEST_CROP_SIZE, the short side = the crop for 3 crops and TRAIN_JITTER_SCALES[0] for 1, NUM_SPATIAL_CROPS;
# 10 clips, MViT's 5 from its model zoo): preset -> model, frames, interval, short side, crop, clips, crops.
ZOO_PROTOCOLS = {
    "ptv_x3d_xs_k400": ("x3d_xs", 4, 12, 182, 182, 10, 3),
    "ptv_x3d_s_k400": ("x3d_s", 13, 6, 182, 182, 10, 3),
    "ptv_x3d_m_k400": ("x3d_m", 16, 5, 256, 256, 10, 3),
    "ptv_slow_r50_k400": ("slow_r50", 8, 8, 256, 256, 10, 3),
    "ptv_slowfast_r50_k400": ("slowfast_r50", 32, 2, 256, 256, 10, 3),
    "ptv_c2d_r50_k400": ("ptv_c2d_r50", 8, 8, 256, 256, 10, 3),
    "ptv_i3d_r50_k400": ("i3d_r50", 8, 8, 256, 256, 10, 3),
    "ptv_r2plus1d_r50_k400": ("r2plus1d_r50", 16, 4, 256, 256, 10, 3),
    "ptv_csn_r101_k400": ("csn_r101", 32, 2, 256, 256, 10, 3),
    "ptv_mvit_base_16x4_k400": ("mvit_base_16x4", 16, 4, 256, 224, 5, 1),
}


def test_every_zoo_preset_is_listed():
    assert sorted(p.stem for p in (ROOT / "conf/experiment").glob("ptv_*_k400.yaml")) == sorted(ZOO_PROTOCOLS)


@pytest.mark.parametrize("preset", list(ZOO_PROTOCOLS))
def test_zoo_presets_give_the_zoo_protocol_and_the_model_takes_its_clip(preset):
    from video_sparse.apps.checks import check_model

    cfg = compose("eval", [f"+experiment={preset}", "checkpoint=/zoo.pyth"])
    d = cfg.data
    assert (cfg.model.name, d.frames, d.interval, d.short_side, d.size, cfg.test.clips, cfg.test.crops) == \
        ZOO_PROTOCOLS[preset]
    assert d.name == "kinetics400" and list(d.mean) == [0.45] * 3 and list(d.std) == [0.225] * 3
    assert compose("train", [f"+experiment={preset}"]).model.name == cfg.model.name
    check_model(cfg)
    if cfg.model.name.startswith("mvit"):  # builds with .item(): no meta device; the clip is fixed
        assert (cfg.model.frames, cfg.model.size) == (d.frames, d.size)
        return
    with torch.device("meta"):
        model = video_sparse.build_model(cfg.model.name, 400)
        assert model(torch.empty(1, 3, d.frames, d.size, d.size)).shape == (1, 400)


def test_kinetics_classnames_json_gives_the_zoo_class_order(tmp_path):
    """PySlowFast's kinetics_classnames.json: quoted names -> ids, not in name order."""
    from video_sparse.data.annotations import read_class_names

    path = tmp_path / "kinetics_classnames.json"
    path.write_text(json.dumps({'"zumba"': 0, '"abseiling"': 2, "air drumming": 1}))
    assert read_class_names(path) == ["zumba", "air drumming", "abseiling"]


def test_train_refuses_evals_data_run():
    from video_sparse.apps.checks import check_train
    from video_sparse.options import ConfigError

    with pytest.raises(ConfigError, match="data=run is eval.py's"):
        check_train(compose("train", ["data=run"]))
