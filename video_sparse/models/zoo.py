"""The named models: each a family's spec with this variant's values and its default number of
classes. ``video_sparse.build_model(name, num_classes, **overrides)`` builds them; ``model=<name>``
selects them on the command line (every field of the spec is a ``model.*`` key)."""
from __future__ import annotations

from .registry import register_variant
from .specs import (BiFormerSpec, C2DResNetSpec, CSWinSpec, DATSpec, DilateFormerSpec, DPTSpec, MViTSpec, PTVResNetSpec,
                    SIFABiFormerSpec, SIFACSWinSpec, SIFADATSpec, SIFADilateFormerSpec, SIFADPTSpec, SIFASlideSwinSpec,
                    SlideSwinSpec, X3DSpec)

# ----------------------------------------------------------------------------- C2D / SIFA-Net ResNets
# Stages at strides 4, 4, 8, 8 of a 64 px clip: SIFA runs on 16x16 and 8x8 maps, where a step of the
# motion benchmark's actor spans a cell or two (at strides 8/16 it is a fraction of one, and
# sifa_small does not learn direction in a few epochs).
SMALL = dict(layers=(1, 1, 1, 1), widths=(8, 16, 32, 64), stem_width=16, strides=(1, 1, 2, 1), head="spatial",
             head_width=64, dropout=0.0)
SIFA_NET = dict(patterns=("P", "GS", "GS", "GS"), dual=True, stem_temporal_kernel=4, stem_temporal_stride=4)

register_variant("c2d_small", C2DResNetSpec(**SMALL), 10,
                 "Small order-blind C2D baseline for the motion benchmark (CPU, 64x64 clips): the last stage has "
                 "stride 8 and the spatial head sees the time-averaged map, so the motion's trail is visible but "
                 "not its direction.")
register_variant("sifa_small", C2DResNetSpec(**{**SMALL, "patterns": ("P", "S", "S", "G"), "dual": True,
                                                "sifa_dilation": 2, "mixer_head_dim": 16, "bra_n_win": 4,
                                                "bra_topk": 4}), 10,
                 "c2d_small + SIFA blocks (layers 2-3), a global-context block (layer 4) and the dual "
                 "frame-skipping branch. SIFA dilation 2: the attended 3x3 neighbourhood spans +-2 cells, the "
                 "benchmark's per-step displacement at stride 4. The default model of python train.py.")
register_variant("msdeform_small", C2DResNetSpec(**{**SMALL, "patterns": ("P", "S", "S", "G"), "dual": True,
                                                    "temporal_mixer": "msdeform", "msdeform_head_dim": 16}), 10,
                 "sifa_small with Deformable DETR's attention across frames t-1, t, t+1 in place of SIFA (16 "
                 "channels per head, as sifa_small's attention heads).")
register_variant("c2d_r50", C2DResNetSpec(stem_temporal_kernel=4, stem_temporal_stride=4), 400,
                 "C2D ResNet-50 with SIFA-Net's stem (ts = 4): the baseline without SIFA/GC or dual branch.")
register_variant("c2d_sifa_r50", C2DResNetSpec(**SIFA_NET), 400,
                 "SIFA-Net ResNet-50, official configuration (43,040,928 trainable parameters at 400 classes).")
register_variant("c2d_msdeform_r50", C2DResNetSpec(**SIFA_NET, temporal_mixer="msdeform"), 400,
                 "SIFA-Net ResNet-50 with MSDeformAttn across frames t-1, t, t+1 in its SIFA blocks (4 points per "
                 "head and frame, 32 channels per head).")
register_variant("c2d_sifa_r101", C2DResNetSpec(**SIFA_NET, layers=(3, 4, 23, 3)), 400,
                 "SIFA-Net ResNet-101, official configuration (63,554,272 trainable parameters at 400 classes).")

# ----------------------------------------------------------------------------- image backbones
BIFORMER = {"tiny": dict(depth=(2, 2, 8, 2), embed_dim=(64, 128, 256, 512)),
            "small": dict(depth=(4, 4, 18, 4), embed_dim=(64, 128, 256, 512)),
            "base": dict(depth=(4, 4, 18, 4), embed_dim=(96, 192, 384, 768))}
