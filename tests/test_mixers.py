"""BRA / MSDA modules, the BiFormer and DilateFormer backbones, their video models and the hybrid
ResNets: official formulation, official keys and parameter counts, pretrained loading, any size."""
import json
from pathlib import Path

import pytest
import torch

import video_sparse
from video_sparse.layers.biformer import BiLevelRoutingAttention
from video_sparse.layers.bottleneck import FrameAttention
from video_sparse.layers.cswin import CrossShapedWindowAttention
from video_sparse.layers.dilate import MultiScaleDilatedAttention
from video_sparse.layers.sifa import FrameSIFA
from video_sparse.layers.slide import SlideAttention
from mixer_reference import routing_attention_reference, routing_margin
from helpers import train_in_process
from official_mixers import official_bra, official_msda, outputs_and_grads

DATA = Path(__file__).parent / "data"
TOL = dict(rtol=0, atol=1e-10)
IMAGE_MODELS = ["biformer_tiny", "biformer_small", "biformer_base", "dilateformer_tiny", "dilateformer_small",
                "dilateformer_base", "cswin_tiny", "cswin_small", "cswin_base", "slide_swin_tiny", "slide_swin_small",
                "slide_swin_base", "dat_tiny", "dat_small", "dat_base", "dpt_tiny", "dpt_small", "dpt_medium"]


def _tie_free_input(module, shape, seed):
    """An input whose BRA routing has a clear top-k margin (no ties), trying seeds in order."""
    for s in range(seed, seed + 100):
        x = torch.randn(shape, generator=torch.Generator().manual_seed(s), dtype=torch.float64)
        with torch.no_grad():
            q, k, _ = module.qkv(x)
        if routing_margin(q, k, module.n_win, module.topk, module.scale) > 1e-6:
            return x
    raise AssertionError("no tie-free input found")


def test_bra_matches_the_official_gather_formulation():
    torch.manual_seed(0)
    bra = BiLevelRoutingAttention(16, num_heads=2, n_win=7, topk=4).double()
    x = _tie_free_input(bra, (2, 14, 21, 16), 0)
    grad_out = torch.randn_like(x)
    for ours, official in zip(outputs_and_grads(lambda m, t: m(t), bra, x, grad_out),
                              outputs_and_grads(official_bra, bra, x, grad_out)):
        torch.testing.assert_close(ours, official, **TOL)


@pytest.mark.parametrize("shape,n_win,topk", [((1, 9, 11, 8), 4, 3), ((2, 5, 3, 8), 7, 5)])
def test_bra_at_sizes_not_divisible_by_n_win_matches_dense_reference(shape, n_win, topk):
    """Padded keys masked, LePE over the unpadded map: the dense reference sees the real pixels only."""
    torch.manual_seed(1)
    bra = BiLevelRoutingAttention(8, num_heads=2, n_win=n_win, topk=topk).double()
    x = _tie_free_input(bra, shape, 3)
    grad_out = torch.randn_like(x)

    def dense(m, t):
        q, k, v = m.qkv(t)
        out = routing_attention_reference(q, k, v, m.n_win, m.topk, m.num_heads, m.scale)
        return m.wo(out + m.lepe(v.permute(0, 3, 1, 2)).permute(0, 2, 3, 1))

    for ours, ref in zip(outputs_and_grads(lambda m, t: m(t), bra, x, grad_out),
                         outputs_and_grads(dense, bra, x, grad_out)):
        torch.testing.assert_close(ours, ref, **TOL)


@pytest.mark.parametrize("shape", [(2, 9, 11, 12), (1, 2, 3, 12)])
def test_msda_matches_the_official_unfold_formulation(shape):
    torch.manual_seed(2)
    msda = MultiScaleDilatedAttention(12, num_heads=6, dilations=(1, 2, 3)).double()
    x = torch.randn(shape, dtype=torch.float64)
    grad_out = torch.randn_like(x)
    for ours, official in zip(outputs_and_grads(lambda m, t: m(t), msda, x, grad_out),
                              outputs_and_grads(official_msda, msda, x, grad_out)):
        torch.testing.assert_close(ours, official, **TOL)


