"""Fast dilated (MSDA) and routing (BRA) attention cores vs their dense float64 references."""
import pytest
import torch

from video_sparse.ops.dilated_attention import dilated_attention
from video_sparse.ops.routing_attention import bi_level_routing_attention
from mixer_reference import dilated_attention_reference, routing_attention_reference, routing_margin

TOL = dict(rtol=0, atol=1e-10)


def _grads(fn, *inputs, grad_out):
    inputs = [t.detach().clone().requires_grad_(True) for t in inputs]
    out = fn(*inputs)
    (out * grad_out).sum().backward()
    return out.detach(), [t.grad for t in inputs]


@pytest.mark.parametrize("shape,dilation", [((2, 2, 3, 7, 9), 1), ((1, 1, 4, 5, 6), 2), ((2, 3, 2, 4, 5), 3),
                                            ((1, 2, 3, 2, 3), 3), ((1, 1, 2, 1, 1), 1)])
def test_dilated_attention_matches_dense_reference(shape, dilation):
    g = torch.Generator().manual_seed(sum(shape) + dilation)
    q, k, v = (torch.randn(shape, generator=g, dtype=torch.float64) for _ in range(3))
    grad_out = torch.randn(shape, generator=g, dtype=torch.float64)
    out, grads = _grads(lambda a, b, c: dilated_attention(a, b, c, dilation), q, k, v, grad_out=grad_out)
    ref, ref_grads = _grads(lambda a, b, c: dilated_attention_reference(a, b, c, dilation), q, k, v, grad_out=grad_out)
    torch.testing.assert_close(out, ref, **TOL)
    for name, a, b in zip("qkv", grads, ref_grads):
        torch.testing.assert_close(a, b, **TOL, msg=f"grad {name}")


def test_dilated_attention_kernel_5_and_custom_scale():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 3, 6, 7, generator=g, dtype=torch.float64) for _ in range(3))
    torch.testing.assert_close(dilated_attention(q, k, v, 2, kernel_size=5, scale=0.3),
                               dilated_attention_reference(q, k, v, 2, kernel_size=5, scale=0.3), **TOL)


def test_dilated_attention_gradcheck():
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 2, 2, 4, 5, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(3))
    assert torch.autograd.gradcheck(lambda a, b, c: dilated_attention(a, b, c, 2), (q, k, v))


def test_dilated_attention_padded_neighbours_enter_softmax_with_logit_zero():
    # a 1x1 map: the pixel itself plus 8 padded neighbours with logit 0 and value 0
    q = torch.full((1, 1, 1, 1, 1), 2.0, dtype=torch.float64)
    k = torch.full_like(q, 1.5)
    v = torch.full_like(q, 4.0)
    weight = torch.exp(torch.tensor(3.0, dtype=torch.float64))  # scale 1 (head_dim 1): logit 2 * 1.5
    expected = 4.0 * weight / (weight + 8)
    assert dilated_attention(q, k, v, 1).item() == pytest.approx(expected.item(), rel=1e-12)


def test_dilated_attention_rejects_bad_arguments():
    q = torch.zeros(1, 1, 2, 3, 3)
    with pytest.raises(ValueError, match="odd"):
        dilated_attention(q, q, q, 1, kernel_size=2)
    with pytest.raises(ValueError, match="share one shape"):
        dilated_attention(q, q[..., :2], q, 1)


def _routing_inputs(seed, B, H, W, c, dv, n_win, topk, scale):
    """Random q, k, v whose routing has a clear top-k margin (no ties), by trying seeds in order."""
    for s in range(seed, seed + 100):
        g = torch.Generator().manual_seed(s)
        q, k = (torch.randn(B, H, W, c, generator=g, dtype=torch.float64) for _ in range(2))
        if routing_margin(q, k, n_win, topk, scale) > 1e-6:
            return q, k, torch.randn(B, H, W, dv, generator=g, dtype=torch.float64)
    raise AssertionError("no tie-free routing found")


@pytest.mark.parametrize("B,H,W,c,dv,n_win,topk,heads", [
    (2, 8, 12, 8, 6, 4, 3, 2),     # divisible: 2x3 regions, no padding
    (1, 7, 10, 4, 4, 3, 2, 1),     # padded to 9 x 12, partial regions at the bottom and right
    (2, 5, 5, 6, 6, 4, 5, 3),      # 2x2 regions from 5 x 5: a row and a column of regions are half padding
    (1, 3, 2, 4, 2, 4, 6, 2),      # region side 1: several regions have no pixel at all
    (1, 6, 6, 4, 4, 2, 4, 2),      # topk = all regions: full attention
])
def test_routing_attention_matches_dense_reference(B, H, W, c, dv, n_win, topk, heads):
    scale = c ** -0.5
    q, k, v = _routing_inputs(H * W + topk, B, H, W, c, dv, n_win, topk, scale)
    g = torch.Generator().manual_seed(7)
    grad_out = torch.randn(B, H, W, dv, generator=g, dtype=torch.float64)
    fast = lambda a, b, d: bi_level_routing_attention(a, b, d, n_win, topk, heads, scale)  # noqa: E731
    ref = lambda a, b, d: routing_attention_reference(a, b, d, n_win, topk, heads, scale)  # noqa: E731
    out, grads = _grads(fast, q, k, v, grad_out=grad_out)
    out_ref, grads_ref = _grads(ref, q, k, v, grad_out=grad_out)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, out_ref, **TOL)
    for name, a, b in zip("qkv", grads, grads_ref):
        torch.testing.assert_close(a, b, **TOL, msg=f"grad {name}")


def test_routing_attention_gradcheck():
    q, k, v = _routing_inputs(0, 1, 5, 6, 4, 4, 3, 2, 0.5)
    q, k, v = (t.requires_grad_(True) for t in (q, k, v))
    assert torch.autograd.gradcheck(lambda a, b, d: bi_level_routing_attention(a, b, d, 3, 2, 2, 0.5), (q, k, v))


def test_routing_attention_rejects_bad_arguments():
    q = torch.zeros(1, 4, 4, 4)
    with pytest.raises(ValueError, match="topk"):
        bi_level_routing_attention(q, q, q, 2, 5, 1, 1.0)
    with pytest.raises(ValueError, match="divisible"):
        bi_level_routing_attention(q, q, q, 2, 1, 3, 1.0)


@pytest.mark.parametrize("B,H,W,c,dv,n_win,topk,heads", [(2, 8, 12, 8, 6, 4, 3, 2), (1, 7, 10, 4, 4, 3, 2, 1)])
def test_routing_attention_as_exported_matches_the_reference(monkeypatch, B, H, W, c, dv, n_win, topk, heads):
    """Traced for ONNX, the routed logits are stacked (ONNX Concat) instead of written into a
    buffer (ONNX ScatterElements, slow in onnxruntime): the same function."""
    scale = c ** -0.5
    q, k, v = _routing_inputs(H * W + topk, B, H, W, c, dv, n_win, topk, scale)
    eager = bi_level_routing_attention(q, k, v, n_win, topk, heads, scale)
    monkeypatch.setattr("video_sparse.ops.routing_attention.tracing_for_onnx", lambda: True)
    exported = bi_level_routing_attention(q, k, v, n_win, topk, heads, scale)
    torch.testing.assert_close(exported, eager, rtol=0, atol=0)
    torch.testing.assert_close(exported, routing_attention_reference(q, k, v, n_win, topk, heads, scale), **TOL)