DILATEFORMER = {"tiny": dict(embed_dim=72, depths=(2, 2, 6, 2)),
                "small": dict(embed_dim=72, depths=(3, 5, 8, 3)),
                "base": dict(embed_dim=96, depths=(4, 8, 10, 3))}
for size, params in (("tiny", "13.14"), ("small", "25.54"), ("base", "56.80")):
    register_variant(f"biformer_{size}", BiFormerSpec(**BIFORMER[size]), 1000,
                     f"BiFormer-{size[0].upper()} image backbone, official configuration ({params} M parameters at "
                     "1000 classes); input (N, 3, H, W).")
for size, params in (("tiny", "17.24"), ("small", "24.06"), ("base", "47.43")):
    register_variant(f"dilateformer_{size}", DilateFormerSpec(**DILATEFORMER[size]), 1000,
                     f"DilateFormer-{size[0].upper()} image backbone, official configuration ({params} M parameters "
                     "at 1000 classes); input (N, 3, H, W).")
CSWIN = {"tiny": dict(embed_dim=64, depth=(1, 2, 21, 1), num_heads=(2, 4, 8, 16)),
         "small": dict(embed_dim=64, depth=(2, 4, 32, 2), num_heads=(2, 4, 8, 16)),
         "base": dict(embed_dim=96, depth=(2, 4, 32, 2), num_heads=(4, 8, 16, 32))}
for size, params in (("tiny", "22.32"), ("small", "34.64"), ("base", "77.38")):
    register_variant(f"cswin_{size}", CSWinSpec(**CSWIN[size]), 1000,
                     f"CSWin-{size[0].upper()} image backbone, official configuration ({params} M parameters at "
                     "1000 classes); input (N, 3, H, W), any size.")
SLIDE_SWIN = {"tiny": dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24)),
              "small": dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24)),
              "base": dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32))}
for size, params in (("tiny", "28.34"), ("small", "49.74"), ("base", "87.94")):
    register_variant(f"slide_swin_{size}", SlideSwinSpec(**SLIDE_SWIN[size]), 1000,
                     f"Slide-Swin-{size[0].upper()} image backbone, official configuration ({params} M trainable "
                     "parameters at 1000 classes); input (N, 3, H, W), any size.")
DAT = {"tiny": dict(embed_dim=96, stage_spec=("LS", "LS", "LDLDLD", "LD"), num_heads=(3, 6, 12, 24), groups=(1, 1, 3, 6)),
       "small": dict(embed_dim=96, stage_spec=("LS", "LS", "LD" * 9, "LD"), num_heads=(3, 6, 12, 24), groups=(1, 1, 3, 6)),
       "base": dict(embed_dim=128, stage_spec=("LS", "LS", "LD" * 9, "LD"), num_heads=(4, 8, 16, 32),
                    groups=(1, 1, 4, 8))}
for size, params in (("tiny", "28.32"), ("small", "49.70"), ("base", "87.88")):
    register_variant(f"dat_{size}", DATSpec(**DAT[size]), 1000,
                     f"DAT-{size[0].upper()} image backbone, CVPR version, official configuration ({params} M parameters "
                     "at 1000 classes); input (N, 3, H, W), any size.")
DPT = {"tiny": dict(depths=(2, 2, 2, 2)), "small": dict(depths=(3, 4, 6, 3)), "medium": dict(depths=(3, 4, 18, 3))}
for size, params in (("tiny", "15.15"), ("small", "26.41"), ("medium", "46.13")):
    register_variant(f"dpt_{size}", DPTSpec(**DPT[size]), 1000,
                     f"DPT-{size[0].upper()} image backbone (PVT with deformable patches), official configuration "
                     f"({params} M parameters at 1000 classes); input (N, 3, H, W), any size.")

