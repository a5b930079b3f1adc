"""MSDeformAttn across frames: the operator against a frame-by-frame, point-by-point float64
reference (frames beyond the clip, T = 1 and 2, odd sizes, both offset sources), gradcheck, and the
bottleneck / transformer sub-blocks built from it."""
import pytest
import torch
from einops import rearrange

from mixer_reference import msdeform_attention_reference
from video_sparse.layers.temporal_msdeform import FrameMSDeform, MSDeformBottleneck, TemporalMSDeformAttn
from video_sparse.ops.sifa import motion_map

TOL = dict(rtol=0, atol=1e-10)


def temporal_reference(module: TemporalMSDeformAttn, x: torch.Tensor) -> torch.Tensor:
    """Frame by frame: the levels of frame t are the projected frames t + d (zeros beyond the clip),
    the reference point of pixel (i, j) is ((j + 0.5) / W, (i + 0.5) / H), sampled by loops."""
    N, C, T, H, W = x.shape
    M, K, window = module.n_heads, module.n_points, module.window
    if module.offsets_from == "query":
        all_offsets = module.sampling_offsets(rearrange(x, "n c t h w -> n t h w c"))
    else:
        all_offsets = rearrange(module.sampling_offsets(motion_map(x)), "n o t h w -> n t h w o")
    out = torch.zeros(N, C, T, H, W, dtype=x.dtype)
    for n in range(N):
        for t in range(T):
            frame = x[n, :, t].reshape(C, H * W).t()  # (HW, C), row-major pixels
            levels = [module.value_proj(x[n, :, t + d].reshape(C, H * W).t()) if 0 <= t + d < T
                      else torch.zeros(H * W, C, dtype=x.dtype) for d in window]
            value = torch.cat(levels).view(1, len(window) * H * W, M, C // M)
            offsets = all_offsets[n, t].reshape(H * W, M, len(window), K, 2)
            weights = module.attention_weights(frame).view(H * W, M, len(window) * K).softmax(-1)
            locations = torch.zeros_like(offsets)
            for i in range(H):
                for j in range(W):
                    centre = torch.tensor([(j + 0.5) / W, (i + 0.5) / H], dtype=x.dtype)
                    locations[i * W + j] = centre + offsets[i * W + j] / torch.tensor([W, H], dtype=x.dtype)
            sampled = msdeform_attention_reference(value, [(H, W)] * len(window), locations[None],
                                                   weights.view(1, H * W, M, len(window), K))
            out[n, :, t] = module.output_proj(sampled[0]).t().reshape(C, H, W)
    return out


def _module(window, offsets_from, seed=0):
    torch.manual_seed(seed)
    module = TemporalMSDeformAttn(4, n_heads=2, n_points=2, window=window, offsets_from=offsets_from).double()
    for p in module.parameters():  # away from the initialisation: offsets and weights depend on the input
        p.data.add_(0.5 * torch.randn_like(p))
    return module


@pytest.mark.parametrize("shape,window,offsets_from", [
    ((1, 4, 3, 3, 4), (-1, 0, 1), "query"),
    ((2, 4, 2, 2, 3), (-1, 0, 1), "motion"),
    ((1, 4, 1, 3, 2), (-1, 0, 1), "query"),   # T = 1: the neighbours are beyond the clip
    ((1, 4, 4, 2, 2), (0, 2), "query"),        # a window reaching two frames ahead
])
def test_operator_matches_the_frame_by_frame_reference_forward_and_gradients(shape, window, offsets_from):
    module = _module(window, offsets_from, seed=sum(shape))
    x = torch.randn(shape, dtype=torch.float64)
    grad_out = torch.randn(shape, dtype=torch.float64)

    def run(fn):
        module.zero_grad()
        xi = x.clone().requires_grad_(True)
        out = fn(xi)
        (out * grad_out).sum().backward()
        return [out.detach(), xi.grad] + [p.grad.clone() for p in module.parameters()]

    for a, b in zip(run(module), run(lambda t: temporal_reference(module, t))):
        torch.testing.assert_close(a, b, **TOL)


def test_operator_gradcheck():
    module = _module((-1, 0, 1), "motion", seed=3)
    x = torch.randn(1, 4, 2, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(module, (x,))


def test_blocks_run_at_any_size_and_can_be_switched_off():
    block = MSDeformBottleneck(16, 8, head_dim=4, offsets_from="motion")
    x = torch.randn(2, 16, 3, 5, 7)
    out = block(x)
    out.sum().backward()
    assert out.shape == (2, 32, 3, 5, 7) and block.temporal.sampling_offsets.weight.grad is not None
    off = MSDeformBottleneck(16, 8, head_dim=4, offsets_from="motion", enabled=False)
    off.load_state_dict(block.state_dict())
    y = torch.randn(1, 8, 2, 3, 3)
    assert torch.equal(off.mix(y), y) and not torch.equal(block.mix(y), y)

    sub = FrameMSDeform(8, head_dim=4)
    stream = torch.randn(6, 5, 4, 8)  # 2 clips x 3 frames
    assert torch.equal(sub(stream, 3), stream)  # gamma starts at zero: the identity
    sub.gamma.data.fill_(1.0)
    assert not torch.equal(sub(stream, 3), stream)
    with pytest.raises(ValueError, match="whole number of 4-frame clips"):
        sub(stream, 4)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="divisible by the heads"):
        TemporalMSDeformAttn(6, n_heads=4)
    with pytest.raises(ValueError, match="offsets_from"):
        TemporalMSDeformAttn(8, n_heads=2, offsets_from="flow")


@pytest.mark.parametrize("hw", [(224, 224), (256, 256), (200, 264)])
def test_operator_runs_forward_and_backward_at_image_sizes(hw):
    module = TemporalMSDeformAttn(8, n_heads=2, n_points=2)
    x = torch.randn(1, 8, 2, *hw, requires_grad=True)
    module(x).sum().backward()
    assert x.grad.shape == x.shape and torch.isfinite(x.grad).all()


def test_models_take_msdeform_in_place_of_sifa():
    import video_sparse
    from video_sparse.layers.sifa import FrameSIFA, SIFABottleneck
    small = video_sparse.build_model("msdeform_small", 10)
    kinds = {type(m) for m in small.modules()}
    assert MSDeformBottleneck in kinds and SIFABottleneck not in kinds
    assert video_sparse.build_model("sifa_small", 10).state_dict().keys() != small.state_dict().keys()
    off = video_sparse.build_model("msdeform_small", 10, temporal=False)
    assert not any(m.enabled for m in off.modules() if isinstance(m, MSDeformBottleneck))
    for T in (1, 2, 5):
        out = small(torch.randn(1, 3, T, 32, 32))
        assert [o.shape for o in out] == [(1, 10), (1, 10)]

    nano = video_sparse.build_model("sifa_biformer_nano", 10, temporal_mixer="msdeform", msdeform_head_dim=16,
                                    msdeform_offsets="motion", temporal_window=[0, 1])
    subs = [m for m in nano.modules() if isinstance(m, FrameMSDeform)]
    assert subs and not any(isinstance(m, FrameSIFA) for m in nano.modules())
    assert subs[0].attn.window == (0, 1) and subs[0].attn.offsets_from == "motion"
    nano(torch.randn(1, 3, 3, 64, 64))[0].sum().backward()
