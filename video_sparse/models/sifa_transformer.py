"""Per-frame pyramid transformers with SIFA: the SIFA-Transformer design on BiFormer and DilateFormer.

Every frame goes through the image backbone (time folded into the batch); in the blocks of the
last stages (``sifa_stages``) a :class:`~video_sparse.layers.sifa.FrameSIFA` follows the spatial
attention, so each position also attends to a deformable neighbourhood of the next frame. With
``dual``, SIFA-Net's frame-skipping branch: the input of the last stage, max-pooled over pairs of
frames, runs through a copy of the last stage (``dual_downsample``, ``dual_blocks``, ``dual_norm``)
into its own head. Heads average over time first (order-blind), as in SIFA-Net.

State dict: ``backbone.*`` holds the image model's names, so an official ImageNet checkpoint maps
in by prefix (:meth:`SIFATransformer.image_state_to_video`, used by ``load_pretrained``).
"""
from __future__ import annotations

import copy
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from ..layers.heads import PoolHead, TemporalMeanConvHead
from ..layers.sifa import FrameSIFA
from .biformer import BIFORMER_CONFIGS, BiFormer
from .dilateformer import DILATEFORMER_CONFIGS, DilateFormer
from .registry import register_model


class SIFATransformer(nn.Module):
    """Video model around an image pyramid transformer.

    Args:
        backbone: built with ``num_classes=0``; must provide ``stage_parts()`` (per stage, the
            module bringing the map to the stage's resolution and the stage's blocks, which take
            ``(x, frames)`` and have a ``temporal`` hook), ``norm`` / ``final_norm`` and
            ``num_features``.
        sifa_stages: stages (0-based) whose blocks get SIFA after their attention; ``()`` gives
            the order-blind per-frame (C2D) baseline.
        sifa_kernel, sifa_dilation: of SIFA. sifa: False switches SIFA off (same parameters).
        dual: add the frame-skipping branch and its head. head: ``"pool"`` (average over T, H, W
            -> linear) or ``"spatial"`` (average over T -> 3x3 convs -> linear); head_width of it.
        dropout: before the classifiers.
    Input ``(N, 3, T, H, W)``; output logits ``(N, num_classes)`` or ``(main, dual)``.
    """

    def __init__(self, backbone: nn.Module, num_classes: int, sifa_stages: Sequence[int] = (2, 3),
                 sifa_kernel: int = 3, sifa_dilation: int = 1, sifa: bool = True, dual: bool = True,
                 head: str = "pool", head_width: int = 128, dropout: float = 0.5):
        super().__init__()
        if head not in ("pool", "spatial"):
            raise ValueError(f"head must be 'pool' or 'spatial', got {head!r}")
        self.backbone = backbone
        parts = backbone.stage_parts()
        for s in sifa_stages:
            if not 0 <= s < len(parts):
                raise ValueError(f"sifa_stages: stage {s} does not exist (0..{len(parts) - 1})")
            for block in parts[s][1]:
                dim = block.norm1.normalized_shape[0]
                block.temporal = FrameSIFA(dim, sifa_kernel, sifa_dilation, sifa=sifa)
        channels = backbone.num_features

        def make_head():
            if head == "pool":
                return PoolHead(channels, num_classes, dropout)
            return TemporalMeanConvHead(channels, num_classes, head_width, dropout)

        self.head = make_head()
        self.dual = dual
        if dual:
            self.dual_downsample = copy.deepcopy(parts[-1][0])
            self.dual_blocks = copy.deepcopy(parts[-1][1])
            self.dual_norm = copy.deepcopy(backbone.norm)
            self.head_dual = make_head()

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
        ``backbone.``, copy the last stage into the dual branch, drop the ImageNet classifier.
        Returns the converted state and the dropped keys."""
        out, dropped = {}, []
        dual_sources = {}
        if self.dual:
            down, blocks = self.backbone.stage_parts()[-1]
            dual_sources = {self._backbone_name(down) + ".": "dual_downsample.",
                            self._backbone_name(blocks) + ".": "dual_blocks.", "norm.": "dual_norm."}
        for k, v in state.items():
            if k.startswith("head."):
                dropped.append(k)
                continue
            out["backbone." + k] = v
            for src, dst in dual_sources.items():
                if k.startswith(src):
                    out[dst + k[len(src):]] = v
        return out, sorted(dropped)

    @staticmethod
    def _run(down: nn.Module, blocks: nn.Module, x: torch.Tensor, frames: int) -> torch.Tensor:
        x = down(x)
        for block in blocks:
            x = block(x, frames)
        return x

    def _norm(self, norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if isinstance(norm, nn.LayerNorm):
            return norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return norm(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if x.ndim != 5:
            raise ValueError(f"expected a clip batch (N, 3, T, H, W), got shape {tuple(x.shape)}")
        N, T = x.shape[0], x.shape[2]
        x = rearrange(x, "n c t h w -> (n t) c h w")
        parts = self.backbone.stage_parts()
        for down, blocks in parts[:-1]:
            x = self._run(down, blocks, x, T)
        main = self._norm(self.backbone.norm, self._run(*parts[-1], x, T))
        logits = self.head(rearrange(main, "(n t) c h w -> n c t h w", n=N))
        if not self.dual:
            return logits
        # Frame skipping: max over pairs of frames (a single frame is kept as it is).
        clips = rearrange(x, "(n t) c h w -> n c t h w", n=N)
        skipped = F.max_pool3d(clips, (2, 1, 1), (2, 1, 1), ceil_mode=T < 2)
        t_skip = skipped.shape[2]
        dual = self._run(self.dual_downsample, self.dual_blocks, rearrange(skipped, "n c t h w -> (n t) c h w"), t_skip)
        dual = self._norm(self.dual_norm, dual)
        return logits, self.head_dual(rearrange(dual, "(n t) c h w -> n c t h w", n=N))


def _video(backbone_cls, config: dict, num_classes: int, with_sifa: bool, overrides: dict) -> SIFATransformer:
    """Split ``overrides`` between the backbone (its constructor's arguments) and the video model."""
    video_keys = {"sifa_stages", "sifa_kernel", "sifa_dilation", "sifa", "dual", "head", "head_width", "dropout"}
    video = {k: v for k, v in overrides.items() if k in video_keys}
    backbone = backbone_cls(**{**config, **{k: v for k, v in overrides.items() if k not in video_keys}},
                            num_classes=0)
    defaults = dict(sifa_stages=(2, 3), dual=True) if with_sifa else dict(sifa_stages=(), dual=False)
    return SIFATransformer(backbone, num_classes, **{**defaults, **video})


# CPU sizes for the motion benchmark (64 px clips): stride-4 embedding, then 16/16/16/8 maps, so
# that SIFA (stages 3-4) runs on 16x16 and 8x8 maps like sifa_small's, where a step of the
# benchmark's actor spans a cell or two.
BIFORMER_NANO = dict(depth=(1, 1, 1, 1), embed_dim=(16, 32, 64, 64), n_win=4, topks=(1, 4, 4, -2), head_dim=16,
                     downsample_strides=(1, 1, 2))
DILATEFORMER_NANO = dict(embed_dim=12, depths=(1, 1, 1, 1), num_heads=(3, 3, 6, 6), merge_strides=(1, 1, 2),
                         stem_width=8, drop_path_rate=0.0)
NANO_VIDEO = dict(head="spatial", head_width=64, dropout=0.0, sifa_dilation=2)


@register_model
def sifa_biformer_tiny(num_classes: int = 400, **overrides) -> SIFATransformer:
    """BiFormer-T per frame + SIFA after the attention of stages 3-4 + dual branch."""
    return _video(BiFormer, BIFORMER_CONFIGS["tiny"], num_classes, True, overrides)


@register_model
def sifa_biformer_small(num_classes: int = 400, **overrides) -> SIFATransformer:
    """BiFormer-S per frame + SIFA after the attention of stages 3-4 + dual branch."""
    return _video(BiFormer, BIFORMER_CONFIGS["small"], num_classes, True, overrides)


@register_model
def sifa_dilateformer_tiny(num_classes: int = 400, **overrides) -> SIFATransformer:
    """DilateFormer-T per frame + SIFA after the attention of stages 3-4 + dual branch."""
    return _video(DilateFormer, DILATEFORMER_CONFIGS["tiny"], num_classes, True, overrides)


@register_model
def sifa_dilateformer_small(num_classes: int = 400, **overrides) -> SIFATransformer:
    """DilateFormer-S per frame + SIFA after the attention of stages 3-4 + dual branch."""
    return _video(DilateFormer, DILATEFORMER_CONFIGS["small"], num_classes, True, overrides)


@register_model
def c2d_biformer_tiny(num_classes: int = 400, **overrides) -> SIFATransformer:
    """BiFormer-T per frame, order-blind (no SIFA, no dual branch): the baseline of sifa_biformer_tiny."""
    return _video(BiFormer, BIFORMER_CONFIGS["tiny"], num_classes, False, overrides)


@register_model
def c2d_dilateformer_tiny(num_classes: int = 400, **overrides) -> SIFATransformer:
    """DilateFormer-T per frame, order-blind: the baseline of sifa_dilateformer_tiny."""
    return _video(DilateFormer, DILATEFORMER_CONFIGS["tiny"], num_classes, False, overrides)


@register_model
def sifa_biformer_nano(num_classes: int = 10, **overrides) -> SIFATransformer:
    """CPU-sized SIFA-BiFormer for the motion benchmark (64 px clips)."""
    return _video(BiFormer, BIFORMER_NANO, num_classes, True, {**NANO_VIDEO, **overrides})


@register_model
def c2d_biformer_nano(num_classes: int = 10, **overrides) -> SIFATransformer:
    """``sifa_biformer_nano`` without SIFA and the dual branch: order-blind."""
    return _video(BiFormer, BIFORMER_NANO, num_classes, False, {**NANO_VIDEO, **overrides})


@register_model
def sifa_dilateformer_nano(num_classes: int = 10, **overrides) -> SIFATransformer:
    """CPU-sized SIFA-DilateFormer for the motion benchmark (64 px clips)."""
    return _video(DilateFormer, DILATEFORMER_NANO, num_classes, True, {**NANO_VIDEO, **overrides})


@register_model
def c2d_dilateformer_nano(num_classes: int = 10, **overrides) -> SIFATransformer:
    """``sifa_dilateformer_nano`` without SIFA and the dual branch: order-blind."""
    return _video(DilateFormer, DILATEFORMER_NANO, num_classes, False, {**NANO_VIDEO, **overrides})