# ----------------------------------------------------------------------------- per-frame transformers + SIFA
ORDER_BLIND = dict(temporal_stages=(), dual=False)
for size in ("tiny", "small"):
    register_variant(f"sifa_biformer_{size}", SIFABiFormerSpec(**BIFORMER[size], drop_path_rate=0.1), 400,
                     f"BiFormer-{size[0].upper()} per frame + SIFA after the attention of stages 3-4 + dual branch.")
    register_variant(f"sifa_dilateformer_{size}", SIFADilateFormerSpec(**DILATEFORMER[size]), 400,
                     f"DilateFormer-{size[0].upper()} per frame + SIFA after the attention of stages 3-4 + dual "
                     "branch.")
    register_variant(f"sifa_cswin_{size}", SIFACSWinSpec(**CSWIN[size], drop_path_rate=0.1), 400,
                     f"CSWin-{size[0].upper()} per frame + SIFA after the attention of stages 3-4 + dual branch.")
    register_variant(f"sifa_slide_{size}", SIFASlideSwinSpec(**SLIDE_SWIN[size], drop_path_rate=0.1), 400,
                     f"Slide-Swin-{size[0].upper()} per frame + SIFA after the attention of stages 3-4 + dual "
                     "branch.")
    register_variant(f"sifa_dat_{size}", SIFADATSpec(**DAT[size], drop_path_rate=0.1), 400,
                     f"DAT-{size[0].upper()} per frame + SIFA after the attention of stages 3-4 + dual branch.")
    register_variant(f"sifa_dpt_{size}", SIFADPTSpec(**DPT[size], drop_path_rate=0.1), 400,
                     f"DPT-{size[0].upper()} per frame + SIFA after the attention of stages 3-4 + dual branch.")
register_variant("c2d_dpt_tiny", SIFADPTSpec(**DPT["tiny"], drop_path_rate=0.1, **ORDER_BLIND), 400,
                 "DPT-T per frame, order-blind: the baseline of sifa_dpt_tiny.")
register_variant("c2d_dat_tiny", SIFADATSpec(**DAT["tiny"], drop_path_rate=0.1, **ORDER_BLIND), 400,
                 "DAT-T per frame, order-blind: the baseline of sifa_dat_tiny.")
register_variant("c2d_slide_tiny", SIFASlideSwinSpec(**SLIDE_SWIN["tiny"], drop_path_rate=0.1, **ORDER_BLIND), 400,
                 "Slide-Swin-T per frame, order-blind: the baseline of sifa_slide_tiny.")
register_variant("c2d_cswin_tiny", SIFACSWinSpec(**CSWIN["tiny"], drop_path_rate=0.1, **ORDER_BLIND), 400,
                 "CSWin-T per frame, order-blind: the baseline of sifa_cswin_tiny.")
register_variant("c2d_biformer_tiny", SIFABiFormerSpec(**BIFORMER["tiny"], drop_path_rate=0.1, **ORDER_BLIND), 400,
                 "BiFormer-T per frame, order-blind (no SIFA, no dual branch): the baseline of sifa_biformer_tiny.")
register_variant("c2d_dilateformer_tiny", SIFADilateFormerSpec(**DILATEFORMER["tiny"], **ORDER_BLIND), 400,
                 "DilateFormer-T per frame, order-blind: the baseline of sifa_dilateformer_tiny.")

# CPU sizes for the motion benchmark (64 px clips): stride-4 embedding, then 16/16/16/8 maps, so that
# SIFA (stages 3-4) runs on 16x16 and 8x8 maps like sifa_small's.
NANO_VIDEO = dict(head="spatial", head_width=64, dropout=0.0, sifa_dilation=2)
BIFORMER_NANO = dict(depth=(1, 1, 1, 1), embed_dim=(16, 32, 64, 64), n_win=4, topks=(1, 4, 4, -2), head_dim=16,
                     downsample_strides=(1, 1, 2), **NANO_VIDEO)
DILATEFORMER_NANO = dict(embed_dim=12, depths=(1, 1, 1, 1), num_heads=(3, 3, 6, 6), merge_strides=(1, 1, 2),
                         stem_width=8, drop_path_rate=0.0, **NANO_VIDEO)
# CSWin with BiFormer's convolutional stem (conv_stem), as BiFormer's and DilateFormer's nanos have: with
# its 7x7 patch embedding it learns the motions but not rotation's direction (runs: docs/motion.md).
CSWIN_NANO = dict(embed_dim=16, depth=(1, 1, 1, 1), split_size=(2, 2, 4, 8), num_heads=(2, 2, 4, 4), mlp_ratio=2.0,
                  merge_strides=(1, 1, 2), conv_stem=True, **NANO_VIDEO)
