"""Registry, the C2D family, the multi-head contract and weight loading."""
import pytest
import torch

import video_sparse
from video_sparse.models import ModelError
from video_sparse.models.weights import WeightsError
from video_sparse.engine.metrics import multi_head_loss, multi_head_probs


def test_registry_lists_and_builds():
    assert "c2d_small" in video_sparse.list_models()
    model = video_sparse.build_model("c2d_small", num_classes=7)
    out = model(torch.randn(2, 3, 4, 32, 48))
    assert out.shape == (2, 7)


def test_unknown_model_names_close_matches():
    with pytest.raises(ModelError, match="Did you mean c2d_small.*Fix: model="):
        video_sparse.build_model("c2d_smal", num_classes=3)
    with pytest.raises(ModelError, match="model.temporal_stage is not an option of sifa_biformer_nano. Did you mean "
                                         "temporal_stages"):
        video_sparse.build_model("sifa_biformer_nano", num_classes=3, temporal_stage=[3])
    with pytest.raises(ModelError, match="model.head must be one of pool, spatial, got spatail. Did you mean spatial"):
        video_sparse.build_model("c2d_small", num_classes=3, head="spatail")
    with pytest.raises(ModelError, match="model=c2d_small cannot be built with these options: unknown block codes"):
        video_sparse.build_model("c2d_small", num_classes=3, patterns=["P", "X", "P", "P"])


def test_c2d_small_is_blind_to_frame_order():
    """Per-frame 2D processing + average over time: any permutation of frames gives the same logits."""
    torch.manual_seed(0)
    model = video_sparse.build_model("c2d_small", num_classes=10).eval()
    for m in model.modules():  # make the residual branches non-trivial (they start at zero)
        if isinstance(m, torch.nn.BatchNorm3d):
            torch.nn.init.uniform_(m.weight, 0.5, 1.5)
    x = torch.randn(2, 3, 6, 32, 32)
    with torch.no_grad():
        y = model(x)
        torch.testing.assert_close(model(x.flip(2)), y, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(model(x[:, :, torch.randperm(6)]), y, rtol=1e-5, atol=1e-5)


def test_any_clip_length_and_size_work():
    model = video_sparse.build_model("c2d_small", num_classes=5).eval()
    for t, h, w in [(1, 17, 23), (3, 64, 64), (32, 40, 30)]:
        assert model(torch.randn(1, 3, t, h, w)).shape == (1, 5)


def test_bad_input_shape_is_reported():
    model = video_sparse.build_model("c2d_small", num_classes=5)
    with pytest.raises(ValueError, match=r"\(N, 3, T, H, W\)"):
        model(torch.randn(1, 3, 32, 32))


def test_multi_head_loss_sums_and_probs_average():
    torch.manual_seed(0)
    a, b = torch.randn(4, 6), torch.randn(4, 6)
    y = torch.tensor([0, 1, 2, 3])
    ce = torch.nn.functional.cross_entropy
    torch.testing.assert_close(multi_head_loss((a, b), y), ce(a, y) + ce(b, y))
    torch.testing.assert_close(multi_head_loss(a, y), ce(a, y))
    torch.testing.assert_close(multi_head_probs((a, b)), (a.softmax(-1) + b.softmax(-1)) / 2)
    torch.testing.assert_close(multi_head_probs(a), a.softmax(-1))


def test_load_pretrained_reports_and_skips_mismatched(tmp_path, capsys):
    src = video_sparse.build_model("c2d_small", num_classes=10)
    dst = video_sparse.build_model("c2d_small", num_classes=4)
    state = {"model": {f"module.{k}": v for k, v in src.state_dict().items()}, "epoch": 3}
    state["model"]["module.extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "ckpt.pt")
    report = video_sparse.load_pretrained(dst, tmp_path / "ckpt.pt")
    assert report.unexpected == ["extra.weight"]
    assert sorted(m.split(":")[0] for m in report.mismatched) == ["head.fc.bias", "head.fc.weight"]
    assert report.missing == []
    torch.testing.assert_close(dst.conv1.weight, src.conv1.weight)
    assert "unexpected 1" in capsys.readouterr().out
    with pytest.raises(RuntimeError, match="strict"):
        video_sparse.load_pretrained(dst, tmp_path / "ckpt.pt", strict=True)
    with pytest.raises(WeightsError, match="model.pretrained: weights not found: .*Fix"):
        video_sparse.load_pretrained(dst, tmp_path / "nope.pt")


def test_build_model_with_pretrained_path(tmp_path):
    src = video_sparse.build_model("c2d_small", num_classes=3)
    torch.save(src.state_dict(), tmp_path / "w.pt")
    dst = video_sparse.build_model("c2d_small", num_classes=3, pretrained=str(tmp_path / "w.pt"))
    for k, v in src.state_dict().items():
        torch.testing.assert_close(dst.state_dict()[k], v)
