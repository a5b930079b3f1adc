"""What the pyramid transformers share: the pre-norm block with a hook for an inter-frame mixer
after the spatial attention, the stage runner, global attention and the conv patch embedding."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange
from torchvision.ops import StochasticDepth


class Mlp(nn.Module):
    """``fc1 -> GELU -> fc2`` on channels-last tokens."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class MixerBlock(nn.Module):
    """``x += dwconv3x3(x)``; ``x += attn(LN(x))``; ``x += mlp(LN(x))`` (BiFormer, DilateFormer:
    LayerNorm eps 1e-6; Swin-style blocks: ``pos_embed=False``, eps 1e-5).

    ``attn`` maps channels-last maps ``(B, H, W, C)`` to the same shape; ``mlp`` acts on the last
    axis. ``temporal`` (None by default; set by video models) is an inter-frame sub-block between
    the attention and the MLP: ``x = temporal(x, frames)`` on the channels-last stream.
    Input and output ``(B, C, H, W)`` with ``B`` = clips x frames.
    """

    def __init__(self, dim: int, attn: nn.Module, mlp: nn.Module, drop_path: float = 0.0, pos_embed: bool = True,
                 norm_eps: float = 1e-6):
        super().__init__()
        self.pos_embed = nn.Conv2d(dim, dim, 3, padding=1, groups=dim) if pos_embed else None
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = attn
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = mlp
        self.drop_path = StochasticDepth(drop_path, "row") if drop_path > 0 else nn.Identity()
        self.temporal: nn.Module | None = None

    def forward(self, x: torch.Tensor, frames: int = 1) -> torch.Tensor:
        if self.pos_embed is not None:
            x = x + self.pos_embed(x)
        x = x.permute(0, 2, 3, 1)
        x = x + self.drop_path(self.attn(self.norm1(x)))
        if self.temporal is not None:
            x = self.temporal(x, frames)
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x.permute(0, 3, 1, 2)


BLOCK_LISTS = (nn.ModuleList, nn.Sequential)  # containers of blocks; any other stage module runs its own


def run_stage(downsample: nn.Module, blocks: nn.Module, x: torch.Tensor, frames: int = 1) -> torch.Tensor:
    """One stage of a pyramid transformer: ``downsample`` brings ``x`` ``(B, C, H, W)`` to the
    stage's resolution, then the blocks run with the clip length ``frames`` (B = clips x frames):
    each of a ``ModuleList`` / ``Sequential``, or a stage module taking ``(x, frames)`` (DAT)."""
    x = downsample(x)
    if not isinstance(blocks, BLOCK_LISTS):
        return blocks(x, frames)
    for block in blocks:
        x = block(x, frames)
    return x


def attach_temporal(blocks: nn.Module, make) -> None:
    """Give every block of a stage an inter-frame sub-block ``make(dim)`` after its attention:
    the ``temporal`` hook of each block of a ``ModuleList`` / ``Sequential`` (:class:`MixerBlock`
    and the like), or the stage module's own ``attach_temporal``."""
    if not isinstance(blocks, BLOCK_LISTS):
        blocks.attach_temporal(make)
        return
    for block in blocks:
        block.temporal = make(block.norm1.normalized_shape[0])


def per_clip(stream: torch.Tensor, frames: int, fn) -> torch.Tensor:
    """``fn`` applied to the stream's clips: ``(N * T, H, W, C)`` (frames of a clip consecutive) is
    viewed as ``(N, C, T, H, W)`` for ``fn`` and its result brought back to the stream's layout.
    The per-frame transformers' inter-frame sub-blocks run their operators through it."""
    if stream.shape[0] % frames:
        raise ValueError(f"batch {stream.shape[0]} is not a whole number of {frames}-frame clips")
    out = fn(rearrange(stream, "(n t) h w c -> n c t h w", t=frames))
    return rearrange(out, "n c t h w -> (n t) h w c")


class GlobalAttention(nn.Module):
    """Multi-head self-attention over all tokens of a map; heads are contiguous channel chunks.

    ``lepe`` (``side_dwconv > 0``): a depthwise conv of the attention *input* added before ``proj``
    (BiFormer's last stage, ``AttentionLePE``). Input/output ``(B, H, W, C)``.
    """

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = False, side_dwconv: int = 0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} must be divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.lepe = nn.Conv2d(dim, dim, side_dwconv, padding=side_dwconv // 2, groups=dim) if side_dwconv else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        qkv = self.qkv(x).view(B, H * W, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        out = nn.functional.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])  # scale head_dim^-0.5
        out = out.transpose(1, 2).reshape(B, H, W, C)
        if self.lepe is not None:
            out = out + self.lepe(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return self.proj(out)


class ConvPatchEmbed(nn.Module):
    """``proj``: a ``patch x patch`` conv at stride ``patch`` (maps not divisible zero-padded at the
    bottom / right); ``norm``: LayerNorm over channels. ``(B, Cin, H, W) -> (B, C, H / patch, W / patch)``."""

    def __init__(self, in_dim: int, dim: int, patch: int):
        super().__init__()
        self.patch = patch
        self.proj = nn.Conv2d(in_dim, dim, patch, patch)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (0, (-x.shape[-1]) % self.patch, 0, (-x.shape[-2]) % self.patch))
        return self.norm(self.proj(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