register_variant("sifa_cswin_nano", SIFACSWinSpec(**CSWIN_NANO), 10,
                 "CPU-sized SIFA-CSWin for the motion benchmark (64 px clips).")
register_variant("c2d_cswin_nano", SIFACSWinSpec(**CSWIN_NANO, **ORDER_BLIND), 10,
                 "sifa_cswin_nano without SIFA and the dual branch: order-blind.")
# Slide-Swin with Swin's 4x4 embedding and its first two mergings at stride 1 (same parameters): the
# 16/16/16/8 maps of the other nanos, and a depthwise 3x3 conv before every block (cpe), as DPT_NANO.
# Without it the nano learns the motions but not their direction; with it, it does at lr 2.5e-4 (runs:
# docs/motion.md, docs/benchmarks.md).
SLIDE_NANO = dict(embed_dim=16, depths=(1, 1, 1, 1), num_heads=(2, 2, 4, 4), patch_size=4, merge_strides=(1, 1, 2),
                  img_size=64, cpe=True, **NANO_VIDEO)
register_variant("sifa_slide_nano", SIFASlideSwinSpec(**SLIDE_NANO), 10,
                 "CPU-sized SIFA-Slide-Swin for the motion benchmark (64 px clips).")
register_variant("c2d_slide_nano", SIFASlideSwinSpec(**SLIDE_NANO, **ORDER_BLIND), 10,
                 "sifa_slide_nano without SIFA and the dual branch: order-blind.")
# DAT with windows of 8 on the 16x16 maps (one L, one S block), deformable attention in stages 3-4, and
# DAT++'s local perception units: without them (the CVPR blocks, no convolution after the embedding) the
# nano learns the motions but not their direction (runs: docs/benchmarks.md), as sifa_slide_nano;
# BiFormer's and DilateFormer's blocks have the same depthwise 3x3 conv.
DAT_NANO = dict(embed_dim=16, stage_spec=("L", "S", "D", "D"), num_heads=(2, 2, 4, 4), groups=(1, 1, 2, 2),
                window_size=8, merge_strides=(1, 1, 2), img_size=64, mlp_ratio=2.0, lpu=True, **NANO_VIDEO)
register_variant("sifa_dat_nano", SIFADATSpec(**DAT_NANO), 10,
                 "CPU-sized SIFA-DAT for the motion benchmark (64 px clips).")
register_variant("c2d_dat_nano", SIFADATSpec(**DAT_NANO, **ORDER_BLIND), 10,
                 "sifa_dat_nano without SIFA and the dual branch: order-blind.")
# DPT with DePatch at strides 1, 1, 2 (the 16/16/16/8 maps), keys and values shrunk to 4x4 / 8x8 / 8x8 / 8x8,
# and a depthwise 3x3 conv before every block (cpe), for the reason DAT_NANO has its local perception units.
DPT_NANO = dict(embed_dims=(16, 32, 64, 128), depths=(1, 1, 1, 1), num_heads=(1, 2, 4, 8), mlp_ratios=(4, 4, 4, 4),
                sr_ratios=(4, 2, 2, 1), merge_strides=(1, 1, 2), img_size=64, cpe=True, **NANO_VIDEO)
register_variant("sifa_dpt_nano", SIFADPTSpec(**DPT_NANO), 10,
                 "CPU-sized SIFA-DPT for the motion benchmark (64 px clips).")
register_variant("c2d_dpt_nano", SIFADPTSpec(**DPT_NANO, **ORDER_BLIND), 10,
                 "sifa_dpt_nano without SIFA and the dual branch: order-blind.")
register_variant("sifa_biformer_nano", SIFABiFormerSpec(**BIFORMER_NANO), 10,
                 "CPU-sized SIFA-BiFormer for the motion benchmark (64 px clips).")
register_variant("c2d_biformer_nano", SIFABiFormerSpec(**BIFORMER_NANO, **ORDER_BLIND), 10,
                 "sifa_biformer_nano without SIFA and the dual branch: order-blind.")
