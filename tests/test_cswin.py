"""CSWin: the stripe attention core against its dense float64 reference (any size, borders, 1-pixel
stripes), the module against a faithful re-implementation of the official formulation, the image
backbones' official keys and parameter counts."""
import pytest
import torch

from mixer_reference import stripe_attention_reference
from official_mixers import official_cswin, outputs_and_grads
from video_sparse.layers.cswin import CrossShapedWindowAttention, CSWinBlock
from video_sparse.ops.stripe_attention import stripe_attention

TOL = dict(rtol=0, atol=1e-10)


def _inputs(shape, heads, seed):
    g = torch.Generator().manual_seed(seed)
    B, H, W, C = shape
    q, k, v = (torch.randn(shape, generator=g, dtype=torch.float64) for _ in range(3))
    weight = torch.randn(C, 1, 3, 3, generator=g, dtype=torch.float64)
    bias = torch.randn(C, generator=g, dtype=torch.float64)
    return q, k, v, weight, bias, torch.randn(shape, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("shape,window,heads", [
    ((2, 6, 8, 4), (None, 2), 2),     # vertical stripes, divisible
    ((1, 7, 9, 6), (None, 2), 3),     # vertical stripes, W not divisible
    ((2, 7, 9, 4), (3, None), 2),     # horizontal stripes, H not divisible
    ((1, 5, 6, 2), (None, 1), 1),     # 1-pixel stripes
    ((1, 5, 6, 2), (1, None), 2),
    ((2, 4, 5, 4), (None, None), 2),  # the last stage: full attention
    ((1, 3, 2, 2), (None, 7), 1),     # a stripe wider than the map
])
def test_stripe_attention_matches_dense_reference_forward_and_gradients(shape, window, heads):
    q, k, v, weight, bias, grad_out = _inputs(shape, heads, seed=sum(shape) + heads)
    scale = (shape[-1] // heads) ** -0.5
    inputs = [t.clone().requires_grad_(True) for t in (q, k, v, weight, bias)]
    ref_inputs = [t.clone().requires_grad_(True) for t in (q, k, v, weight, bias)]
    out = stripe_attention(*inputs[:3], *window, heads, scale, *inputs[3:])
    ref = stripe_attention_reference(*ref_inputs[:3], *window, heads, scale, *ref_inputs[3:])
    torch.testing.assert_close(out, ref, **TOL)
    (out * grad_out).sum().backward()
    (ref * grad_out).sum().backward()
    for name, a, b in zip(("q", "k", "v", "lepe weight", "lepe bias"), inputs, ref_inputs):
        torch.testing.assert_close(a.grad, b.grad, **TOL, msg=f"grad {name}")


def test_stripe_attention_gradcheck():
    q, k, v, weight, bias, _ = _inputs((1, 3, 5, 4), 2, seed=3)
    inputs = [t.requires_grad_(True) for t in (q, k, v, weight, bias)]
    assert torch.autograd.gradcheck(lambda a, b, c, w, z: stripe_attention(a, b, c, None, 2, 2, 0.7, w, z), inputs)


@pytest.mark.parametrize("shape,split,heads,full", [((2, 14, 14, 16), 7, 4, False), ((1, 8, 12, 8), 2, 2, False),
                                                    ((1, 7, 7, 16), 7, 4, True), ((2, 6, 4, 4), 1, 2, False)])
def test_module_equals_the_official_formulation(shape, split, heads, full):
    """At sizes the official code accepts (multiples of the stripe), our module = a faithful
    re-implementation of the official img2windows / get_lepe computation, outputs and gradients."""
    torch.manual_seed(sum(shape))
    module = CrossShapedWindowAttention(shape[-1], heads, split, full).double()
    x = torch.randn(shape, dtype=torch.float64)
    grad_out = torch.randn(shape, dtype=torch.float64)
    for ours, official in zip(outputs_and_grads(lambda m, t: m(t), module, x, grad_out),
                              outputs_and_grads(official_cswin, module, x, grad_out)):
        torch.testing.assert_close(ours, official, **TOL)


@pytest.mark.parametrize("hw", [(224, 224), (200, 264), (7, 9)])
def test_block_runs_forward_and_backward_at_any_size(hw):
    """The stage-1 and the last-stage blocks of CSWin-T (stripe 1, full attention) and a stage-3
    block (stripe 7, padded at 200x264 and 7x9), on the maps of those input sizes."""
    for dim, heads, split, full, stride in ((64, 2, 1, False, 4), (256, 8, 7, False, 16), (512, 16, 7, True, 32)):
        block = CSWinBlock(dim, heads, split, full=full)
        h, w = max(hw[0] // stride, 1), max(hw[1] // stride, 1)
        x = torch.randn(2, dim, h, w, requires_grad=True)
        out = block(x, frames=2)
        out.sum().backward()
        assert out.shape == x.shape and torch.isfinite(x.grad).all()


def test_bad_head_counts_are_named():
    with pytest.raises(ValueError, match="heads evenly into 2 branch"):
        CrossShapedWindowAttention(12, 3, 2)
