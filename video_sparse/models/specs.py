"""The hyper-parameters of every model family, one dataclass each, declared with
:func:`~video_sparse.options.option` (default, help, checks). A model is built from a spec
(``C2DResNet(spec, num_classes)``); ``models/zoo.py`` names the variants; the apps read the same
fields as the ``model.*`` keys. This module imports no torch, so the command line is checked in
a fraction of a second."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Tuple

from ..options import check_options, option

HEADS = ("pool", "spatial")


# The inter-frame operator's keys, shared by the C2D ResNets and the per-frame transformers.
def temporal_mixer_option():
    return option("sifa", "the inter-frame operator: sifa (correlation-weighted deformable 3x3 of frame t+1) | "
                  "msdeform (Deformable DETR's attention over the frames t+temporal_window, learned weights)",
                  choices=("sifa", "msdeform"))


def temporal_window_option():
    return option((-1, 0, 1), "msdeform: the frame offsets each frame attends to (its levels)")


def msdeform_head_dim_option():
    return option(32, "msdeform: channels per head", ge=1)


def msdeform_points_option():
    return option(4, "msdeform: sampling points per head and frame", ge=1)


def msdeform_offsets_option():
    return option("query", "msdeform: offsets linear in the query (Deformable DETR) | a 1x3x3 conv of the motion "
                  "map (SIFA)", choices=("query", "motion"))


class Spec:
    """Base of the families' specs: ``builder`` names the ``module:callable`` that takes
    ``(spec, num_classes)`` and returns the model."""

    builder: ClassVar[str]

    def __post_init__(self) -> None:
        for name, value in vars(self).items():  # lists (command line, YAML) become the declared tuples
            if isinstance(value, Sequence) and not isinstance(value, (str, tuple)):
                setattr(self, name, tuple(value))
        check_options(self, "model", type(self))


@dataclass
class C2DResNetSpec(Spec):
    """A 2D ResNet applied to every frame, with SIFA / global-context blocks and SIFA-Net's dual
    frame-skipping branch (:class:`~video_sparse.models.c2d.C2DResNet`)."""

    builder: ClassVar[str] = "video_sparse.models.c2d:C2DResNet"
    layers: Tuple[int, ...] = option((3, 4, 6, 3), "bottlenecks per stage", ge=1, length=4)
    widths: Tuple[int, ...] = option((64, 128, 256, 512), "bottleneck widths per stage (outputs are 4x wider)", ge=1,
                                     length=4)
    patterns: Tuple[str, ...] = option(("P", "P", "P", "P"), "per stage, block codes cycled over its blocks: P plain, "
                                       "G global context, S inter-frame: SIFA or temporal_mixer (SIFA-Net: "
                                       "[P, GS, GS, GS])", length=4)
    stem_width: int = option(64, "channels of the stem conv", ge=1)
    stem_temporal_kernel: int = option(1, "temporal kernel ts of the stem conv (1: no temporal mixing)", ge=1)
    stem_temporal_stride: int = option(1, "temporal stride of the stem conv", ge=1)
    stem_pool: bool = option(True, "keep the stem's 1x3x3 max-pool (total stride 4)")
    strides: Tuple[int, ...] = option((1, 2, 2, 2), "spatial stride of each stage's first block", ge=1, length=4)
    dual: bool = option(False, "SIFA-Net's frame-skipping branch (layer3 -> max over frame pairs -> layer4_dual "
                        "-> its own head)")
    dual_stride: int = option(1, "spatial stride of layer4_dual", ge=1)
    temporal: bool = option(True, "false switches the inter-frame operator, whichever temporal_mixer is, off in "
                            "every block (same parameters), to measure its cost (older runs' model.sifa)")
    temporal_mixer: str = temporal_mixer_option()
    temporal_window: Tuple[int, ...] = temporal_window_option()
    msdeform_head_dim: int = msdeform_head_dim_option()
    msdeform_points: int = msdeform_points_option()
    msdeform_offsets: str = msdeform_offsets_option()
    sifa_kernel: int = option(3, "side of SIFA's attended neighbourhood", ge=1)
    sifa_dilation: int = option(1, "dilation of the attended neighbourhood (official SIFA-Net: 1)", ge=1)
    sifa_groups: int = option(1, "channel groups with their own offsets", ge=1)
    sifa_normalize: str = option("none", "weights of the taps: none (official 1/C scale) | softmax",
                                 choices=("none", "softmax"))
    spatial_mixer: str = option("conv", "spatial mixer of the GC blocks of mixer_stages: conv (1x3x3) | bra "
                                "(BiFormer) | msda (DilateFormer) | cswin (CSWin) | slide (Slide), applied per frame",
                                choices=("conv", "bra", "msda", "cswin", "slide"))
    mixer_stages: Tuple[int, ...] = option((3, 4), "stages (1-based) whose GC blocks take spatial_mixer", ge=1, le=4)
    mixer_head_dim: int = option(32, "channels per attention head of spatial_mixer", ge=1)
    bra_n_win: int = option(7, "BRA: routing regions per side", ge=1)
    bra_topk: int = option(16, "BRA: regions each region attends to", ge=1)
    msda_dilations: Tuple[int, ...] = option((1, 2, 3, 4), "MSDA: one channel group per dilation", ge=1)
    cswin_split: int = option(7, "CSWin: stripe width (half the heads in vertical, half in horizontal stripes)", ge=1)
    head: str = option("pool", "pool: (T, H, W) average -> linear (official) | spatial: T average -> 3x3 convs "
                       "-> linear", choices=HEADS)
    head_width: int = option(128, "width of the spatial head", ge=1)
    dropout: float = option(0.5, "dropout before the classifiers", ge=0, lt=1)


@dataclass
class BiFormerSpec(Spec):
    """BiFormer image backbone (:class:`~video_sparse.models.biformer.BiFormer`)."""

    builder: ClassVar[str] = "video_sparse.models.biformer:BiFormer"
    depth: Tuple[int, ...] = option((2, 2, 8, 2), "blocks per stage", ge=1, length=4)
    embed_dim: Tuple[int, ...] = option((64, 128, 256, 512), "channels per stage", ge=1, length=4)
    mlp_ratio: float = option(3.0, "MLP width / channels", gt=0)
    n_win: int = option(7, "routing regions per side", ge=1)
    topks: Tuple[int, ...] = option((1, 4, 16, -2), "regions kept per stage (-2: global attention)", length=4)
    head_dim: int = option(32, "channels per head of BRA", ge=1)
    side_dwconv: int = option(5, "kernel of LePE, the depthwise conv on V", ge=0)
    downsample_strides: Tuple[int, ...] = option((2, 2, 2), "strides of the convs into stages 2-4", ge=1, length=3)
    drop_path_rate: float = option(0.0, "stochastic depth, linear from 0 over all blocks", ge=0, lt=1)


@dataclass
class DilateFormerSpec(Spec):
    """DilateFormer image backbone (:class:`~video_sparse.models.dilateformer.DilateFormer`)."""

    builder: ClassVar[str] = "video_sparse.models.dilateformer:DilateFormer"
    embed_dim: int = option(72, "channels of stage 1 (doubled per stage)", ge=1)
    depths: Tuple[int, ...] = option((2, 2, 6, 2), "blocks per stage", ge=1, length=4)
    num_heads: Tuple[int, ...] = option((3, 6, 12, 24), "attention heads per stage", ge=1, length=4)
    dilations: Tuple[int, ...] = option((1, 2, 3), "MSDA: one head group per dilation", ge=1)
    kernel_size: int = option(3, "MSDA: side of the attended neighbourhood", ge=1)
    dilate_attention: Tuple[bool, ...] = option((True, True, False, False), "per stage: MSDA (true) or global "
                                                "attention (false)", length=4)
    mlp_ratio: float = option(4.0, "MLP width / channels", gt=0)
    merge_strides: Tuple[int, ...] = option((2, 2, 2), "strides of the merging convs after stages 1-3", ge=1, length=3)
    stem_width: int = option(16, "width of the first patch-embedding conv (then 2x, 4x)", ge=1)
    drop_path_rate: float = option(0.1, "stochastic depth, linear from 0 over all blocks", ge=0, lt=1)


@dataclass
class CSWinSpec(Spec):
    """CSWin Transformer image backbone (:class:`~video_sparse.models.cswin.CSWin`)."""

    builder: ClassVar[str] = "video_sparse.models.cswin:CSWin"
    embed_dim: int = option(64, "channels of stage 1 (doubled per stage)", ge=1)
    depth: Tuple[int, ...] = option((1, 2, 21, 1), "blocks per stage", ge=1, length=4)
    split_size: Tuple[int, ...] = option((1, 2, 7, 7), "stripe width per stage (the last stage attends to the "
                                         "whole map)", ge=1, length=4)
    num_heads: Tuple[int, ...] = option((2, 4, 8, 16), "attention heads per stage (half per stripe direction)", ge=1,
                                        length=4)
    mlp_ratio: float = option(4.0, "MLP width / channels", gt=0)
    merge_strides: Tuple[int, ...] = option((2, 2, 2), "strides of the merging convs into stages 2-4", ge=1, length=3)
    drop_path_rate: float = option(0.0, "stochastic depth, linear from 0 over all blocks", ge=0, lt=1)


@dataclass
class SlideSwinSpec(Spec):
    """Slide-Swin image backbone (:class:`~video_sparse.models.slide_swin.SlideSwin`)."""

    builder: ClassVar[str] = "video_sparse.models.slide_swin:SlideSwin"
    embed_dim: int = option(96, "channels of stage 1 (doubled per stage)", ge=1)
    depths: Tuple[int, ...] = option((2, 2, 6, 2), "blocks per stage", ge=1, length=4)
    num_heads: Tuple[int, ...] = option((3, 6, 12, 24), "attention heads per stage", ge=1, length=4)
    patch_size: int = option(4, "side and stride of the patch embedding", ge=1)
    kernel_size: int = option(3, "Slide attention: side of the attended neighbourhood (official ka 3)", ge=1)
    slide_stages: int = option(2, "stages with Slide attention; the later ones attend to the whole map", ge=0, le=4)
    img_size: int = option(224, "input size the position-bias tables of the global stages are laid out for", ge=1)
    merge_strides: Tuple[int, ...] = option((2, 2, 2), "strides of the patch mergings after stages 1-3 (1 or 2)",
                                            ge=1, le=2, length=3)
    mlp_ratio: float = option(4.0, "MLP width / channels", gt=0)
    cpe: bool = option(False, "a residual depthwise 3x3 conv (conditional position encoding, as in BiFormer's and "
                       "DilateFormer's blocks) before every block; Slide-Swin has none")
    drop_path_rate: float = option(0.0, "stochastic depth, linear from 0 over all blocks", ge=0, lt=1)


@dataclass
class DATSpec(Spec):
    """DAT image backbone, CVPR version (:class:`~video_sparse.models.dat.DAT`)."""

    builder: ClassVar[str] = "video_sparse.models.dat:DAT"
    embed_dim: int = option(96, "channels of stage 1 (doubled per stage)", ge=1)
    stage_spec: Tuple[str, ...] = option(("LS", "LS", "LDLDLD", "LD"), "per stage, the attention of each block: L "
                                         "local window, S shifted window, D deformable", length=4)
    num_heads: Tuple[int, ...] = option((3, 6, 12, 24), "attention heads per stage", ge=1, length=4)
    groups: Tuple[int, ...] = option((1, 1, 3, 6), "per stage, the offset groups of its D blocks", ge=1, length=4)
    window_size: int = option(7, "side of the L / S windows (S shifts by half of it, rounded up)", ge=1)
    offset_range_factor: float = option(2.0, "D: offsets bounded to this many reference-grid cells", gt=0)
    offset_kernel: Tuple[int, ...] = option((9, 7, 5, 3), "per stage, the depthwise kernel of the offset network",
                                            ge=1, length=4)
    patch_size: int = option(4, "side and stride of the patch embedding", ge=1)
    merge_strides: Tuple[int, ...] = option((2, 2, 2), "strides of the 2x2 down-projections after stages 1-3 "
                                            "(1 or 2)", ge=1, le=2, length=3)
    img_size: int = option(224, "input size the D blocks' position tables and the S masks are laid out for", ge=1)
    lpu: bool = option(False, "DAT++'s local perception unit, a residual depthwise 3x3 conv, before every block "
                       "(off in the CVPR configurations)")
    conv_patches: bool = option(False, "overlapping 3x3 convolutions as the patch embedding (two, each of half its "
                                "stride, LayerNorm and GELU between) and the down-projections (the official "
                                "use_conv_patches; off in the CVPR configurations)")
    mlp_ratio: float = option(4.0, "MLP width / channels", gt=0)
    drop_path_rate: float = option(0.0, "stochastic depth, linear from 0 over all blocks", ge=0, lt=1)


@dataclass
class DPTSpec(Spec):
    """DPT image backbone: PVT with DePatch (:class:`~video_sparse.models.dpt.DPT`)."""

    builder: ClassVar[str] = "video_sparse.models.dpt:DPT"
    embed_dims: Tuple[int, ...] = option((64, 128, 320, 512), "channels per stage", ge=1, length=4)
    depths: Tuple[int, ...] = option((2, 2, 2, 2), "blocks per stage", ge=1, length=4)
    num_heads: Tuple[int, ...] = option((1, 2, 5, 8), "attention heads per stage", ge=1, length=4)
    mlp_ratios: Tuple[float, ...] = option((8.0, 8.0, 4.0, 4.0), "MLP width / channels per stage", gt=0, length=4)
    sr_ratios: Tuple[int, ...] = option((8, 4, 2, 1), "per stage, the factor keys and values are shrunk by", ge=1,
                                        length=4)
    patch_size: int = option(4, "side and stride of stage 1's conv patch embedding", ge=1)
    patch_points: int = option(3, "DePatch: samples per box side", ge=1)
    merge_strides: Tuple[int, ...] = option((2, 2, 2), "strides of the DePatch embeddings into stages 2-4 (1 or 2)",
                                            ge=1, le=2, length=3)
    img_size: int = option(224, "input size the position embeddings are laid out for", ge=1)
    cpe: bool = option(False, "a residual depthwise 3x3 conv (conditional position encoding, as in BiFormer's and "
                       "DilateFormer's blocks) before every block; PVT has none")
    drop_path_rate: float = option(0.0, "stochastic depth, linear from 0 over all blocks", ge=0, lt=1)


@dataclass
class PerFrameVideoSpec(Spec):
    """The video part of a per-frame pyramid transformer with SIFA
    (:class:`~video_sparse.models.sifa_transformer.SIFATransformer`)."""

    temporal_stages: Tuple[int, ...] = option((3, 4), "stages (1-based, as mixer_stages) whose blocks get the "
                                              "inter-frame operator after their attention; [] gives the order-blind "
                                              "per-frame baseline (older runs' sifa_stages counted from 0)", ge=1)
    temporal: bool = option(True, "false switches the inter-frame operator, whichever temporal_mixer is, off in "
                            "every block (same parameters), to measure its cost (older runs' model.sifa)")
    temporal_mixer: str = temporal_mixer_option()
    temporal_window: Tuple[int, ...] = temporal_window_option()
    msdeform_head_dim: int = msdeform_head_dim_option()
    msdeform_points: int = msdeform_points_option()
    msdeform_offsets: str = msdeform_offsets_option()
    sifa_kernel: int = option(3, "side of SIFA's attended neighbourhood", ge=1)
    sifa_dilation: int = option(1, "dilation of the attended neighbourhood", ge=1)
    dual: bool = option(True, "SIFA-Net's frame-skipping branch with its own head")
    head: str = option("pool", "pool: (T, H, W) average -> linear | spatial: T average -> 3x3 convs -> linear",
                       choices=HEADS)
    head_width: int = option(128, "width of the spatial head", ge=1)
    dropout: float = option(0.5, "dropout before the classifiers", ge=0, lt=1)
    conv_stem: bool = option(False, "BiFormer's convolutional stem (two stride-2 3x3 convs with BN, GELU) in place "
                                    "of the backbone's first patch embedding; image checkpoints load without theirs")


@dataclass
class SIFABiFormerSpec(PerFrameVideoSpec, BiFormerSpec):
    """BiFormer per frame + SIFA in the last stages + dual branch."""

    builder: ClassVar[str] = "video_sparse.models.sifa_transformer:sifa_biformer"


@dataclass
class SIFADilateFormerSpec(PerFrameVideoSpec, DilateFormerSpec):
    """DilateFormer per frame + SIFA in the last stages + dual branch."""

    builder: ClassVar[str] = "video_sparse.models.sifa_transformer:sifa_dilateformer"


@dataclass
class SIFACSWinSpec(PerFrameVideoSpec, CSWinSpec):
    """CSWin per frame + SIFA in the last stages + dual branch."""

    builder: ClassVar[str] = "video_sparse.models.sifa_transformer:sifa_cswin"


@dataclass
class SIFASlideSwinSpec(PerFrameVideoSpec, SlideSwinSpec):
    """Slide-Swin per frame + SIFA in the last stages + dual branch."""

    builder: ClassVar[str] = "video_sparse.models.sifa_transformer:sifa_slide_swin"


@dataclass
class SIFADATSpec(PerFrameVideoSpec, DATSpec):
    """DAT per frame + SIFA in the last stages + dual branch."""

    builder: ClassVar[str] = "video_sparse.models.sifa_transformer:sifa_dat"


@dataclass
class SIFADPTSpec(PerFrameVideoSpec, DPTSpec):
    """DPT per frame + SIFA in the last stages + dual branch."""

    builder: ClassVar[str] = "video_sparse.models.sifa_transformer:sifa_dpt"


# ----------------------------------------------------------------------------- pytorchvideo baselines
# The clip a baseline is sized for: its head averages the logits of windows of that clip's final map
# (the zoo's fully convolutional testing above it), globally on smaller inputs (video_sparse.models.ptv).
def clip_frames_option(default: int):
    return option(default, "frames of the clip the model is sized for (the zoo's): the head's pooling window", ge=1)


def crop_size_option(default: int):
    return option(default, "side of the clip the model is sized for (the zoo's): the head's pooling window", ge=1)


@dataclass
class X3DSpec(Spec):
    """X3D, built by pytorchvideo's ``create_x3d`` (:func:`~video_sparse.models.ptv.x3d`)."""

    builder: ClassVar[str] = "video_sparse.models.ptv:x3d"
    width_factor: float = option(2.0, "X3D's width expansion of the stages", gt=0)
    depth_factor: float = option(2.2, "X3D's depth expansion of the stages", gt=0)
    stem_width: int = option(12, "channels out of the stem (before width_factor)", ge=1)
    bottleneck_factor: float = option(2.25, "inner width / output width of the bottlenecks", gt=0)
    head_width: int = option(2048, "channels of the head's last 1x1x1 conv", ge=1)
    clip_frames: int = clip_frames_option(13)
    crop_size: int = crop_size_option(160)
    dropout: float = option(0.5, "dropout before the classifier", ge=0, lt=1)


