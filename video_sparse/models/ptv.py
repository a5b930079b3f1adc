"""pytorchvideo's Kinetics-400 zoo architectures behind this project's model contract.

The networks are built by pytorchvideo's own builders (``pytorchvideo.models``) with the zoo's
layouts (``pytorchvideo.models.hub``), so their parameters, names and outputs are pytorchvideo's;
:class:`PyTorchVideoModel` adds what the pipeline needs around them:

- input ``(N, 3, T, H, W)`` for every architecture: SlowFast's two pathways are taken from the one
  clip inside the model (the fast pathway all T frames, the slow one T / alpha evenly spaced, as the
  zoo's evaluation packs them), so data, views and evaluation are the same for every model;
- logits: the zoo's X3D and R(2+1)D end in a softmax, here the head stops before it;
- any clip: the heads average over all frames, and in space over windows of the zoo clip's final
  map clipped to the input, so larger crops average the window logits as the zoo's fully
  convolutional testing does and smaller ones (the motion benchmark's 64 px clips) pool globally;
  at the zoo's clips this is the zoo's pooling. MViT's position embeddings fix its clip
  (``model.frames``, ``model.size``); another clip gets a clear error.

Nothing here imports ``pytorchvideo.transforms`` (it does not import with torchvision >= 0.17).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .contract import VideoModel
from .specs import MViTSpec, PTVResNetSpec, X3DSpec


class ClippedAvgPool3d(nn.Module):
    """The zoo heads' ``nn.AvgPool3d(kernel_size, stride=1)`` at any clip: over all frames (the
    zoo's window spans its clip's frames), and over windows of ``kernel_size[1:]`` clipped to the
    map in space (the zoo's fully convolutional testing on larger crops, a global average on
    smaller ones). Equal to the zoo's pooling at its clip length."""

    def __init__(self, kernel_size: tuple[int, int, int]):
        super().__init__()
        self.kernel_size = tuple(kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        H, W = x.shape[-2:]
        # The mean over time first: the same average, and the clip length stays out of the kernel
        # size (an exported model takes any clip length).
        return F.avg_pool3d(x.mean(2, keepdim=True), (1, min(self.kernel_size[1], H), min(self.kernel_size[2], W)),
                            stride=1)


def clip_head_pools(net: nn.Module) -> nn.Module:
    """Replace every ``nn.AvgPool3d`` of ``net`` (only the heads have them) by a
    :class:`ClippedAvgPool3d` of its window; no parameters change."""
    for module in list(net.modules()):
        for child_name, child in list(module.named_children()):
            if type(child) is nn.AvgPool3d:
                setattr(module, child_name, ClippedAvgPool3d(_triple(child.kernel_size)))
    return net


def _triple(k) -> tuple[int, int, int]:
    return tuple(k) if isinstance(k, (tuple, list)) else (k, k, k)


def slowfast_pathways(x: torch.Tensor, alpha: int) -> list[torch.Tensor]:
    """``(N, C, T, H, W)`` -> ``[slow, fast]``: the slow pathway T / alpha frames evenly spaced over
    the clip (first and last included), the fast pathway all of them."""
    T = x.shape[2]
    n = T // alpha
    # torch.linspace(0, T - 1, n).long() (pytorchvideo's PackPathway), computed as its CPU kernel
    # does (from both ends, in float32; equal for every T up to 1024, tested) from an arange: an
    # exported model keeps n symbolic, where linspace's step count would be baked in.
    i = torch.arange(n, device=x.device, dtype=torch.float32)
    step = (T - 1) / torch.sym_max(n - 1, 1)
    index = torch.where((i < n // 2) | (i == 0), step * i, (T - 1) - step * (n - 1 - i)).long()
    return [x.index_select(2, index), x]


class PyTorchVideoModel(VideoModel):
    """A pytorchvideo network (``net``) as a video model: ``(N, 3, T, H, W)`` -> logits
    ``(N, num_classes)``.

    Args:
        net: built by a pytorchvideo builder without a final activation.
        alpha: SlowFast's frame ratio (the input is split into its two pathways); None: one pathway.
        min_frames: the fewest frames the network takes (C2D and I3D pool time by 2 after res2).
        clip: ``(T, H, W)`` the network only takes (MViT), or None.
    The state_dict holds pytorchvideo's names under ``net.`` (:meth:`zoo_state_to_model` maps a zoo
    checkpoint in, used by ``load_pretrained``).
    """

    def __init__(self, net: nn.Module, alpha: int | None = None, min_frames: int = 1,
                 clip: tuple[int, int, int] | None = None):
        super().__init__()
        self.net = net
        self.alpha = alpha
        self.min_frames = min_frames
        self.clip = clip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5 or x.shape[1] != 3:
            raise ValueError(f"expected a clip batch (N, 3, T, H, W), got shape {tuple(x.shape)}")
        T = x.shape[2]
        if self.clip is not None and tuple(x.shape[2:]) != self.clip:
            t, h, w = self.clip
            raise ValueError(f"this MViT takes {t}x{h}x{w} clips (its position embeddings), got "
                             f"{T}x{x.shape[3]}x{x.shape[4]}. Fix: data.frames={t} data.size={h}, or build it for "
                             f"your clips with model.frames={T} model.size={x.shape[3]} (square only)")
        if T < self.min_frames:
            raise ValueError(f"this network takes clips of at least {self.min_frames} frames, got {T}. "
                             f"Fix: data.frames={self.min_frames}")
        if self.alpha is not None:
            if T % self.alpha:
                raise ValueError(f"SlowFast takes clips of a multiple of alpha={self.alpha} frames (its fast pathway "
                                 f"has alpha frames per slow one), got {T}. Fix: data.frames="
                                 f"{max(self.alpha, T - T % self.alpha)} (or model.alpha=...)")
            x = slowfast_pathways(x, self.alpha)
        return self.net(x)

    @property
    def frames_multiple(self) -> int:
        """Clip lengths this network takes are multiples of this (SlowFast: alpha)."""
        return self.alpha or 1

    @property
    def fixed_frames(self) -> int | None:
        """The one clip length this network takes (MViT), or None."""
        return self.clip[0] if self.clip is not None else None

    def classifier(self) -> nn.Linear:
        """The final linear layer (the one a new class count replaces)."""
        return [m for m in self.net.modules() if isinstance(m, nn.Linear)][-1]

    def classifiers(self) -> dict[str, nn.Linear]:
        """``{"main": classifier()}``: its input, averaged over the positions it is applied at, is
        the pooled pre-classifier feature (``eval.py features=true``)."""
        return {"main": self.classifier()}

    def zoo_state_to_model(self, state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
        """A pytorchvideo zoo state_dict -> this model's names (prefix ``net.``); the classifier is
        dropped when its class count differs from the model's. Returns the state and the dropped keys."""
        fc = self.classifier()
        fc_name = next(name for name, m in self.net.named_modules() if m is fc)
        out, dropped = {}, []
        for k, v in state.items():
            if k in (f"{fc_name}.weight", f"{fc_name}.bias") and v.shape[0] != fc.out_features:
                dropped.append(k)
                continue
            out["net." + k] = v
        return out, sorted(dropped)


def _spatial(crop_size: int) -> int:
    return math.ceil(crop_size / 32)  # every zoo network has stride 32


def x3d(spec: X3DSpec, num_classes: int) -> PyTorchVideoModel:
    """X3D by ``create_x3d`` (the zoo's X3D-XS/S/M differ only in their clip)."""
    from pytorchvideo.models.x3d import create_x3d

    net = create_x3d(input_clip_length=spec.clip_frames, input_crop_size=spec.crop_size, model_num_class=num_classes,
                     dropout_rate=spec.dropout, width_factor=spec.width_factor, depth_factor=spec.depth_factor,
                     stem_dim_in=spec.stem_width, bottleneck_factor=spec.bottleneck_factor,
                     head_dim_out=spec.head_width, head_activation=None)
    return PyTorchVideoModel(clip_head_pools(net))


# The zoo's layouts (pytorchvideo.models.hub): builder arguments, and by how much time shrinks before the head.
I3D_CONV_A = ((3, 1, 1), [(3, 1, 1), (1, 1, 1)], [(3, 1, 1), (1, 1, 1)], [(1, 1, 1), (3, 1, 1)])
RESNET_LAYOUTS = {
    "slow": (dict(stem_conv_kernel_size=(1, 7, 7)), 1),
    "c2d": (dict(stem_conv_kernel_size=(1, 7, 7), stage1_pool=nn.MaxPool3d, stage_conv_a_kernel_size=((1, 1, 1),) * 4),
            2),
    "i3d": (dict(stem_conv_kernel_size=(5, 7, 7), stage1_pool=nn.MaxPool3d, stage_conv_a_kernel_size=I3D_CONV_A), 2),
    "r2plus1d": (dict(), 4),
    "csn": (dict(stem_pool=nn.MaxPool3d), 8),
}


def resnet(spec: PTVResNetSpec, num_classes: int) -> PyTorchVideoModel:
    """Slow, C2D, I3D, R(2+1)D, CSN or SlowFast by pytorchvideo's builders with the zoo's layouts."""
    from pytorchvideo.models.csn import create_csn
    from pytorchvideo.models.r2plus1d import create_r2plus1d
    from pytorchvideo.models.resnet import create_resnet

    side = _spatial(spec.crop_size)
    common = dict(model_depth=spec.depth, model_num_class=num_classes, dropout_rate=spec.dropout)
    if spec.arch == "slowfast":
        return _slowfast(spec, side, common)
    layout, time_reduction = RESNET_LAYOUTS[spec.arch]
    pool = (max(spec.clip_frames // time_reduction, 1), side, side)
    build = {"r2plus1d": create_r2plus1d, "csn": create_csn}.get(spec.arch, create_resnet)
    net = build(**layout, **common, stem_dim_out=spec.width, head_pool_kernel_size=pool, head_activation=None)
    return PyTorchVideoModel(clip_head_pools(net), min_frames=time_reduction if spec.arch in ("c2d", "i3d") else 1)


def _slowfast(spec: PTVResNetSpec, side: int, common: dict) -> PyTorchVideoModel:
    from pytorchvideo.models.slowfast import create_slowfast

    if spec.width < spec.beta:
        raise ValueError(f"width {spec.width} < beta {spec.beta} leaves the fast pathway without channels")
    net = create_slowfast(**common, slowfast_channel_reduction_ratio=(spec.beta,),
                          stem_dim_outs=(spec.width, spec.width // spec.beta),
                          slowfast_fusion_conv_kernel_size=(7, 1, 1), slowfast_fusion_conv_stride=(spec.alpha, 1, 1),
                          head_pool_kernel_sizes=((max(spec.clip_frames // spec.alpha, 1), side, side),
                                                  (spec.clip_frames, side, side)),
                          head_activation=None)
    return PyTorchVideoModel(clip_head_pools(net), alpha=spec.alpha)


def mvit(spec: MViTSpec, num_classes: int) -> PyTorchVideoModel:
    """MViT by ``create_multiscale_vision_transformers``, the zoo's video layout (MViT-B 16x4:
    stages at blocks 1, 3, 14; 3x3x3 pooling; keys and values pooled to a 7x7 grid at 224)."""
    from pytorchvideo.models.vision_transformers import create_multiscale_vision_transformers

    if any(s >= spec.depth for s in spec.stages):
        raise ValueError(f"stages {list(spec.stages)} must be block indices below depth {spec.depth}")
    doubling = [[s, 2.0] for s in spec.stages]
    net = create_multiscale_vision_transformers(
        spatial_size=spec.size, temporal_size=spec.frames, depth=spec.depth, patch_embed_dim=spec.embed_dim,
        num_heads=spec.num_heads, embed_dim_mul=doubling, atten_head_mul=doubling,
        pool_q_stride_size=[[s, 1, 2, 2] for s in spec.stages], pool_kv_stride_adaptive=[1, spec.kv_stride,
                                                                                        spec.kv_stride],
        pool_kvq_kernel=[3, 3, 3], droppath_rate_block=spec.drop_path_rate, head_dropout_rate=spec.dropout,
        head_num_classes=num_classes)
    return PyTorchVideoModel(net, clip=(spec.frames, spec.size, spec.size))
