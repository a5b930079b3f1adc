"""DPT image backbones (Chen et al., DPT: Deformable Patch-based Transformer, ACM MM 2021): PVT with
deformable patch embeddings (DePatch) into stages 2-4, official configurations and state_dict
names (``patch_embed1..4``, ``pos_embed1..4``, ``cls_token``, ``block1..4``, ``norm``, ``head``),
so the official ImageNet checkpoints load as they are.

Each stage: a patch embedding (a 4x4 stride-4 conv into stage 1, DePatch into the others) plus a
learnt absolute position embedding, then pre-norm blocks of spatial-reduction attention and an
MLP. The image classifier reads PVT's class token, appended before stage 4; the video models pool
the last map as every family here does (the class token is not used there).

The official model runs only at 224 px; any size runs here: the position embeddings are resized
bilinearly (PVT's own rule) from the build-size grid, DePatch computes its anchors from the input
(:class:`~video_sparse.layers.depatch.DePatchEmbed`), odd maps are padded.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.init import trunc_normal_

from ..layers.block import ConvPatchEmbed, MixerBlock, Mlp, run_stage
from ..layers.depatch import DePatchEmbed
from ..layers.pvt import SpatialReductionAttention
from .pyramid import PyramidBackbone, init_weights
from .specs import DPTSpec


def add_position_embedding(x: torch.Tensor, pos_embed: torch.Tensor, grid: int) -> torch.Tensor:
    """``x`` ``(B, C, H, W)`` plus the ``(1, grid², C)`` embedding of a ``grid x grid`` map, resized
    bilinearly to ``H x W`` if it differs."""
    table = pos_embed.transpose(1, 2).reshape(1, -1, grid, grid)
    if x.shape[-2:] != table.shape[-2:]:
        table = F.interpolate(table, size=x.shape[-2:], mode="bilinear", align_corners=False)
    return x + table


class PositionedConvPatchEmbed(ConvPatchEmbed):
    """Stage 1's input: the conv patch embedding + ``pos_embed`` (official ``pos_embed1``)."""

    def __init__(self, dim: int, patch: int, grid: int):
        super().__init__(3, dim, patch)
        self.grid = grid
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return add_position_embedding(super().forward(x), self.pos_embed, self.grid)


class PositionedDePatchEmbed(DePatchEmbed):
    """Stages 2-4's input: DePatch + ``pos_embed`` (official ``pos_embed2..4``; stage 4's has the
    class token's entry first)."""

    def __init__(self, in_dim: int, dim: int, grid: int, points: int, stride: int, class_token: bool):
        super().__init__(in_dim, dim, grid, points, stride)
        self.grid, self.class_token = grid, class_token
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + class_token, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return add_position_embedding(super().forward(x), self.pos_embed[:, int(self.class_token):], self.grid)


class DPT(PyramidBackbone):
    """DPT (PVT + DePatch). The hyper-parameters are the fields of
    :class:`~video_sparse.models.specs.DPTSpec`; ``num_classes`` 0 gives no classifier. Input
    ``(B, 3, H, W)``, any H, W; output logits ``(B, num_classes)``.

    The position embeddings live in the patch embeddings (``patch_embedK.pos_embed``), so that
    each stage's input is one module; ``state_dict`` / ``load_state_dict`` use the official names
    ``pos_embedK`` (:meth:`internal_name`).
    """

    def __init__(self, spec: DPTSpec, num_classes: int = 1000):
        super().__init__()
        dims = spec.embed_dims
        rates = torch.linspace(0, spec.drop_path_rate, sum(spec.depths)).tolist()
        for i in range(4):
            stride = spec.patch_size * math.prod(spec.merge_strides[:i])
            grid = max(spec.img_size // stride, 1)  # the map an img_size input gives here
            if i == 0:
                embed = PositionedConvPatchEmbed(dims[0], spec.patch_size, grid)
            else:
                embed = PositionedDePatchEmbed(dims[i - 1], dims[i], grid, spec.patch_points, spec.merge_strides[i - 1],
                                               class_token=i == 3)
            setattr(self, f"patch_embed{i + 1}", embed)
            first = sum(spec.depths[:i])
            setattr(self, f"block{i + 1}", nn.ModuleList(
                MixerBlock(dims[i], SpatialReductionAttention(dims[i], spec.num_heads[i], spec.sr_ratios[i]),
                           Mlp(dims[i], int(dims[i] * spec.mlp_ratios[i])), rates[first + j], pos_embed=spec.cpe)
                for j in range(spec.depths[i])))
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dims[-1]))
        self.num_features = dims[-1]
        self.head = nn.Linear(dims[-1], num_classes) if num_classes > 0 else nn.Identity()
        for p in [self.cls_token, *(self.get_submodule(f"patch_embed{i}").pos_embed for i in range(1, 5))]:
            trunc_normal_(p, std=0.02)
        self.apply(init_weights)
        for i in range(2, 5):  # DePatch starts from the regular grid
            nn.init.zeros_(self.get_submodule(f"patch_embed{i}").offset_predictor.weight)
        self.register_state_dict_post_hook(_official_names)
        self.register_load_state_dict_pre_hook(_internal_names)

    @staticmethod
    def internal_name(key: str) -> str:
        """The module path of an official state_dict key (``pos_embedK`` -> ``patch_embedK.pos_embed``)."""
        if key.startswith("pos_embed") and key[len("pos_embed"):].isdigit():
            return f"patch_embed{key[len('pos_embed'):]}.pos_embed"
        return key

    def stage_parts(self) -> list[tuple[nn.Module, nn.ModuleList]]:
        """Per stage: its patch embedding (with the position embedding) and its blocks."""
        return [(self.get_submodule(f"patch_embed{i}"), self.get_submodule(f"block{i}")) for i in range(1, 5)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` -> logits of the class token after stage 4 (official)."""
        parts = self.stage_parts()
        for embed, blocks in parts[:3]:
            x = run_stage(embed, blocks, x)
        embed, blocks = parts[3]
        patches = embed(x)
        B, C, H, W = patches.shape
        tokens = torch.cat([(self.cls_token + embed.pos_embed[:, :1]).expand(B, -1, -1),
                            patches.flatten(2).transpose(1, 2)], dim=1)
        for block in blocks:
            if block.pos_embed is not None:  # cpe: a conv of the patches' map; the class token passes
                grid = tokens[:, 1:].transpose(1, 2).reshape(B, C, H, W)
                tokens = torch.cat([tokens[:, :1], (grid + block.pos_embed(grid)).flatten(2).transpose(1, 2)], dim=1)
            tokens = tokens + block.drop_path(block.attn.tokens(block.norm1(tokens), H, W))
            tokens = tokens + block.drop_path(block.mlp(block.norm2(tokens)))
        return self.head(self.norm(tokens)[:, 0])


def _official_names(module: DPT, state: dict, prefix: str, local_metadata) -> None:
    for i in range(1, 5):
        if f"{prefix}patch_embed{i}.pos_embed" in state:  # (not when a video model's conv_stem replaced it)
            state[f"{prefix}pos_embed{i}"] = state.pop(f"{prefix}patch_embed{i}.pos_embed")


def _internal_names(module: DPT, state: dict, prefix: str, *args) -> None:
    for i in range(1, 5):
        if f"{prefix}pos_embed{i}" in state:
            state[f"{prefix}patch_embed{i}.pos_embed"] = state.pop(f"{prefix}pos_embed{i}")