PTV_RESNETS = ("slow", "c2d", "i3d", "slowfast", "r2plus1d", "csn")


@dataclass
class PTVResNetSpec(Spec):
    """pytorchvideo's 3D ResNets (Slow, C2D, I3D, SlowFast, R(2+1)D, CSN), built by its builders with
    the zoo's layouts (:func:`~video_sparse.models.ptv.resnet`)."""

    builder: ClassVar[str] = "video_sparse.models.ptv:resnet"
    arch: str = option("slow", "slow (temporal convs in res4-5) | c2d (none) | i3d | slowfast (two pathways from "
                       "one clip) | r2plus1d | csn (channel-separated)", choices=PTV_RESNETS)
    depth: int = option(50, "ResNet depth", choices=(50, 101, 152))
    width: int = option(64, "channels out of the stem (SlowFast: the slow pathway's; the fast one's are width / beta)",
                        ge=1)
    alpha: int = option(4, "slowfast: frames of the fast pathway per slow frame (the clip has T, the slow pathway "
                        "T / alpha evenly spaced)", ge=1)
    beta: int = option(8, "slowfast: channels of the slow pathway per fast channel", ge=1)
    clip_frames: int = clip_frames_option(8)
    crop_size: int = crop_size_option(224)
    dropout: float = option(0.5, "dropout before the classifier", ge=0, lt=1)