def test_mixers_reject_bad_head_counts():
    with pytest.raises(ValueError, match="dilations"):
        MultiScaleDilatedAttention(12, num_heads=4, dilations=(1, 2, 3))
    with pytest.raises(ValueError, match="divisible"):
        BiLevelRoutingAttention(12, num_heads=5)


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_image_backbones_have_official_keys_shapes_and_parameter_counts(name):
    official = json.loads((DATA / f"{name}.json").read_text())
    model = video_sparse.build_model(name, num_classes=1000)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == official["trainable_parameters"]
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert ours == official["state_dict"]


@pytest.mark.parametrize("hw", [(224, 224), (256, 256), (200, 264)])
@pytest.mark.parametrize("name,deformable", [("dat_tiny", "stages.2.attns.1.rpe_table"),
                                             ("dpt_tiny", "patch_embed3.offset_predictor.weight")])
def test_deformable_backbones_run_forward_and_backward_at_any_size(name, deformable, hw):
    """The official DAT fails at 256 px, DPT at anything but 224."""
    model = video_sparse.build_model(name, num_classes=10)
    x = torch.randn(1, 3, *hw, requires_grad=True)
    out = model(x)
    out.sum().backward()
    assert out.shape == (1, 10) and torch.isfinite(x.grad).all()
    assert model.get_parameter(deformable).grad.abs().sum() > 0


@pytest.mark.parametrize("name,video_name", [("biformer_tiny", "sifa_biformer_tiny"),
                                             ("dilateformer_tiny", "sifa_dilateformer_tiny"),
                                             ("cswin_tiny", "sifa_cswin_tiny"), ("slide_swin_tiny", "sifa_slide_tiny"),
                                             ("dat_tiny", "sifa_dat_tiny"), ("dpt_tiny", "sifa_dpt_tiny")])
def test_official_checkpoint_loads_into_image_and_video_models(name, video_name, tmp_path):
    official = json.loads((DATA / f"{name}.json").read_text())["state_dict"]
    g = torch.Generator().manual_seed(0)
    state = {k: torch.randn(s, generator=g) if s else torch.tensor(5) for k, s in official.items()}
    model = video_sparse.build_model(name, num_classes=1000)
    fixed = {k for k, p in model.named_parameters() if not p.requires_grad}  # Slide's one-hot shift kernels
    for k, v in model.state_dict().items():
        if not v.is_floating_point() or k in fixed:  # and Swin's relative_position_index: indices
            state[k] = v
    path = tmp_path / f"{name}_in1k.pth"
    torch.save({"model": state}, path)  # the official files hold {"model": state_dict}

    image = video_sparse.build_model(name, num_classes=1000)
    report = video_sparse.load_pretrained(image, str(path), strict=True)
    assert report.missing == report.unexpected == report.mismatched == []
    classifier = sorted(k for k in state if k.startswith(("head.", "cls_head.")))  # DAT: cls_head
    torch.testing.assert_close(image.state_dict()[classifier[-1]], state[classifier[-1]])

    video = video_sparse.build_model(video_name, num_classes=7, pretrained=str(path))
    loaded = video.state_dict()
    for k, v in state.items():
        if k not in classifier:
            torch.testing.assert_close(loaded["backbone." + k], v)
    down, blocks = video.backbone.stage_parts()[-1]
    for dual, source in ((video.dual_downsample, down), (video.dual_blocks, blocks), (video.dual_norm, video.backbone.norm)):
        source_state = dict(source.named_parameters())  # (DPT's state_dict renames its position embeddings)
        for k, v in dual.named_parameters():
            torch.testing.assert_close(v, source_state[k])
    report = video_sparse.load_pretrained(video, str(path))
    assert report.unexpected == [] and report.mismatched == []
    assert report.dropped == classifier
    assert all(".temporal." in k or k.startswith("head") for k in report.missing), report.missing


