"""BiFormer image backbones (Zhu et al., CVPR 2023) with the official configurations and
state_dict names (``downsample_layers``, ``stages.i.j``, ``norm``, ``head``), so the official
ImageNet checkpoints load as they are.

Stage ``i`` = ``downsample_layers[i]`` (stem: two stride-2 3x3 convs; then a stride-2 3x3 conv,
each with BN) followed by ``stages[i]`` of :class:`~video_sparse.layers.block.MixerBlock` whose
attention is BRA (``topk > 0``) or, for ``topk = -2`` (the last stage), global attention with
8 heads and LePE on its input.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..layers.biformer import BiLevelRoutingAttention
from ..layers.block import GlobalAttention, MixerBlock
from ..layers.stem import ConvStem
from .pyramid import PyramidBackbone, init_weights
from .specs import BiFormerSpec

# Official ImageNet-1k checkpoints (models/biformer.py of rayleizhu/BiFormer) of biformer_tiny/_small/_base
# (configurations in models/zoo.py); load with
# model.pretrained=<downloaded file> (torch.hub file names: <key>.pth).
PRETRAINED_URLS = {
    "biformer_tiny": "https://matix.li/e36fe9fb086c",
    "biformer_small": "https://matix.li/5bb436318902",
    "biformer_base": "https://matix.li/995db75f585d",
}


class BiFormer(PyramidBackbone):
    """BiFormer: four stages of pre-norm blocks with bi-level routing attention.

    The hyper-parameters are the fields of :class:`~video_sparse.models.specs.BiFormerSpec`;
    ``num_classes`` 0 gives no classifier (``head`` is the identity).
    Input ``(B, 3, H, W)``, any H, W; output logits ``(B, num_classes)``.
    """

    def __init__(self, spec: BiFormerSpec, num_classes: int = 1000):
        super().__init__()
        depth, embed_dim, head_dim, side_dwconv = spec.depth, spec.embed_dim, spec.head_dim, spec.side_dwconv
        self.downsample_layers = nn.ModuleList([ConvStem(embed_dim[0])] + [
            nn.Sequential(nn.Conv2d(embed_dim[i], embed_dim[i + 1], 3, spec.downsample_strides[i], 1),
                          nn.BatchNorm2d(embed_dim[i + 1]))
            for i in range(3)])
        rates = torch.linspace(0, spec.drop_path_rate, sum(depth)).tolist()
        self.stages = nn.ModuleList()
        for i, (n, dim, topk) in enumerate(zip(depth, embed_dim, spec.topks)):
            def attention():
                if topk > 0:
                    return BiLevelRoutingAttention(dim, dim // head_dim, spec.n_win, dim, topk, side_dwconv)
                if topk == -2:
                    return GlobalAttention(dim, num_heads=8, side_dwconv=side_dwconv)
                raise ValueError(f"topks[{i}] = {topk}: use a positive number of regions or -2 (global attention)")
            hidden = int(spec.mlp_ratio * dim)
            mlp = lambda: nn.Sequential(nn.Linear(dim, hidden), nn.Identity(), nn.GELU(), nn.Linear(hidden, dim))  # noqa: E731
            first = sum(depth[:i])
            self.stages.append(nn.Sequential(*[MixerBlock(dim, attention(), mlp(), rates[first + j]) for j in range(n)]))
        self.norm = nn.BatchNorm2d(embed_dim[-1])
        self.num_features = embed_dim[-1]
        self.head = nn.Linear(embed_dim[-1], num_classes) if num_classes > 0 else nn.Identity()
        self.apply(init_weights)

    def stage_parts(self) -> list[tuple[nn.Module, nn.Sequential]]:
        """Per stage: the module that brings the map to its resolution, and the stage's blocks."""
        return list(zip(self.downsample_layers, self.stages))
