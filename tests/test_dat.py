"""DAT: the deformable attention and the (shifted) window attention against float64 references
written from their definitions and against the official formulations, at any size, with samples
beyond the map; gradcheck; the backbone's official numerics hold with the resized tables."""
import pytest
import torch

import video_sparse
from mixer_reference import (bilinear_align_corners_reference, deformable_attention_reference,
                             window_attention_reference)
from official_mixers import official_dat_attention, official_dat_logits, official_window_attention, outputs_and_grads
from video_sparse.layers.dat import DATStage, DeformableAttention, WindowAttention, window_mask
from video_sparse.layers.sifa import FrameSIFA
from video_sparse.models.dat import DAT
from video_sparse.models.specs import DATSpec
from video_sparse.ops.deformable_attention import sample_groups

TOL = dict(rtol=0, atol=1e-10)


def _deformable(dim=8, heads=4, groups=2, map_size=5, kernel=3, spread=1.0, seed=0):
    """float64 module whose offsets are large enough that many samples leave the map."""
    torch.manual_seed(seed)
    module = DeformableAttention(dim, heads, groups, map_size, offset_range_factor=3.0, offset_kernel=kernel).double()
    for p in module.parameters():
        torch.nn.init.normal_(p, std=spread if p is module.conv_offset[3].weight else 0.3)
    return module


def test_bilinear_reference_is_grid_sample_with_aligned_corners():
    image = torch.randn(3, 4, 5, dtype=torch.float64)
    y, x = torch.rand(6, 7, dtype=torch.float64) * 2.6 - 1.3, torch.rand(6, 7, dtype=torch.float64) * 2.6 - 1.3
    expected = torch.nn.functional.grid_sample(image[None], torch.stack([x, y], -1)[None], align_corners=True)[0]
    torch.testing.assert_close(bilinear_align_corners_reference(image, y, x), expected, **TOL)


@pytest.mark.parametrize("hw", [(5, 5), (4, 7), (1, 3), (6, 2)])
def test_deformable_attention_matches_its_reference_forward_and_gradients(hw):
    module = _deformable()
    x = torch.randn(2, 8, *hw, dtype=torch.float64)
    grad_out = torch.randn(2, 8, *hw, dtype=torch.float64)
    with torch.no_grad():
        pos = module.positions(module.proj_q(x))
    assert (pos.abs() > 1).any(), "the case should sample beyond the map"
    ours = outputs_and_grads(lambda m, t: m(t), module, x, grad_out)
    ref = outputs_and_grads(deformable_attention_reference, module, x, grad_out)
    names = ["output", "input"] + [n for n, p in module.named_parameters()]
    for name, a, b in zip(names, ours, ref):
        torch.testing.assert_close(a, b, **TOL, msg=f"{hw}: {name}")


@pytest.mark.parametrize("hw", [(5, 5), (3, 4)])
def test_deformable_attention_is_the_official_formulation_at_its_map_size(hw):
    module = _deformable(map_size=hw[0]) if hw[0] == hw[1] else None
    if module is None:  # the official table is square: a non-square map needs a (2H-1) x (2W-1) one
        module = _deformable(map_size=3)
        module.rpe_table = torch.nn.Parameter(torch.randn(4, 2 * hw[0] - 1, 2 * hw[1] - 1, dtype=torch.float64))
    x = torch.randn(2, 8, *hw, dtype=torch.float64)
    grad_out = torch.randn_like(x)
    for a, b in zip(outputs_and_grads(lambda m, t: m(t), module, x, grad_out),
                    outputs_and_grads(official_dat_attention, module, x, grad_out)):
        torch.testing.assert_close(a, b, **TOL)