register_variant("sifa_dilateformer_nano", SIFADilateFormerSpec(**DILATEFORMER_NANO), 10,
                 "CPU-sized SIFA-DilateFormer for the motion benchmark (64 px clips).")
register_variant("c2d_dilateformer_nano", SIFADilateFormerSpec(**DILATEFORMER_NANO, **ORDER_BLIND), 10,
                 "sifa_dilateformer_nano without SIFA and the dual branch: order-blind.")

# ----------------------------------------------------------------------------- pytorchvideo baselines
# The Kinetics-400 zoo's architectures (pytorchvideo.models.hub), built by pytorchvideo's builders
# (models/ptv.py); clip_frames / crop_size are each zoo model's clip, the eval protocols are the
# conf/experiment/ptv_<name>_k400.yaml presets.
PTV_ZOO = {
    "x3d_xs": (X3DSpec(clip_frames=4, crop_size=160), "X3D-XS (4x12 clips at 160 px; zoo top-1 69.12)"),
    "x3d_s": (X3DSpec(clip_frames=13, crop_size=160), "X3D-S (13x6 clips at 160 px; zoo top-1 73.33)"),
    "x3d_m": (X3DSpec(clip_frames=16, crop_size=224), "X3D-M (16x5 clips at 224 px; zoo top-1 75.94)"),
    "slow_r50": (PTVResNetSpec(arch="slow"), "Slow-only R50 (8x8 clips; zoo top-1 74.58)"),
    "slowfast_r50": (PTVResNetSpec(arch="slowfast", clip_frames=32),
                     "SlowFast R50 (32x2 clips, alpha 4: slow 8 frames, fast 32; zoo top-1 76.94)"),
    "ptv_c2d_r50": (PTVResNetSpec(arch="c2d"), "pytorchvideo's C2D R50 (8x8 clips; zoo top-1 71.46)"),
    "i3d_r50": (PTVResNetSpec(arch="i3d"), "I3D R50 (8x8 clips; zoo top-1 73.27)"),
    "r2plus1d_r50": (PTVResNetSpec(arch="r2plus1d", clip_frames=16), "R(2+1)D R50 (16x4 clips; zoo top-1 76.01)"),
    "csn_r101": (PTVResNetSpec(arch="csn", depth=101, clip_frames=32, dropout=0.0),
                 "CSN R101 (32x2 clips; zoo top-1 77.00)"),
    "mvit_base_16x4": (MViTSpec(), "MViT-B 16x4 (16x4 clips at 224 px; zoo top-1 78.9)"),
}
for name, (spec, doc) in PTV_ZOO.items():
    register_variant(name, spec, 400, f"{doc}, pytorchvideo's Kinetics-400 zoo architecture, pytorchvideo's builder.")

# CPU sizes for the motion benchmark (4x64 px clips): the same builders, narrow (stem width 8) and,
# for X3D and MViT, shallow. SlowFast takes alpha 2 there: its slow pathway sees 2 of the 4 frames.
NANO_CLIP = dict(clip_frames=4, crop_size=64, dropout=0.0)
register_variant("x3d_nano", X3DSpec(width_factor=1.0, depth_factor=1.0, head_width=256, **NANO_CLIP), 10,
                 "CPU-sized X3D for the motion benchmark (width and depth factors 1, head 256).")
for arch, name in (("slow", "slow_nano"), ("c2d", "ptv_c2d_nano"), ("i3d", "i3d_nano"), ("r2plus1d", "r2plus1d_nano"),
                   ("csn", "csn_nano")):
    register_variant(name, PTVResNetSpec(arch=arch, width=8, **NANO_CLIP), 10,
                     f"CPU-sized pytorchvideo {arch} R50 for the motion benchmark (stem width 8).")
register_variant("slowfast_nano", PTVResNetSpec(arch="slowfast", width=16, alpha=2, **NANO_CLIP), 10,
                 "CPU-sized SlowFast R50 for the motion benchmark (slow stem width 16, fast 2, alpha 2).")
register_variant("mvit_nano", MViTSpec(frames=4, size=64, depth=4, embed_dim=32, stages=(1, 2, 3), kv_stride=2,
                                       dropout=0.0), 10,
                 "CPU-sized MViT for the motion benchmark (4x64 px clips, 4 blocks, width 32).")