@pytest.mark.parametrize("name", ["sifa_cswin_nano", "sifa_slide_nano", "sifa_dat_nano", "sifa_dpt_nano"])
def test_conv_stem_replaces_the_patch_embedding_and_image_weights_load_around_it(name):
    from video_sparse.layers.stem import ConvStem

    plain = video_sparse.build_model(name, num_classes=5, conv_stem=False)
    model = video_sparse.build_model(name, num_classes=5, conv_stem=True)
    stem, old = model.backbone.stage_parts()[0][0], plain.backbone.stage_parts()[0][0]
    assert isinstance(stem, ConvStem) and not isinstance(old, ConvStem)
    frame = torch.randn(2, 3, 64, 96)
    assert stem(frame).shape == old(frame).shape == (2, stem[3].out_channels, 16, 24)
    main, dual = model(torch.randn(2, 3, 3, 50, 70))
    (main.sum() + dual.sum()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in stem.parameters())
    # an image checkpoint (here: the plain model's backbone) loads everything but its own embedding
    image = {k.removeprefix("backbone."): v for k, v in plain.state_dict().items() if k.startswith("backbone.")}
    report = video_sparse.load_pretrained(model, image)
    stem_keys = f"backbone.{model.stem_name}."
    assert report.dropped and all(k.startswith((model.stem_name + ".", "pos_embed1")) for k in report.dropped)
    assert report.missing and all(k.startswith((stem_keys, "head")) for k in report.missing), report.missing
    assert report.unexpected == report.mismatched == []


def test_biformers_stem_is_the_conv_stem():
    from video_sparse.layers.stem import ConvStem

    assert isinstance(video_sparse.build_model("sifa_biformer_nano", 5).backbone.downsample_layers[0], ConvStem)


@pytest.mark.parametrize("name", ["sifa_biformer_nano", "sifa_dilateformer_nano", "sifa_cswin_nano", "sifa_slide_nano",
                                  "sifa_dat_nano", "sifa_dpt_nano"])
def test_video_models_any_clip_length_and_size(name):
    model = video_sparse.build_model(name, num_classes=5).eval()
    with torch.no_grad():
        for t, h, w in ((1, 64, 64), (3, 50, 70), (8, 32, 48)):
            main, dual = model(torch.randn(2, 3, t, h, w))
            assert main.shape == dual.shape == (2, 5) and torch.isfinite(main).all()


@pytest.mark.parametrize("name", ["sifa_biformer_nano", "sifa_dilateformer_nano", "sifa_cswin_nano", "sifa_slide_nano",
                                  "sifa_dat_nano", "sifa_dpt_nano", "c2d_dat_nano", "c2d_dpt_nano"])
def test_every_trainable_parameter_of_the_video_models_gets_a_gradient(name):
    """DDP (without find_unused_parameters) waits for every trainable parameter's gradient."""
    model = video_sparse.build_model(name, num_classes=3)
    out = model(torch.randn(2, 3, 4, 32, 32))
    sum(o.sum() for o in (out if isinstance(out, tuple) else (out,))).backward()
    assert [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None] == []


@pytest.mark.parametrize("name", ["sifa_biformer_tiny", "sifa_dilateformer_tiny", "sifa_cswin_tiny", "sifa_slide_tiny",
                                  "sifa_dpt_tiny"])  # DAT's stages: tests/test_dat.py
def test_sifa_sits_after_the_attention_of_the_last_two_stages(name):
    model = video_sparse.build_model(name, num_classes=5)
    parts = model.backbone.stage_parts()
    for stage, (_, blocks) in enumerate(parts):
        assert all(isinstance(b.temporal, FrameSIFA) == (stage >= 2) for b in blocks)
    assert all(isinstance(b.temporal, FrameSIFA) for b in model.dual_blocks)
    baseline = video_sparse.build_model(name.replace("sifa_", "c2d_"), num_classes=5)
    assert not baseline.dual and all(b.temporal is None for _, blocks in baseline.backbone.stage_parts()
                                     for b in blocks)


@pytest.mark.parametrize("name", ["c2d_biformer_nano", "c2d_dilateformer_nano", "c2d_cswin_nano", "c2d_slide_nano",
                                  "c2d_dat_nano", "c2d_dpt_nano"])
def test_baselines_are_blind_to_frame_order(name):
    model = video_sparse.build_model(name, num_classes=4).eval()
    x = torch.randn(2, 3, 6, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x[:, :, torch.randperm(6)]), rtol=1e-4, atol=1e-5)


