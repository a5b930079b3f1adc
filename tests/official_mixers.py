"""Faithful re-implementations of the official BRA (gather) and MSDA (unfold) formulations, on the
parameters of our modules: the peers of tests and benchmarks/mixers.py.

They follow the official computations step by step (BiFormer ``ops/bra_legacy.py``: windows first,
region means, top-k routing, ``torch.gather`` of the routed K/V from an expanded view; DilateFormer
``DilateAttention``: ``nn.Unfold`` of K and V per dilation), written anew. MSDA collects the groups'
outputs with ``torch.cat`` instead of the official in-place writes into its input, which break
backward (numerically identical). Sizes must be multiples of ``n_win`` (the official assert).
"""
import torch
from einops import rearrange


def official_bra(module, x):
    """BiFormer legacy BRA forward. ``module``: our BiLevelRoutingAttention; x ``(B, H, W, C)``."""
    n, H, W, C = x.shape
    S, heads, topk, qk_dim = module.n_win, module.num_heads, module.topk, module.qkv.qk_dim
    assert H % S == 0 and W % S == 0
    x = rearrange(x, "n (j h) (i w) c -> n (j i) h w c", j=S, i=S)
    qkv = module.qkv.qkv(x)
    q, kv = qkv[..., :qk_dim], qkv[..., qk_dim:]
    q_pix = rearrange(q, "n p2 h w c -> n p2 (h w) c")
    kv_pix = rearrange(kv, "n p2 h w c -> n p2 (h w) c")
    q_win, k_win = q.mean([2, 3]), kv[..., :qk_dim].mean([2, 3])
    lepe = module.lepe(rearrange(kv[..., qk_dim:], "n (j i) h w c -> n c (j h) (i w)", j=S, i=S).contiguous())
    lepe = rearrange(lepe, "n c (j h) (i w) -> n (j h) (i w) c", j=S, i=S)
    logits = (q_win.detach() * module.scale) @ k_win.detach().transpose(-2, -1)
    r_idx = torch.topk(logits, k=topk, dim=-1).indices
    p2, w2, c_kv = kv_pix.shape[1:]
    kv_sel = torch.gather(kv_pix.view(n, 1, p2, w2, c_kv).expand(-1, p2, -1, -1, -1), dim=2,
                          index=r_idx.view(n, p2, topk, 1, 1).expand(-1, -1, -1, w2, c_kv))
    k_sel, v_sel = kv_sel.split([qk_dim, C], dim=-1)
    k_sel = rearrange(k_sel, "n p2 k w2 (m c) -> (n p2) m c (k w2)", m=heads)
    v_sel = rearrange(v_sel, "n p2 k w2 (m c) -> (n p2) m (k w2) c", m=heads)
    q_pix = rearrange(q_pix, "n p2 w2 (m c) -> (n p2) m w2 c", m=heads)
    attn = ((q_pix * module.scale) @ k_sel).softmax(dim=-1)
    out = rearrange(attn @ v_sel, "(n j i) m (h w) c -> n (j h) (i w) (m c)", j=S, i=S, h=H // S, w=W // S)
    return module.wo(out + lepe)


def official_msda(module, x):
    """DilateFormer MultiDilatelocalAttention forward (unfold). ``module``: our
    MultiScaleDilatedAttention; x ``(B, H, W, C)``."""
    B, H, W, C = x.shape
    groups, K = len(module.dilations), module.kernel_size
    head_dim = C // module.num_heads
    qkv = module.qkv(x.permute(0, 3, 1, 2)).reshape(B, 3, groups, C // groups, H, W).permute(2, 1, 0, 3, 4, 5)
    outs = []
    for i, r in enumerate(module.dilations):
        q, k, v = qkv[i][0], qkv[i][1], qkv[i][2]
        d = C // groups
        unfold = torch.nn.Unfold(K, r, r * (K - 1) // 2, 1)
        q = q.reshape(B, d // head_dim, head_dim, 1, H * W).permute(0, 1, 4, 3, 2)
        k = unfold(k).reshape(B, d // head_dim, head_dim, K * K, H * W).permute(0, 1, 4, 2, 3)
        attn = ((q @ k) * head_dim ** -0.5).softmax(dim=-1)
        v = unfold(v).reshape(B, d // head_dim, head_dim, K * K, H * W).permute(0, 1, 4, 3, 2)
        outs.append((attn @ v).transpose(1, 2).reshape(B, H, W, d))
    return module.proj(torch.cat(outs, dim=-1))