def test_deformable_attention_gradcheck():
    module = _deformable(dim=4, heads=2, groups=2, map_size=3)
    x = torch.randn(1, 4, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(module, (x,))
    pos = torch.randn(1, 2, 2, 3, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t, p: sample_groups(t, p), (x, pos))


@pytest.mark.parametrize("shift", [0, 2])
@pytest.mark.parametrize("hw", [(6, 6), (5, 7), (1, 1), (4, 2)])
def test_window_attention_matches_its_dense_reference(shift, hw):
    torch.manual_seed(1)
    module = WindowAttention(6, 2, window=3, shift=shift, map_size=6).double()
    torch.nn.init.normal_(module.relative_position_bias_table)
    x = torch.randn(2, 6, *hw, dtype=torch.float64)
    grad_out = torch.randn_like(x)
    for a, b in zip(outputs_and_grads(lambda m, t: m(t), module, x, grad_out),
                    outputs_and_grads(window_attention_reference, module, x, grad_out)):
        torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize("shift", [0, 4])
def test_window_attention_is_the_official_formulation_at_its_map_size(shift):
    torch.manual_seed(2)
    module = WindowAttention(6, 3, window=7, shift=shift, map_size=14).double()
    x = torch.randn(2, 6, 14, 14, dtype=torch.float64)
    grad_out = torch.randn_like(x)
    for a, b in zip(outputs_and_grads(lambda m, t: m(t), module, x, grad_out),
                    outputs_and_grads(official_window_attention, module, x, grad_out)):
        torch.testing.assert_close(a, b, **TOL)


def test_official_shift_mask_buffer_is_the_computed_mask():
    module = WindowAttention(96, 3, window=7, shift=4, map_size=56)
    assert module.attn_mask.shape == (64, 49, 49)
    assert torch.equal(module.attn_mask == 0, window_mask(56, 56, 7, 4))
    assert set(module.attn_mask.unique().tolist()) == {-100.0, 0.0}


def test_dat_is_the_official_forward_at_its_build_size():
    torch.manual_seed(4)
    model = DAT(DATSpec(embed_dim=8, stage_spec=("LS", "LS", "LD", "LD"), num_heads=(1, 2, 2, 4), groups=(1, 1, 1, 2),
                        window_size=2, offset_kernel=(3, 3, 3, 3), img_size=64), num_classes=5).double().eval()
    for m in model.modules():
        if isinstance(m, DeformableAttention):
            torch.nn.init.normal_(m.conv_offset[3].weight)
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), official_dat_logits(model, x), **TOL)


def test_dat_stage_orders_the_blocks_and_their_inter_frame_sub_blocks():
    model = video_sparse.build_model("sifa_dat_tiny", num_classes=5)
    stages = model.backbone.stages
    assert [len(s.temporal) for s in stages] == [0, 0, 6, 2] and len(model.dual_blocks.temporal) == 2
    assert all(isinstance(t, FrameSIFA) for t in stages[2].temporal)
    assert [type(a).__name__ for a in stages[2].attns] == ["WindowAttention", "DeformableAttention"] * 3
    assert [a.shift for a in stages[0].attns] == [0, 4]
    baseline = video_sparse.build_model("c2d_dat_tiny", num_classes=5)
    assert not baseline.dual and all(len(s.temporal) == 0 for s in baseline.backbone.stages)
    # the stage: (DAT++'s local perception unit,) attention, the inter-frame sub-block, the MLP, each residual
    for lpu in (False, True):
        stage = DATStage(4, [torch.nn.Identity()], 2.0, [0.0], lpu=lpu)
        seen = []
        stage.attach_temporal(lambda dim: _Recorder(seen, dim))
        x = torch.randn(2, 4, 3, 3)
        stage(x, frames=2)
        if lpu:
            x = x + stage.local_perception_units[0](x)
        torch.testing.assert_close(seen[0], (x + stage.layer_norms[0](x)).permute(0, 2, 3, 1))


class _Recorder(torch.nn.Module):
    def __init__(self, seen, dim):
        super().__init__()
        self.seen, self.dim = seen, dim

    def forward(self, x, frames):
        assert frames == 2 and x.shape[-1] == self.dim
        self.seen.append(x.detach().clone())
        return x


def test_bad_stage_spec_is_named():
    with pytest.raises(ValueError, match="stage_spec"):
        video_sparse.build_model("dat_tiny", num_classes=5, stage_spec=["LS", "LX", "LD", "LD"])


def test_conv_patches_are_the_official_overlapping_embedding_at_every_size():
    model = DAT(DATSpec(embed_dim=8, stage_spec=("L", "S", "D", "D"), num_heads=(1, 2, 2, 4), groups=(1, 1, 1, 2),
                        window_size=2, merge_strides=(1, 2, 2), conv_patches=True, img_size=32), num_classes=3)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items() if k.startswith(("patch_proj", "down_projs.0"))}
    assert shapes == {"patch_proj.0.weight": (4, 3, 3, 3), "patch_proj.0.bias": (4,), "patch_proj.1.norm.weight": (4,),
                      "patch_proj.1.norm.bias": (4,), "patch_proj.3.weight": (8, 4, 3, 3), "patch_proj.3.bias": (8,),
                      "patch_proj.4.norm.weight": (8,), "patch_proj.4.norm.bias": (8,),
                      "down_projs.0.0.weight": (16, 8, 3, 3), "down_projs.0.1.norm.weight": (16,),
                      "down_projs.0.1.norm.bias": (16,)}
    for hw, expected in (((32, 32), [(8, 8), (8, 8), (4, 4), (2, 2)]), ((29, 35), [(8, 9), (8, 9), (4, 5), (2, 3)])):
        x, sizes = torch.randn(1, 3, *hw), []
        for down, stage in model.stage_parts():
            x = stage(down(x))
            sizes.append(tuple(x.shape[-2:]))
        assert sizes == expected
