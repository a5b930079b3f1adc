"""Per-frame pyramid transformers with SIFA: the SIFA-Transformer design on BiFormer, DilateFormer,
CSWin, Slide-Swin, DAT and DPT.

Every frame goes through the image backbone (time folded into the batch); in the blocks of the
last stages (``temporal_stages``) a :class:`~video_sparse.layers.sifa.FrameSIFA` follows the spatial
attention, so each position also attends to a deformable neighbourhood of the next frame (or, with
``temporal_mixer=msdeform``, a :class:`~video_sparse.layers.temporal_msdeform.FrameMSDeform`: learned
points and weights in the neighbouring frames). With
``dual``, SIFA-Net's frame-skipping branch: the input of the last stage, max-pooled over pairs of
frames, runs through a copy of the last stage (``dual_downsample``, ``dual_blocks``, ``dual_norm``)
into its own head. Heads average over time first (order-blind), as in SIFA-Net.

State dict: ``backbone.*`` holds the image model's names, so an official ImageNet checkpoint maps
in by prefix (:meth:`SIFATransformer.image_state_to_video`, used by ``load_pretrained``).
"""
from __future__ import annotations

import copy
import torch
import torch.nn as nn
from einops import rearrange

from ..layers.block import attach_temporal, run_stage
from ..layers.frame_skip import skip_frames
from ..layers.heads import build_head
from ..layers.sifa import FrameSIFA
from ..layers.stem import ConvStem
from ..layers.temporal_msdeform import FrameMSDeform
from .biformer import BiFormer
from .contract import VideoModel
from .cswin import CSWin
from .dat import DAT
from .dpt import DPT
from .slide_swin import SlideSwin
from .dilateformer import DilateFormer
from .pyramid import norm_map
from .specs import (PerFrameVideoSpec, SIFABiFormerSpec, SIFACSWinSpec, SIFADATSpec, SIFADilateFormerSpec, SIFADPTSpec,
                    SIFASlideSwinSpec)


