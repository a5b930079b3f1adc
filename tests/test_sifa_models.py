"""SIFA blocks and the SIFA-Net family: parameter counts, official keys, any clip length."""
import json
from pathlib import Path

import pytest
import torch

import video_sparse
from video_sparse.layers.bottleneck import GCBottleneck
from video_sparse.layers.sifa import SIFABottleneck
from video_sparse.models.weights import WeightsError
from video_sparse.ops.sifa import motion_map

OFFICIAL = json.loads((Path(__file__).parent / "data" / "sifa_r50.json").read_text())


def _trainable(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("name,count", [("c2d_sifa_r50", 43_040_928), ("c2d_sifa_r101", 63_554_272)])
def test_official_parameter_counts(name, count):
    assert _trainable(video_sparse.build_model(name, num_classes=400)) == count


def test_official_checkpoint_loads_with_no_missing_or_unexpected_keys():
    """A state_dict with every official key and shape loads completely (def_cor dropped)."""
    g = torch.Generator().manual_seed(0)
    state = {e["key"]: (torch.randn(e["shape"], generator=g) if e["shape"] else torch.tensor(3))
             for e in OFFICIAL["entries"]}
    assert len(state) == OFFICIAL["counts"]["n_keys"]
    model = video_sparse.build_model("c2d_sifa_r50", num_classes=400)
    report = video_sparse.load_pretrained(model, {"state_dict": state})
    assert report.missing == [] and report.unexpected == [] and report.mismatched == []
    dropped = sorted(k for k in state if k.endswith("def_cor.weight"))
    assert report.dropped == dropped and len(dropped) == 7  # one per SIFA block: R50 has 7
    assert len(report.loaded) == len(state) - len(dropped)
    torch.testing.assert_close(model.layer2[1].conv_offset.weight, state["layer2.1.conv_offset.weight"])
    torch.testing.assert_close(model.head_dual.fc.weight, state["fc_dual.weight"])
    torch.testing.assert_close(model.conv1.weight, state["conv1.weight"])


def test_block_pattern_matches_official():
    model = video_sparse.build_model("c2d_sifa_r50", num_classes=10)
    kinds = {name: [type(b).__name__[0] for b in getattr(model, name)] for name in
             ("layer1", "layer2", "layer3", "layer4", "layer4_dual")}
    assert kinds["layer1"] == ["C"] * 3
    assert kinds["layer2"] == ["G", "S"] * 2 and kinds["layer3"] == ["G", "S"] * 3
    assert kinds["layer4"] == kinds["layer4_dual"] == ["G", "S", "G"]
    assert model.layer4_dual[0].conv2.stride == (1, 1, 1) and model.layer4[0].conv2.stride == (1, 2, 2)


def test_sifa_net_runs_at_any_clip_length():
    """Built once, evaluated on 4, 16 and 32 frames (stem stride 4: T' = 1, 4, 8)."""
    model = video_sparse.build_model("c2d_sifa_r50", num_classes=5, widths=(8, 8, 8, 8), stem_width=8).eval()
    with torch.no_grad():
        for t in (4, 16, 32):
            main, dual = model(torch.randn(1, 3, t, 64, 64))
            assert main.shape == dual.shape == (1, 5)


def test_offsets_start_at_zero_and_learn():
    model = video_sparse.build_model("sifa_small", num_classes=10)
    blocks = [m for m in model.modules() if isinstance(m, SIFABottleneck)]
    assert blocks and all(b.conv_offset.weight.abs().sum() == 0 for b in blocks)
    for m in model.modules():  # give the residual branches signal, so offsets get gradients
        if isinstance(m, torch.nn.BatchNorm3d):
            torch.nn.init.uniform_(m.weight, 0.5, 1.5)
    main, dual = model(torch.randn(2, 3, 4, 64, 64))
    (main.sum() + dual.sum()).backward()
    assert all(b.conv_offset.weight.grad.abs().sum() > 0 for b in blocks)


def test_sifa_small_sees_frame_order_and_c2d_small_does_not():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 6, 64, 64)
    for name, blind in (("c2d_small", True), ("sifa_small", False)):
        model = video_sparse.build_model(name, num_classes=10).eval()
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                torch.nn.init.uniform_(m.weight, 0.5, 1.5)
        with torch.no_grad():
            a, b = model(x), model(x.flip(2))
        a, b = (a if isinstance(a, tuple) else (a,)), (b if isinstance(b, tuple) else (b,))
        same = all(torch.allclose(u, v, atol=1e-5) for u, v in zip(a, b))
        assert same == blind, name


def test_switching_sifa_off_keeps_parameters():
    on = video_sparse.build_model("c2d_sifa_r50", num_classes=10)
    off = video_sparse.build_model("c2d_sifa_r50", num_classes=10, temporal=False)
    assert list(on.state_dict()) == list(off.state_dict()) and _trainable(on) == _trainable(off)


