"""Slide attention: the core against its pixel-by-pixel float64 reference (any size, borders),
gradcheck, the fixed path as pure shifts = the official one-hot convolution, and the
re-parameterised module = the two-path one."""
import pytest
import torch
import torch.nn.functional as F

from mixer_reference import slide_attention_reference
from official_mixers import official_slide, outputs_and_grads
from video_sparse.layers.slide import SlideAttention, one_hot_shift_kernel
from video_sparse.ops.slide_attention import slide_attention

TOL = dict(rtol=0, atol=1e-10)


def two_path(q, k, v, heads, fixed_bias, deform_weight, deform_bias, key_bias):
    """The core on the official two paths' parameters: one-hot + learnable kernels, both biases."""
    one_hot = one_hot_shift_kernel(deform_weight.shape[0] // 9, 3).to(deform_weight)
    return slide_attention(q, k, v, heads, deform_weight + one_hot, fixed_bias + deform_bias, key_bias)


def _inputs(B, C, H, W, heads, seed):
    g = torch.Generator().manual_seed(seed)
    hd = C // heads
    rand = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    return [rand(B, C, H, W), rand(B, C, H, W), rand(B, C, H, W), rand(hd * 9), rand(hd * 9, 1, 3, 3),
            rand(hd * 9), rand(1, heads, 1, 9, 1, 1)]


@pytest.mark.parametrize("B,C,H,W,heads", [(1, 4, 3, 4, 2), (2, 2, 1, 1, 1), (1, 6, 2, 5, 3)])
def test_slide_attention_matches_the_pixel_reference_forward_and_gradients(B, C, H, W, heads):
    inputs = _inputs(B, C, H, W, heads, seed=B + C + H + W)
    grad_out = torch.randn(B, C, H, W, dtype=torch.float64)
    ours = [t.clone().requires_grad_(True) for t in inputs]
    ref = [t.clone().requires_grad_(True) for t in inputs]
    out = two_path(*ours[:3], heads, *ours[3:])
    expected = slide_attention_reference(*ref[:3], heads, *ref[3:])
    torch.testing.assert_close(out, expected, **TOL)
    (out * grad_out).sum().backward()
    (expected * grad_out).sum().backward()
    for name, a, b in zip(("q", "k", "v", "fixed bias", "deform weight", "deform bias", "key bias"), ours, ref):
        torch.testing.assert_close(a.grad, b.grad, **TOL, msg=f"grad {name}")


def test_slide_attention_gradcheck():
    inputs = [t.requires_grad_(True) for t in _inputs(1, 4, 3, 3, 2, seed=0)]
    assert torch.autograd.gradcheck(lambda *t: two_path(*t[:3], 2, *t[3:]), inputs)


def test_the_one_hot_kernel_is_the_shift_to_each_neighbour():
    x = torch.randn(2, 5, 7, 9, dtype=torch.float64)
    conv = F.conv2d(x, one_hot_shift_kernel(5, 3).double(), padding=1, groups=5).view(2, 5, 9, 7, 9)
    padded = F.pad(x, (1, 1, 1, 1))
    for i in range(9):  # neighbour i at offset (i // 3 - 1, i % 3 - 1), zero outside the map
        torch.testing.assert_close(conv[:, :, i], padded[:, :, i // 3:i // 3 + 7, i % 3:i % 3 + 9], rtol=0, atol=0)


def test_reparameterised_module_equals_the_two_path_module():
    torch.manual_seed(0)
    module = SlideAttention(32, 4).eval()
    torch.nn.init.normal_(module.dep_conv.bias)
    torch.nn.init.normal_(module.dep_conv1.bias)
    x = torch.randn(2, 9, 7, 32)
    with torch.no_grad():
        two_path = module(x)
        module.reparameterize()
        merged = module(x)
    torch.testing.assert_close(merged, two_path, rtol=0, atol=1e-5)
    assert not module.dep_conv.weight.requires_grad and module.reparameterized


@pytest.mark.parametrize("hw", [(56, 56), (50, 66), (7, 9), (1, 1)])
def test_module_runs_forward_and_backward_at_any_size(hw):
    module = SlideAttention(48, 3)
    x = torch.randn(2, *hw, 48, requires_grad=True)
    out = module(x)
    out.sum().backward()
    assert out.shape == x.shape and torch.isfinite(x.grad).all() and module.dep_conv.weight.grad is None


@pytest.mark.parametrize("hw", [(8, 8), (5, 7)])
def test_module_equals_the_official_two_convolution_formulation(hw):
    torch.manual_seed(1)
    module = SlideAttention(12, 3).double()
    torch.nn.init.normal_(module.dep_conv.bias)
    x = torch.randn(2, *hw, 12, dtype=torch.float64)
    grad_out = torch.randn(2, *hw, 12, dtype=torch.float64)
    for ours, official in zip(outputs_and_grads(lambda m, t: m(t), module, x, grad_out),
                              outputs_and_grads(official_slide, module, x, grad_out)):
        torch.testing.assert_close(ours, official, **TOL)


def test_reparameterised_backbone_equals_the_two_path_one():
    import video_sparse
    torch.manual_seed(0)
    model = video_sparse.build_model("slide_swin_tiny", num_classes=10).eval()
    x = torch.randn(1, 3, 96, 112)
    with torch.no_grad():
        two_path = model(x)
        model.reparameterize()
        merged = model(x)
    torch.testing.assert_close(merged, two_path, rtol=0, atol=1e-4)


def test_global_stage_bias_is_the_official_table_at_the_official_size_and_resized_elsewhere():
    from video_sparse.layers.swin import RelativePositionAttention
    attn = RelativePositionAttention(8, 2, window=3)
    bias = attn.position_bias(3, 3)
    # pixel (0, 0) vs (2, 1): offset (-2, -1) -> table row (-2 + 2) * 5 + (-1 + 2)
    torch.testing.assert_close(bias[:, 0, 2 * 3 + 1], attn.relative_position_bias_table[1])
    assert attn.position_bias(4, 6).shape == (2, 24, 24)
    out = attn(torch.randn(2, 4, 6, 8))
    assert out.shape == (2, 4, 6, 8)


def test_a_checkpoint_whose_fixed_kernel_is_not_one_hot_is_refused():
    module = SlideAttention(12, 3)
    state = module.state_dict()
    module.load_state_dict(state)  # the one-hot kernel loads
    state["dep_conv.weight"] = torch.randn_like(state["dep_conv.weight"])
    with pytest.raises(ValueError, match="dep_conv.weight is not the one-hot shift kernel"):
        module.load_state_dict(state)


def _merging_reference(x: torch.Tensor, stride: int) -> torch.Tensor:
    """Pixel loop: at each output pixel, the 2x2 block starting at (stride * i, stride * j), zeros
    outside the map, in Swin's order (0,0), (1,0), (0,1), (1,1)."""
    B, C, H, W = x.shape
    Ho, Wo = (H, W) if stride == 1 else (-(-H // 2), -(-W // 2))
    out = torch.zeros(B, Ho, Wo, 4 * C, dtype=x.dtype)
    for i in range(Ho):
        for j in range(Wo):
            for n, (di, dj) in enumerate([(0, 0), (1, 0), (0, 1), (1, 1)]):
                y, z = stride * i + di, stride * j + dj
                if y < H and z < W:
                    out[:, i, j, n * C:(n + 1) * C] = x[:, :, y, z]
    return out


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("hw", [(4, 6), (5, 3), (1, 1)])
def test_patch_merging_gathers_each_2x2_block_at_its_stride(stride, hw):
    from video_sparse.layers.swin import PatchMerging
    merge = PatchMerging(3, stride).double()
    x = torch.randn(2, 3, *hw, dtype=torch.float64)
    expected = merge.reduction(merge.norm(_merging_reference(x, stride))).permute(0, 3, 1, 2)
    torch.testing.assert_close(merge(x), expected, **TOL)


def test_slide_swin_with_stride_one_mergings_keeps_the_maps_and_the_parameters():
    from video_sparse.models.slide_swin import SlideSwin
    from video_sparse.models.specs import SlideSwinSpec
    spec = dict(embed_dim=8, depths=(1, 1, 1, 1), num_heads=(1, 2, 2, 4), img_size=64)
    official, nano = SlideSwin(SlideSwinSpec(**spec)), SlideSwin(SlideSwinSpec(**spec, merge_strides=(1, 1, 2)))
    shapes = lambda m: [tuple(p.shape) for i in range(3) for p in m.layers[i].downsample.parameters()]  # noqa: E731
    assert shapes(nano) == shapes(official)
    x = torch.randn(1, 3, 64, 64)
    sizes = []
    for down, blocks in nano.stage_parts():
        x = blocks[0](down(x))
        sizes.append(tuple(x.shape[-2:]))
    assert sizes == [(16, 16), (16, 16), (16, 16), (8, 8)]
    # the global stages' bias tables are laid out for the maps an img_size input gives them
    assert [b.attn.window for b in (nano.layers[2].blocks[0], nano.layers[3].blocks[0])] == [16, 8]
    with pytest.raises(ValueError, match="merge_strides"):
        SlideSwinSpec(merge_strides=(3, 2, 2))

