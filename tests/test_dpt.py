"""DPT: DePatch against its patch-by-patch float64 reference (odd sizes, boxes clamped at the map's
edges, stride 1) and the official formulation; the ops on their own (point order, sampling
convention); the whole image model against the official forward; any size; official names in and
out of the state_dict."""
import pytest
import torch

from mixer_reference import depatch_reference
from official_mixers import official_depatch, official_dpt_logits, outputs_and_grads
from video_sparse.layers.depatch import DePatchEmbed
from video_sparse.layers.pvt import SpatialReductionAttention
from video_sparse.models.dpt import DPT
from video_sparse.models.specs import DPTSpec
from video_sparse.ops.deformable_patches import box_points, patch_anchors, sample_points

TOL = dict(rtol=0, atol=1e-10)


def _depatch(in_dim=3, dim=6, grid=3, stride=2, spread=2.0, seed=0):
    """float64 DePatch with a random box predictor: boxes move, grow and clamp at the edges."""
    torch.manual_seed(seed)
    module = DePatchEmbed(in_dim, dim, grid, stride=stride).double()
    torch.nn.init.normal_(module.offset_predictor.weight, std=spread)
    torch.nn.init.normal_(module.box_coder.wh_bias)
    return module


@pytest.mark.parametrize("hw,stride", [((6, 6), 2), ((5, 7), 2), ((1, 1), 2), ((4, 3), 1)])
def test_depatch_matches_its_reference_forward_and_gradients(hw, stride):
    module = _depatch(stride=stride)
    x = torch.randn(2, 3, *hw, dtype=torch.float64)
    with torch.no_grad():
        boxes = module.boxes(x)
    assert hw == (1, 1) or ((boxes == 0) | (boxes == 1)).any(), "the case should clamp some box edges"
    grad_out = torch.randn(2, 6, -(-hw[0] // stride), -(-hw[1] // stride), dtype=torch.float64)
    names = ["output", "input"] + [n for n, p in module.named_parameters()]
    for name, a, b in zip(names, outputs_and_grads(lambda m, t: m(t), module, x, grad_out),
                          outputs_and_grads(depatch_reference, module, x, grad_out)):
        torch.testing.assert_close(a, b, **TOL, msg=f"{hw}: {name}")


def test_depatch_is_the_official_formulation_at_its_build_size():
    module = _depatch(grid=4)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    grad_out = torch.randn(2, 6, 4, 4, dtype=torch.float64)
    for a, b in zip(outputs_and_grads(lambda m, t: m(t), module, x, grad_out),
                    outputs_and_grads(official_depatch, module, x, grad_out)):
        torch.testing.assert_close(a, b, **TOL)
    torch.testing.assert_close(module.box_coder.anchor.double(), patch_anchors(4, 4, torch.float64), **TOL)


def test_depatch_gradcheck():
    module = _depatch(in_dim=2, dim=3, grid=2)
    x = torch.randn(1, 2, 4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(module, (x,))


def test_points_are_x_major_and_an_untrained_depatch_covers_each_2x2_patch():
    boxes = torch.tensor([[[0.1, 0.2, 0.5, 0.8]]], dtype=torch.float64)
    points = box_points(boxes, 3)[0, 0]
    torch.testing.assert_close(points[[1, 3]], torch.tensor([[0.1, 0.5], [0.3, 0.2]], dtype=torch.float64))  # (x_0, y_1), (x_1, y_0)
    module = DePatchEmbed(1, 2, grid=2).double()  # zero predictor: wh bias only, tanh = 1/4
    x = torch.arange(16, dtype=torch.float64).reshape(1, 1, 4, 4)
    locations = box_points(module.boxes(x), 3)[0]
    pixels = locations * 4 - 0.5  # Deformable DETR's pixel convention
    torch.testing.assert_close(pixels[0, :, 0].unique(), torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64))
    torch.testing.assert_close(pixels[3, :, 1].unique(), torch.tensor([2.0, 2.5, 3.0], dtype=torch.float64))
    samples = sample_points(x, locations[None])[0]  # patch 0's top-left point reads pixel (0, 0)
    torch.testing.assert_close(samples[0, [0, 8]], x[0, 0, [0, 1], [0, 1]], rtol=0, atol=1e-6)  # wh bias in fp32


def _small_dpt():
    return DPT(DPTSpec(embed_dims=(8, 16, 16, 24), depths=(1, 2, 1, 1), num_heads=(1, 2, 2, 3), sr_ratios=(4, 2, 2, 1),
                       img_size=32), num_classes=5).double()


def test_dpt_is_the_official_forward_at_its_build_size():
    torch.manual_seed(3)
    model = _small_dpt().eval()
    for i in range(2, 5):
        torch.nn.init.normal_(model.get_submodule(f"patch_embed{i}").offset_predictor.weight)
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), official_dpt_logits(model, x), **TOL)


def test_dpt_state_dict_has_official_names_both_ways():
    model = _small_dpt()
    state = model.state_dict()
    assert "pos_embed4" in state and state["pos_embed4"].shape == (1, 1 + 1, 24)
    assert not any(k.endswith(".pos_embed") for k in state)
    state = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in state.items()}
    model.load_state_dict(state)
    torch.testing.assert_close(model.patch_embed2.pos_embed, state["pos_embed2"])
    assert DPT.internal_name("pos_embed3") == "patch_embed3.pos_embed" and DPT.internal_name("norm.weight") == "norm.weight"


def test_spatial_reduction_pads_maps_not_divisible_by_its_ratio():
    torch.manual_seed(0)
    attn = SpatialReductionAttention(4, 2, sr_ratio=2).double()
    x = torch.randn(1, 3, 5, 4, dtype=torch.float64)
    padded = torch.nn.functional.pad(x.permute(0, 3, 1, 2), (0, 1, 0, 1))
    keys = attn.norm(attn.sr(padded).flatten(2).transpose(1, 2))  # the 2x3 reduced map of the padded 4x6
    q = attn.q(x.reshape(1, 15, 4)).reshape(1, 15, 2, 2).transpose(1, 2)
    k, v = attn.kv(keys).reshape(1, 6, 2, 2, 2).permute(2, 0, 3, 1, 4)
    expected = attn.proj(((q @ k.transpose(-1, -2)) * 2 ** -0.5).softmax(-1).matmul(v).transpose(1, 2).reshape(1, 15, 4))
    torch.testing.assert_close(attn(x), expected.reshape(1, 3, 5, 4), **TOL)


def test_cpe_convolves_the_patch_maps_and_leaves_the_class_token():
    spec = dict(embed_dims=(8, 16, 16, 24), depths=(1, 1, 1, 1), num_heads=(1, 2, 2, 3), sr_ratios=(4, 2, 2, 1),
                img_size=32)
    plain = DPT(DPTSpec(**spec), num_classes=5).double().eval()
    with_cpe = DPT(DPTSpec(**spec, cpe=True), num_classes=5).double().eval()
    report = with_cpe.load_state_dict(plain.state_dict(), strict=False)
    assert all(".pos_embed." in k for k in report.missing_keys) and len(report.missing_keys) == 8
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        for block in (b for i in range(1, 5) for b in with_cpe.get_submodule(f"block{i}")):
            torch.nn.init.zeros_(block.pos_embed.weight)
            torch.nn.init.zeros_(block.pos_embed.bias)
        torch.testing.assert_close(with_cpe(x), plain(x), **TOL)
        torch.nn.init.normal_(with_cpe.block4[0].pos_embed.weight)
        assert not torch.allclose(with_cpe(x), plain(x))