class SIFATransformer(VideoModel):
    """Video model around an image pyramid transformer.

    Args:
        backbone: built with ``num_classes=0``; must provide ``stage_parts()`` (per stage, the
            module bringing the map to the stage's resolution and the stage's blocks: a list of
            blocks taking ``(x, frames)`` with a ``temporal`` hook, or a stage module taking
            ``(x, frames)`` with ``attach_temporal``; see :func:`~video_sparse.layers.block.run_stage`),
            ``norm`` / ``final_norm``, ``head`` (the classifier, dropped from image checkpoints) and
            ``num_features``; optionally ``internal_name`` (official state_dict key -> module path).
        spec: the video options (:class:`~video_sparse.models.specs.PerFrameVideoSpec`): the
            stages with SIFA (``()``: the order-blind per-frame baseline), SIFA's neighbourhood,
            the dual branch, the heads.
    Input ``(N, 3, T, H, W)``; output logits ``(N, num_classes)`` or ``(main, dual)``.
    """

    def __init__(self, backbone: nn.Module, spec: PerFrameVideoSpec, num_classes: int):
        super().__init__()
        self.backbone = backbone
        self.stem_name = self._backbone_name(backbone.stage_parts()[0][0])
        if spec.conv_stem:
            convs = [m for m in backbone.get_submodule(self.stem_name).modules() if isinstance(m, nn.Conv2d)]
            backbone.set_submodule(self.stem_name, ConvStem(convs[-1].out_channels))
        self.conv_stem = spec.conv_stem
        parts = backbone.stage_parts()

        def temporal(dim: int) -> nn.Module:
            if spec.temporal_mixer == "sifa":
                return FrameSIFA(dim, spec.sifa_kernel, spec.sifa_dilation, sifa=spec.temporal)
            return FrameMSDeform(dim, spec.msdeform_head_dim, spec.msdeform_points, spec.temporal_window,
                                 spec.msdeform_offsets, enabled=spec.temporal)
        for s in spec.temporal_stages:
            if not 1 <= s <= len(parts):
                raise ValueError(f"temporal_stages: stage {s} does not exist (1..{len(parts)})")
            attach_temporal(parts[s - 1][1], temporal)
        channels = backbone.num_features
        self.head = build_head(spec.head, channels, num_classes, spec.head_width, spec.dropout)
        self.dual = spec.dual
        if spec.dual:
            self.dual_downsample = copy.deepcopy(parts[-1][0])
            self.dual_blocks = copy.deepcopy(parts[-1][1])
            self.dual_norm = copy.deepcopy(backbone.norm)
            self.head_dual = build_head(spec.head, channels, num_classes, spec.head_width, spec.dropout)

    num_lr_layers = 6  # embedding, four stages, heads: the depth scale of layer-wise lr decay

    def layer_id(self, param_name: str) -> int:
        """Depth for layer-wise lr decay: 0 the first embedding, 1-4 the stages (each with the
        down-sampling into it; the dual branch with the last), 5 the final norms and heads."""
        if param_name.startswith(("head", "dual_norm")):
            return 5
        if param_name.startswith("dual_"):
            return 4
        name = param_name.removeprefix("backbone.")
        for stage, (down, blocks) in enumerate(self.backbone.stage_parts()):
            if name.startswith(self._backbone_name(blocks) + "."):
                return stage + 1
            if name.startswith(self._backbone_name(down) + "."):
                return 0 if stage == 0 else stage + 1
        return 5

    def _backbone_name(self, module: nn.Module) -> str:
        return next(name for name, m in self.backbone.named_modules() if m is module)

    def image_state_to_video(self, state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
        """An image checkpoint of the backbone (official names) -> this model's names: prefix
        ``backbone.``, copy the last stage into the dual branch, drop the ImageNet classifier (and
        the patch embedding, replaced by ``conv_stem``).
        Returns the converted state and the dropped keys."""
        out, dropped = {}, []
        dual_sources = {}
        if self.dual:
            down, blocks = self.backbone.stage_parts()[-1]
            dual_sources = {self._backbone_name(down) + ".": "dual_downsample.",
                            self._backbone_name(blocks) + ".": "dual_blocks.",
                            self._backbone_name(self.backbone.norm) + ".": "dual_norm."}
        classifier = self._backbone_name(self.backbone.head) + "."
        internal_name = getattr(self.backbone, "internal_name", lambda key: key)  # DPT's pos_embedK
        for k, v in state.items():
            if k.startswith(classifier) or self.conv_stem and internal_name(k).startswith(self.stem_name + "."):
                dropped.append(k)
                continue
            out["backbone." + k] = v
            for src, dst in dual_sources.items():
                if internal_name(k).startswith(src):
                    out[dst + internal_name(k)[len(src):]] = v
        return out, sorted(dropped)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if x.ndim != 5:
            raise ValueError(f"expected a clip batch (N, 3, T, H, W), got shape {tuple(x.shape)}")
        N, T = x.shape[0], x.shape[2]
        x = rearrange(x, "n c t h w -> (n t) c h w")
        parts = self.backbone.stage_parts()
        for down, blocks in parts[:-1]:
            x = run_stage(down, blocks, x, T)
        main = self.backbone.final_norm(run_stage(*parts[-1], x, T))
        logits = self.head(rearrange(main, "(n t) c h w -> n c t h w", n=N))
        if not self.dual:
            return logits
        skipped = skip_frames(rearrange(x, "(n t) c h w -> n c t h w", n=N))
        t_skip = skipped.shape[2]
        dual = run_stage(self.dual_downsample, self.dual_blocks, rearrange(skipped, "n c t h w -> (n t) c h w"), t_skip)
        dual = norm_map(self.dual_norm, dual)
        return logits, self.head_dual(rearrange(dual, "(n t) c h w -> n c t h w", n=N))


def sifa_biformer(spec: SIFABiFormerSpec, num_classes: int) -> SIFATransformer:
    """BiFormer (the spec's backbone fields) per frame, in a :class:`SIFATransformer`."""
    return SIFATransformer(BiFormer(spec, num_classes=0), spec, num_classes)


def sifa_dilateformer(spec: SIFADilateFormerSpec, num_classes: int) -> SIFATransformer:
    """DilateFormer (the spec's backbone fields) per frame, in a :class:`SIFATransformer`."""
    return SIFATransformer(DilateFormer(spec, num_classes=0), spec, num_classes)


def sifa_cswin(spec: SIFACSWinSpec, num_classes: int) -> SIFATransformer:
    """CSWin (the spec's backbone fields) per frame, in a :class:`SIFATransformer`."""
    return SIFATransformer(CSWin(spec, num_classes=0), spec, num_classes)


def sifa_slide_swin(spec: SIFASlideSwinSpec, num_classes: int) -> SIFATransformer:
    """Slide-Swin (the spec's backbone fields) per frame, in a :class:`SIFATransformer`."""
    return SIFATransformer(SlideSwin(spec, num_classes=0), spec, num_classes)


def sifa_dat(spec: SIFADATSpec, num_classes: int) -> SIFATransformer:
    """DAT (the spec's backbone fields) per frame, in a :class:`SIFATransformer`."""
    return SIFATransformer(DAT(spec, num_classes=0), spec, num_classes)


def sifa_dpt(spec: SIFADPTSpec, num_classes: int) -> SIFATransformer:
    """DPT (the spec's backbone fields) per frame, in a :class:`SIFATransformer`. The heads pool
    the last map, so PVT's class token (kept so that official checkpoints load) is frozen: a
    trainable parameter without gradient would stall DDP."""
    backbone = DPT(spec, num_classes=0)
    backbone.cls_token.requires_grad_(False)
    return SIFATransformer(backbone, spec, num_classes)