def test_motion_map_uses_previous_frame():
    f = torch.randn(1, 2, 3, 2, 2)
    m = motion_map(f)
    torch.testing.assert_close(m[:, :, 0], 1.5 * f[:, :, 0])  # P_0 = F_0: sigmoid(0) = 0.5
    torch.testing.assert_close(m[:, :, 2], torch.sigmoid(f[:, :, 2] - f[:, :, 1]) * f[:, :, 2] + f[:, :, 2])


def test_global_context_block():
    block = GCBottleneck(16, 4).eval()  # 16 -> 16 channels: identity shortcut
    torch.nn.init.uniform_(block.bn3.weight)
    x = torch.randn(2, 16, 3, 5, 5)
    u = block.residual(x)
    gc = block.fc2(torch.relu(block.fc1(u.mean((2, 3, 4)))))
    torch.testing.assert_close(block(x), torch.relu(u + x + gc[:, :, None, None, None]))


@pytest.mark.parametrize("stem_init", ["center", "repeat"])
def test_torchvision_resnet_inflation(stem_init):
    import torchvision
    tv = torchvision.models.resnet50(weights=None).state_dict()
    model = video_sparse.build_model("c2d_sifa_r50", num_classes=400)
    report = video_sparse.load_pretrained(model, tv, stem_init=stem_init)
    assert report.dropped == ["fc.bias", "fc.weight"] and report.unexpected == [] and report.mismatched == []
    # Missing: exactly what ImageNet has no counterpart for.
    assert all(k.startswith(("head.", "head_dual.")) or k.split(".")[-2] in ("fc1", "fc2", "conv_offset")
               for k in report.missing), report.missing
    w = model.conv1.weight  # (64, 3, 4, 7, 7)
    if stem_init == "center":
        torch.testing.assert_close(w[:, :, 2], tv["conv1.weight"])
        assert w[:, :, [0, 1, 3]].abs().sum() == 0
    else:
        torch.testing.assert_close(w.sum(2), tv["conv1.weight"])
    torch.testing.assert_close(model.layer4_dual[1].conv2.weight[:, :, 0], tv["layer4.1.conv2.weight"])
    torch.testing.assert_close(model.layer3[5].conv3.weight[:, :, 0], tv["layer3.5.conv3.weight"])
    assert model.layer2[1].conv_offset.weight.abs().sum() == 0  # keeps its zero init


def test_torchvision_weights_by_name(monkeypatch):
    """``torchvision:<weights>`` fetches through torchvision (stubbed here: no network in tests)."""
    import torchvision
    tv = torchvision.models.resnet50(weights=None).state_dict()
    asked = []

    class FakeWeights:
        url = "https://download.pytorch.org/models/resnet50.pth"

        def get_state_dict(self, progress=True, **load_options):
            asked.append(load_options)
            return tv

    def fake_get_weight(name):
        asked.append(name)
        return FakeWeights()

    monkeypatch.setattr(torchvision.models, "get_weight", fake_get_weight)
    model = video_sparse.build_model("c2d_r50", num_classes=10, pretrained="torchvision:ResNet50_Weights.IMAGENET1K_V1")
    assert asked == ["ResNet50_Weights.IMAGENET1K_V1", {"weights_only": True, "check_hash": True}]
    torch.testing.assert_close(model.layer1[0].conv1.weight[:, :, 0], tv["layer1.0.conv1.weight"])

    class Offline(FakeWeights):
        def get_state_dict(self, progress=True, **load_options):
            raise OSError("network unreachable")

    monkeypatch.setattr(torchvision.models, "get_weight", lambda name: Offline())
    with pytest.raises(WeightsError, match="model.pretrained: cannot download .*Fix: .*model.pretrained=/path/to/the"):
        video_sparse.build_model("c2d_r50", num_classes=10, pretrained="torchvision:ResNet50_Weights.IMAGENET1K_V1")


def test_the_older_option_name_sifa_builds_what_temporal_does():
    """Checkpoints written before model.sifa became model.temporal keep building the model they trained."""
    torch.manual_seed(0)
    old = video_sparse.build_model("sifa_small", num_classes=10, sifa=False)
    torch.manual_seed(0)
    new = video_sparse.build_model("sifa_small", num_classes=10, temporal=False)
    x = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        for a, b in zip(old.eval()(x), new.eval()(x)):
            torch.testing.assert_close(a, b)
    assert not any(m.sifa for m in old.modules() if hasattr(m, "sifa") and isinstance(m.sifa, bool))


def test_the_older_zero_based_sifa_stages_build_the_same_stages():
    """model.sifa_stages counted stages from 0; model.temporal_stages counts from 1 like mixer_stages."""
    torch.manual_seed(0)
    old = video_sparse.build_model("sifa_biformer_nano", num_classes=10, sifa_stages=[1, 3])
    torch.manual_seed(0)
    new = video_sparse.build_model("sifa_biformer_nano", num_classes=10, temporal_stages=[2, 4])
    assert list(old.state_dict()) == list(new.state_dict())
    x = torch.randn(1, 3, 4, 64, 64)
    with torch.no_grad():
        for a, b in zip(old.eval()(x), new.eval()(x)):
            torch.testing.assert_close(a, b)
