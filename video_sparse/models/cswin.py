"""CSWin Transformer image backbones (Dong et al., CVPR 2022) with the official configurations and
state_dict names (``stage1_conv_embed``, ``stageS.j``, ``mergeK``, ``norm``, ``head``), so the
official ImageNet checkpoints load as they are.

Stem: 7x7 conv at stride 4 + LayerNorm; four stages of :class:`~video_sparse.layers.cswin.CSWinBlock`
(cross-shaped stripes of width ``split_size``, one full-attention branch in the last stage), 3x3
stride-2 convs + LayerNorm between them. Unlike the official classification model (square 224
inputs, sizes divisible by the stripes), any input size runs; the branch count of a block is fixed
by its stage (the official model also switches to one branch where its construction-time
resolution equals the stripe width, which at 224 is the last stage only).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..layers.cswin import CSWinBlock
from .pyramid import PyramidBackbone, init_weights
from .specs import CSWinSpec

# Official ImageNet-1k checkpoints of microsoft/CSWin-Transformer (release v0.1.0) for
# cswin_tiny/_small/_base (configurations in models/zoo.py); load with model.pretrained=<file>.
PRETRAINED_URLS = {
    "cswin_tiny": "https://github.com/microsoft/CSWin-Transformer/releases/download/v0.1.0/cswin_tiny_224.pth",
    "cswin_small": "https://github.com/microsoft/CSWin-Transformer/releases/download/v0.1.0/cswin_small_224.pth",
    "cswin_base": "https://github.com/microsoft/CSWin-Transformer/releases/download/v0.1.0/cswin_base_224.pth",
}


class ConvEmbed(nn.Sequential):
    """Conv -> (channels last) -> LayerNorm, official indices ``.0`` (conv) and ``.2`` (norm)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int):
        super().__init__(nn.Conv2d(c_in, c_out, kernel, stride, padding), nn.Identity(), nn.LayerNorm(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self[2](self[0](x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class MergeBlock(nn.Module):
    """Official ``Merge_Block``: 3x3 conv at ``stride`` (official: 2), then LayerNorm."""

    def __init__(self, dim: int, dim_out: int, stride: int = 2):
        super().__init__()
        self.conv = nn.Conv2d(dim, dim_out, 3, stride, 1)
        self.norm = nn.LayerNorm(dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class CSWin(PyramidBackbone):
    """CSWin Transformer. The hyper-parameters are the fields of
    :class:`~video_sparse.models.specs.CSWinSpec`; ``num_classes`` 0 gives no classifier.
    Input ``(B, 3, H, W)``, any H, W; output logits ``(B, num_classes)``.
    """

    def __init__(self, spec: CSWinSpec, num_classes: int = 1000):
        super().__init__()
        dims = [spec.embed_dim * 2 ** i for i in range(4)]
        self.stage1_conv_embed = ConvEmbed(3, dims[0], 7, 4, 2)
        rates = torch.linspace(0, spec.drop_path_rate, sum(spec.depth)).tolist()
        for i in range(4):
            first = sum(spec.depth[:i])
            setattr(self, f"stage{i + 1}", nn.ModuleList(
                CSWinBlock(dims[i], spec.num_heads[i], spec.split_size[i], spec.mlp_ratio, rates[first + j],
                           full=i == 3) for j in range(spec.depth[i])))
            if i < 3:
                setattr(self, f"merge{i + 1}", MergeBlock(dims[i], dims[i + 1], spec.merge_strides[i]))
        self.norm = nn.LayerNorm(dims[-1])
        self.num_features = dims[-1]
        self.head = nn.Linear(dims[-1], num_classes) if num_classes > 0 else nn.Identity()
        self.apply(init_weights)

    def stage_parts(self) -> list[tuple[nn.Module, nn.ModuleList]]:
        """Per stage: the stem or the merge into it, and its blocks."""
        into = [self.stage1_conv_embed, self.merge1, self.merge2, self.merge3]
        return [(down, getattr(self, f"stage{i + 1}")) for i, down in enumerate(into)]