@dataclass
class MViTSpec(Spec):
    """Multiscale Vision Transformer, built by pytorchvideo's ``create_multiscale_vision_transformers``
    (:func:`~video_sparse.models.ptv.mvit`). Its position embeddings fix the clip: (frames, size)."""

    builder: ClassVar[str] = "video_sparse.models.ptv:mvit"
    frames: int = option(16, "frames of the input clip (the temporal position embedding's length)", ge=1)
    size: int = option(224, "side of the input clip (the spatial position embedding's grid is size / 4)", ge=4)
    depth: int = option(16, "transformer blocks", ge=1)
    embed_dim: int = option(96, "channels of the patch embedding (doubled at each of `stages`)", ge=1)
    num_heads: int = option(1, "attention heads of the first stage (doubled at each of `stages`)", ge=1)
    stages: Tuple[int, ...] = option((1, 3, 14), "blocks that start a stage: queries pooled 2x2, channels and "
                                     "heads doubled", ge=1)
    kv_stride: int = option(8, "spatial stride of the key/value pooling in the first stage (halved at each stage)",
                            ge=1)
    drop_path_rate: float = option(0.0, "stochastic depth, linear from 0 over the blocks", ge=0, lt=1)
    dropout: float = option(0.5, "dropout before the classifier", ge=0, lt=1)
