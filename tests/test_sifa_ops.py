"""The SIFA operator against the loop reference: forward and gradients, borders, sizes, dtypes."""
import pytest
import torch

from sifa_reference import sifa_reference
from video_sparse.ops.sifa import sifa_aggregate, sifa_attention, sifa_attention_naive


def _inputs(N=1, C=4, T=3, H=3, W=4, K=3, max_offset=3.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(N, C, T, H, W, generator=g, dtype=torch.float64)
    off = (torch.rand(N, 2 * K * K, T, H, W, generator=g, dtype=torch.float64) * 2 - 1) * max_offset
    return f.requires_grad_(True), off.requires_grad_(True)


def _forward_and_grads(fn, f, off, **kw):
    out = fn(f, off, **kw)
    weight = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)
    gf, goff = torch.autograd.grad((out * weight).sum(), (f, off), allow_unused=True)
    return out.detach(), gf, torch.zeros_like(off) if goff is None else goff


CASES = [  # (K, dilation, T, groups, normalize, N, C, H, W)
    (3, 1, 2, 1, "none", 1, 4, 3, 4),
    (3, 1, 5, 1, "none", 1, 2, 2, 3),
    (3, 2, 2, 2, "none", 2, 4, 3, 2),
    (5, 1, 2, 1, "none", 1, 2, 3, 3),
    (5, 2, 2, 2, "softmax", 1, 4, 2, 3),
    (3, 1, 2, 2, "softmax", 1, 4, 3, 4),
    (3, 1, 2, 1, "none", 1, 3, 1, 1),   # a single pixel: every tap but the centre is outside
    (3, 1, 1, 1, "none", 1, 2, 3, 3),   # one frame: identity
]


@pytest.mark.parametrize("K,d,T,G,normalize,N,C,H,W", CASES)
def test_fast_matches_reference_forward_and_gradients(K, d, T, G, normalize, N, C, H, W):
    f, off = _inputs(N, C, T, H, W, K, seed=K * 100 + T * 10 + G)
    kw = dict(kernel_size=K, dilation=d, groups=G, normalize=normalize)
    ref = _forward_and_grads(sifa_reference, f, off, **kw)
    fast = _forward_and_grads(sifa_attention, f, off, **kw)
    for name, a, b in zip(("output", "grad features", "grad offsets"), fast, ref):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10, msg=name)


@pytest.mark.parametrize("K,d,T,G,normalize,N,C,H,W", [case for case in CASES if case[2] > 1])
def test_aggregate_alone_is_the_reference_minus_its_input(K, d, T, G, normalize, N, C, H, W):
    """``sifa_aggregate`` = A with ``sifa_attention = F + A``, zero at the last frame."""
    f, off = _inputs(N, C, T, H, W, K, seed=K * 100 + T * 10 + G)
    kw = dict(kernel_size=K, dilation=d, groups=G, normalize=normalize)
    ref = _forward_and_grads(lambda a, b, **k: sifa_reference(a, b, **k) - a, f, off, **kw)
    fast = _forward_and_grads(sifa_aggregate, f, off, **kw)
    for name, a, b in zip(("output", "grad features", "grad offsets"), fast, ref):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10, msg=name)
    assert fast[0][:, :, -1].abs().max() == 0


def test_aggregate_of_one_frame_is_zero():
    f, off = _inputs(T=1)
    assert torch.equal(sifa_aggregate(f, off), torch.zeros_like(f))


def test_offsets_reach_every_border():
    """The test inputs really sample outside the frame on every side (the validity rule matters)."""
    f, off = _inputs(H=3, W=4, max_offset=3.0)
    dy, dx = off[0, 0::2], off[0, 1::2]
    assert dy.min() < -2 and dy.max() > 2 and dx.min() < -2 and dx.max() > 2


@pytest.mark.parametrize("normalize", ["none", "softmax"])
def test_naive_form_matches_fast(normalize):
    f, off = _inputs(N=2, C=6, T=4, H=5, W=7, seed=3)
    kw = dict(groups=3, normalize=normalize)
    for a, b in zip(_forward_and_grads(sifa_attention, f, off, **kw), _forward_and_grads(sifa_attention_naive, f, off, **kw)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


@pytest.mark.parametrize("normalize", ["none", "softmax"])
def test_gradcheck(normalize):
    f, off = _inputs(C=2, T=2, H=2, W=3, max_offset=1.5, seed=7)
    assert torch.autograd.gradcheck(lambda a, b: sifa_attention(a, b, groups=2, normalize=normalize), (f, off))


def test_last_frame_untouched_and_zero_offsets_attend_the_plain_neighbourhood():
    f, off = _inputs(C=3, T=4, H=4, W=5)
    out = sifa_attention(f, torch.zeros_like(off))
    torch.testing.assert_close(out[:, :, -1], f[:, :, -1])
    # Zero offsets, 1x1 kernel: a = <F_t, F_t+1>/C at the same pixel.
    one = sifa_attention(f, torch.zeros(1, 2, 4, 4, 5, dtype=f.dtype), kernel_size=1)
    a = (f[:, :, :-1] * f[:, :, 1:]).sum(1, keepdim=True) / 3
    torch.testing.assert_close(one[:, :, :-1], f[:, :, :-1] + a * f[:, :, 1:])


def test_any_clip_length():
    for T in (1, 2, 7, 16):
        f, off = _inputs(C=2, T=T, H=3, W=3)
        assert sifa_attention(f, off).shape == f.shape


def test_autocast_bf16_computes_in_float32():
    f, off = _inputs(C=8, T=3, H=5, W=5)
    f32, off32 = f.detach().float(), off.detach().float()
    expected = sifa_attention(f32, off32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = sifa_attention(f32.bfloat16(), off32)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), expected, rtol=2e-2, atol=2e-2)


def test_float32_matches_float64():
    f, off = _inputs(C=8, T=3, H=6, W=5)
    torch.testing.assert_close(sifa_attention(f.float(), off.float()).double(), sifa_attention(f, off),
                               rtol=1e-5, atol=1e-5)


def test_bad_arguments_are_named():
    f, off = _inputs()
    with pytest.raises(ValueError, match="offsets must have shape"):
        sifa_attention(f, off[:, :4])
    with pytest.raises(ValueError, match="groups"):
        sifa_attention(f, off, groups=3)
    with pytest.raises(ValueError, match="normalize"):
        sifa_attention(f, off, normalize="sigmoid")


@pytest.mark.parametrize("K,d,T,G,normalize,N,C,H,W", CASES)
def test_the_exported_form_samples_the_taps_by_row_gathers_to_the_same_result(monkeypatch, K, d, T, G, normalize,
                                                                               N, C, H, W):
    """Traced for ONNX, the taps are a row gather of their bilinear corners (onnxruntime runs it
    ~2x faster than GridSample): forward equal to the loop reference, offsets far outside the
    frame included."""
    from video_sparse.ops.sifa import _sample_taps, _sample_taps_by_rows

    f, off = _inputs(N, C, T, H, W, K, max_offset=max(H, W) + 2.0)
    f, off = f.detach(), off.detach()
    frames, offsets = f[:, :, 0], off[:, :, 0]
    torch.testing.assert_close(_sample_taps_by_rows(frames, offsets, K, d), _sample_taps(frames, offsets, K, d),
                               rtol=1e-12, atol=1e-12)
    monkeypatch.setattr("video_sparse.ops.sifa.tracing_for_onnx", lambda: True)
    out = sifa_attention(f, off, kernel_size=K, dilation=d, groups=G, normalize=normalize)
    ref = sifa_reference(f, off, kernel_size=K, dilation=d, groups=G, normalize=normalize)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
