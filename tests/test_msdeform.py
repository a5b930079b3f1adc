"""MSDeformAttn core: against a loop-by-point float64 reference (points inside, on the border and
outside every level, odd sizes, one-pixel levels), against the official pure-PyTorch core, gradcheck,
and the memory it keeps for backward."""
import pytest
import torch

from mixer_reference import msdeform_attention_reference
from official_mixers import official_msdeform_core
from video_sparse.ops.msdeform_attention import msdeform_attention

TOL = dict(rtol=0, atol=1e-10)


def _inputs(N, Lq, M, D, shapes, K, seed, spread=0.3):
    """Locations spread around [0, 1] by ``spread`` on each side, so some fall outside the maps."""
    g = torch.Generator().manual_seed(seed)
    S, L = sum(h * w for h, w in shapes), len(shapes)
    value = torch.randn(N, S, M, D, generator=g, dtype=torch.float64)
    locations = torch.rand(N, Lq, M, L, K, 2, generator=g, dtype=torch.float64) * (1 + 2 * spread) - spread
    weights = torch.randn(N, Lq, M, L * K, generator=g, dtype=torch.float64).softmax(-1).view(N, Lq, M, L, K)
    grad_out = torch.randn(N, Lq, M * D, generator=g, dtype=torch.float64)
    return value, locations, weights, grad_out


def _outputs_and_grads(fn, shapes, value, locations, weights, grad_out):
    inputs = [t.clone().requires_grad_(True) for t in (value, locations, weights)]
    out = fn(inputs[0], shapes, inputs[1], inputs[2])
    (out * grad_out).sum().backward()
    return [out.detach()] + [t.grad for t in inputs]


CASES = [  # N, Lq, M, D, level shapes, K
    (1, 5, 2, 3, [(4, 5)], 2),
    (2, 7, 1, 2, [(3, 3), (2, 5), (1, 1)], 3),
    (1, 4, 3, 2, [(5, 4), (1, 6)], 1),
]


@pytest.mark.parametrize("N,Lq,M,D,shapes,K", CASES)
def test_core_matches_the_point_loop_reference_forward_and_gradients(N, Lq, M, D, shapes, K):
    value, locations, weights, grad_out = _inputs(N, Lq, M, D, shapes, K, seed=Lq + K)
    ours = _outputs_and_grads(msdeform_attention, shapes, value, locations, weights, grad_out)
    ref = _outputs_and_grads(msdeform_attention_reference, shapes, value, locations, weights, grad_out)
    for name, a, b in zip(("output", "value", "locations", "weights"), ours, ref):
        torch.testing.assert_close(a, b, **TOL, msg=f"{name}")


@pytest.mark.parametrize("shapes", [[(6, 7), (3, 4), (2, 2)], [(5, 5)], [(1, 1), (2, 3)]])
def test_core_equals_the_official_pure_pytorch_core(shapes):
    value, locations, weights, grad_out = _inputs(2, 9, 2, 4, shapes, 4, seed=len(shapes), spread=0.5)
    ours = _outputs_and_grads(msdeform_attention, shapes, value, locations, weights, grad_out)
    official = _outputs_and_grads(official_msdeform_core, shapes, value, locations, weights, grad_out)
    for name, a, b in zip(("output", "value", "locations", "weights"), ours, official):
        torch.testing.assert_close(a, b, **TOL, msg=f"{name}")


def test_points_on_pixel_centres_read_the_pixels_and_far_points_read_zero():
    shapes = [(3, 4)]
    value = torch.arange(12, dtype=torch.float64).view(1, 12, 1, 1)
    # pixel (row 1, col 2) has its centre at ((2 + 0.5) / 4, (1 + 0.5) / 3); (-1, -1) is outside
    locations = torch.tensor([[2.5 / 4, 1.5 / 3], [-1.0, -1.0]], dtype=torch.float64).view(1, 2, 1, 1, 1, 2)
    weights = torch.ones(1, 2, 1, 1, 1, dtype=torch.float64)
    out = msdeform_attention(value, shapes, locations, weights)
    assert out.flatten().tolist() == [6.0, 0.0]