def test_sifa_transformer_sees_frame_order_and_its_baseline_does_not():
    """float64, so the baseline's reversed-clip logits agree to rounding (~1e-16) while SIFA's
    differ by far more once its zero-initialised layer scale has moved."""
    torch.manual_seed(0)
    x = torch.randn(1, 3, 6, 32, 32, dtype=torch.float64)
    gaps = {}
    for name in ("sifa_biformer_nano", "c2d_biformer_nano"):
        torch.manual_seed(0)
        model = video_sparse.build_model(name, num_classes=4).double().eval()
        for module in model.modules():
            if isinstance(module, FrameSIFA):
                torch.nn.init.constant_(module.gamma, 0.5)
        with torch.no_grad():
            out, flipped = model(x), model(x.flip(2))
        gaps[name] = ((out[0] if isinstance(out, tuple) else out) -
                      (flipped[0] if isinstance(flipped, tuple) else flipped)).abs().max().item()
    assert gaps["c2d_biformer_nano"] < 1e-13 < 1e-6 < gaps["sifa_biformer_nano"], gaps


def test_sifa_block_starts_as_the_identity():
    """Zero-initialised layer scale: an ImageNet-initialised backbone starts as it was trained."""
    block = FrameSIFA(8)
    x = torch.randn(2 * 3, 5, 6, 8)
    torch.testing.assert_close(block(x, 3), x, rtol=0, atol=0)
    torch.nn.init.constant_(block.gamma, 1.0)
    assert not torch.allclose(block(x, 3), x)


def test_layer_ids_cover_every_parameter_in_order():
    model = video_sparse.build_model("sifa_dilateformer_tiny", num_classes=5)
    ids = {name: model.layer_id(name) for name, _ in model.named_parameters()}
    assert ids["backbone.patch_embed.proj.0.weight"] == 0
    assert ids["backbone.stages.0.blocks.0.attn.qkv.weight"] == 1
    assert ids["backbone.stages.2.downsample.proj.0.weight"] == 4  # the merging into stage 4
    assert ids["dual_blocks.0.norm1.weight"] == 4 and ids["head.fc.weight"] == 5
    assert set(ids.values()) == set(range(model.num_lr_layers))


@pytest.mark.parametrize("mixer,cls", [("bra", BiLevelRoutingAttention), ("msda", MultiScaleDilatedAttention),
                                       ("cswin", CrossShapedWindowAttention), ("slide", SlideAttention)])
def test_hybrid_resnet_uses_the_mixer_in_gc_blocks_of_layers_3_and_4(mixer, cls):
    model = video_sparse.build_model("c2d_sifa_r50", num_classes=5, spatial_mixer=mixer)
    for layer in ("layer3", "layer4", "layer4_dual"):
        for i, block in enumerate(getattr(model, layer)):
            is_gc = i % 2 == 0
            assert isinstance(block.conv2, FrameAttention) == is_gc
            if is_gc:
                assert isinstance(block.conv2.attn, cls)
    assert not any(isinstance(b.conv2, FrameAttention) for b in model.layer2)
    assert model.layer3[0].conv2.stride == 2 and model.layer4_dual[0].conv2.stride == 1


@pytest.mark.parametrize("mixer,output", [("bra", "wo"), ("msda", "proj"), ("cswin", "proj"), ("slide", "proj")])
def test_small_hybrid_trains_a_step(mixer, output):
    model = video_sparse.build_model("sifa_small", num_classes=3, spatial_mixer=mixer)
    main, dual = model(torch.randn(2, 3, 4, 64, 64))
    (main.sum() + dual.sum()).backward()
    assert getattr(model.layer4[0].conv2.attn, output).weight.grad is not None


def test_bad_spatial_mixer_is_named():
    with pytest.raises(ValueError, match="spatial_mixer"):
        video_sparse.build_model("c2d_sifa_r50", num_classes=5, spatial_mixer="swin")


@pytest.mark.parametrize("model", [["model=sifa_biformer_nano"], ["model=c2d_dilateformer_nano"],
                                   ["model=sifa_cswin_nano"], ["model=sifa_dat_nano"], ["model=sifa_dpt_nano"],
                                   ["model=sifa_small", "model.spatial_mixer=msda"]])
def test_train_app_runs_the_new_models(model, tiny_overrides, tmp_path):
    train_in_process([*tiny_overrides, *model], tmp_path / "run")
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["num_videos"] == 10