def test_core_gradcheck():
    shapes = [(3, 2), (2, 2)]
    value, locations, weights, _ = _inputs(1, 3, 2, 2, shapes, 2, seed=5, spread=0.2)
    inputs = [t.requires_grad_(True) for t in (value, locations, weights)]
    assert torch.autograd.gradcheck(lambda v, p, a: msdeform_attention(v, shapes, p, a), inputs)


def test_backward_keeps_the_inputs_not_the_samples():
    """Between forward and backward only the inputs stay alive: the saved tensors are value,
    locations and weights (the official core also keeps L x K samples per query and channel)."""
    shapes = [(8, 8), (4, 4)]
    value, locations, weights, _ = _inputs(1, 64, 2, 8, shapes, 4, seed=1)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        msdeform_attention(value.requires_grad_(True), shapes, locations.requires_grad_(True),
                           weights.requires_grad_(True))
    assert sum(saved) == value.numel() + locations.numel() + weights.numel()


def test_bad_shapes_are_refused_with_the_expected_shape():
    value, locations, weights, _ = _inputs(1, 3, 2, 2, [(2, 2)], 2, seed=0)
    with pytest.raises(ValueError, match="spatial_shapes"):
        msdeform_attention(value, [(3, 3)], locations, weights)
    with pytest.raises(ValueError, match=r"attention_weights must be \(N, Lq, M, L, K\)"):
        msdeform_attention(value, [(2, 2)], locations, weights[..., :1])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_low_precision_inputs_are_computed_in_float32(dtype):
    value, locations, weights, _ = _inputs(1, 6, 2, 4, [(5, 5)], 3, seed=2)
    out = msdeform_attention(value.to(dtype), [(5, 5)], locations.to(dtype), weights.to(dtype))
    expected = msdeform_attention(value.to(dtype).double(), [(5, 5)], locations.to(dtype).double(),
                                  weights.to(dtype).double())
    assert out.dtype == dtype
    torch.testing.assert_close(out.double(), expected, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("ref_dims", [2, 4])
def test_module_equals_the_official_forward_with_padding_mask(ref_dims):
    from official_mixers import official_msdeform_attn
    from video_sparse.layers.msdeform import MSDeformAttn
    torch.manual_seed(ref_dims)
    shapes = [(5, 6), (3, 3), (1, 2)]
    module = MSDeformAttn(d_model=8, n_levels=3, n_heads=2, n_points=3).double()
    for p in module.parameters():  # away from the initialisation, so offsets depend on the query
        p.data.add_(0.3 * torch.randn_like(p))
    S = sum(h * w for h, w in shapes)
    query, value = torch.randn(2, 7, 8, dtype=torch.float64), torch.randn(2, S, 8, dtype=torch.float64)
    ref = torch.rand(2, 7, 3, ref_dims, dtype=torch.float64)
    mask = torch.rand(2, S) < 0.2
    grad_out = torch.randn(2, 7, 8, dtype=torch.float64)

    def run(fn):
        module.zero_grad()
        q, v = query.clone().requires_grad_(True), value.clone().requires_grad_(True)
        out = fn(module, q, ref, v, shapes, mask)
        (out * grad_out).sum().backward()
        return [out.detach(), q.grad, v.grad] + [p.grad.clone() for p in module.parameters()]

    for a, b in zip(run(MSDeformAttn.forward), run(official_msdeform_attn)):
        torch.testing.assert_close(a, b, **TOL)


def test_module_initialisation_puts_head_points_on_rays_and_weights_uniform():
    from video_sparse.layers.msdeform import MSDeformAttn
    module = MSDeformAttn(d_model=16, n_levels=2, n_heads=4, n_points=3)
    bias = module.sampling_offsets.bias.view(4, 2, 3, 2)
    # head 1 points up the y axis (angle pi/2): (0, 1), (0, 2), (0, 3) on every level
    torch.testing.assert_close(bias[1, 1], torch.tensor([[0.0, 1.0], [0.0, 2.0], [0.0, 3.0]]), atol=1e-6, rtol=0)
    # head 0 along x; the largest coordinate of every ray is 1 pixel per point index
    assert bias[0, 0, 2].tolist() == [3.0, 0.0]
    assert not module.sampling_offsets.weight.any() and not module.attention_weights.weight.any()
    assert set(module.state_dict()) == {f"{n}.{p}" for n in ("sampling_offsets", "attention_weights", "value_proj",
                                                             "output_proj") for p in ("weight", "bias")}
