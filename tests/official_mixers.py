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


def outputs_and_grads(fn, module, x, grad_out):
    """``fn(module, x)``, then its output, the input's gradient and every trainable parameter's
    gradient for ``grad_out``: what tests compare between ours and an official formulation."""
    module.zero_grad()
    x = x.detach().clone().requires_grad_(True)
    out = fn(module, x)
    (out * grad_out).sum().backward()
    return [out.detach(), x.grad] + [p.grad.clone() for p in module.parameters() if p.requires_grad]


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




def _official_lepe_attention(qkv, get_v, H, W, H_sp, W_sp, heads, scale):
    """CSWin ``LePEAttention.forward`` on ``qkv`` ``(3, B, H*W, C)``: img2windows of q and k,
    ``get_lepe`` of v window by window, explicit ``softmax(q k^T) v + lepe``, windows2img."""
    q, k, v = qkv[0], qkv[1], qkv[2]
    B, L, C = q.shape

    def im2cswin(t):
        t = t.transpose(-2, -1).contiguous().view(B, C, H, W)
        t = t.view(B, C, H // H_sp, H_sp, W // W_sp, W_sp).permute(0, 2, 4, 3, 5, 1).contiguous()
        t = t.reshape(-1, H_sp * W_sp, C)
        return t.reshape(-1, H_sp * W_sp, heads, C // heads).permute(0, 2, 1, 3).contiguous()

    def get_lepe(t):
        t = t.transpose(-2, -1).contiguous().view(B, C, H, W)
        t = t.view(B, C, H // H_sp, H_sp, W // W_sp, W_sp).permute(0, 2, 4, 1, 3, 5).contiguous()
        t = t.reshape(-1, C, H_sp, W_sp)
        lepe = get_v(t).reshape(-1, heads, C // heads, H_sp * W_sp).permute(0, 1, 3, 2).contiguous()
        t = t.reshape(-1, heads, C // heads, H_sp * W_sp).permute(0, 1, 3, 2).contiguous()
        return t, lepe

    q, k = im2cswin(q), im2cswin(k)
    v, lepe = get_lepe(v)
    attn = ((q * scale) @ k.transpose(-2, -1)).softmax(dim=-1)
    x = (attn @ v) + lepe
    x = x.transpose(1, 2).reshape(-1, H_sp * W_sp, C)
    x = x.view(B, H // H_sp, W // W_sp, H_sp, W_sp, -1).permute(0, 1, 3, 2, 4, 5).contiguous().view(B, H, W, -1)
    return x.view(B, -1, C)


def official_cswin(module, x):
    """CSWin block attention (``CSWinBlock.forward`` between norm1 and the residual). ``module``:
    our CrossShapedWindowAttention; x ``(B, H, W, C)`` with H, W multiples of the split size."""
    B, H, W, C = x.shape
    qkv = module.qkv(x.reshape(B, H * W, C)).reshape(B, -1, 3, C).permute(2, 0, 1, 3)
    if module.full:
        out = _official_lepe_attention(qkv, module.attns[0].get_v, H, W, H, W, module.num_heads, module.scale)
    else:
        sw, heads = module.split_size, module.num_heads // 2
        out = torch.cat([
            _official_lepe_attention(qkv[..., :C // 2], module.attns[0].get_v, H, W, H, sw, heads, module.scale),
            _official_lepe_attention(qkv[..., C // 2:], module.attns[1].get_v, H, W, sw, W, heads, module.scale)],
            dim=2)
    return module.proj(out).reshape(B, H, W, C)


def official_slide(module, x):
    """Slide-Swin ``SlideAttention.forward`` (slide stages: the window is the whole map, shift 0):
    per-head ``[q|k|v]`` channels, q scaled, keys and values through the fixed one-hot ``dep_conv``
    plus the learnable ``dep_conv1`` (two convolutions), the position bias added to the keys,
    softmax over the ka² neighbours. ``module``: our SlideAttention; x ``(B, H, W, C)``."""
    B, H, W, C = x.shape
    heads, ka = module.num_heads, module.kernel_size
    hd = C // heads
    qkv = module.qkv(x).permute(0, 3, 1, 2).reshape(B * heads, 3 * hd, H, W)
    q, k, v = qkv[:, :hd], qkv[:, hd:2 * hd], qkv[:, 2 * hd:]
    q = q.reshape(B, heads, hd, 1, H, W) * module.scale
    k = (module.dep_conv(k) + module.dep_conv1(k)).reshape(B, heads, hd, ka * ka, H, W)
    v = (module.dep_conv(v) + module.dep_conv1(v)).reshape(B, heads, hd, ka * ka, H, W)
    k = k + module.relative_position_bias_table
    attn = (q * k).sum(2, keepdim=True).softmax(dim=3)
    out = (attn * v).sum(3).reshape(B, C, H, W).permute(0, 2, 3, 1)
    return module.proj(out)


def official_msdeform_core(value, spatial_shapes, sampling_locations, attention_weights):
    """Deformable DETR's pure-PyTorch ``ms_deform_attn_core_pytorch``: every level sampled with
    ``grid_sample`` at ``2 loc - 1``, the samples of all levels stacked, weighted and summed (autograd
    keeps the stacked L x K samples for backward)."""
    N, S, M, D = value.shape
    _, Lq, M, L, K, _ = sampling_locations.shape
    value_list = value.split([H * W for H, W in spatial_shapes], dim=1)
    grids = 2 * sampling_locations - 1
    sampled = []
    for level, (H, W) in enumerate(spatial_shapes):
        value_l = value_list[level].flatten(2).transpose(1, 2).reshape(N * M, D, H, W)
        grid_l = grids[:, :, :, level].transpose(1, 2).flatten(0, 1)
        sampled.append(torch.nn.functional.grid_sample(value_l, grid_l, mode="bilinear", padding_mode="zeros",
                                                       align_corners=False))
    weights = attention_weights.transpose(1, 2).reshape(N * M, 1, Lq, L * K)
    out = (torch.stack(sampled, dim=-2).flatten(-2) * weights).sum(-1).view(N, M * D, Lq)
    return out.transpose(1, 2).contiguous()


def official_msdeform_attn(module, query, reference_points, input_flatten, spatial_shapes, padding_mask=None):
    """Deformable DETR's ``MSDeformAttn.forward`` on our module's parameters, with the pure core."""
    N, Lq, _ = query.shape
    M, L, K = module.n_heads, module.n_levels, module.n_points
    value = module.value_proj(input_flatten)
    if padding_mask is not None:
        value = value.masked_fill(padding_mask[..., None], float(0))
    value = value.view(N, input_flatten.shape[1], M, module.d_model // M)
    offsets = module.sampling_offsets(query).view(N, Lq, M, L, K, 2)
    weights = torch.softmax(module.attention_weights(query).view(N, Lq, M, L * K), -1).view(N, Lq, M, L, K)
    shapes = torch.tensor(spatial_shapes, dtype=query.dtype)
    if reference_points.shape[-1] == 2:
        normalizer = torch.stack([shapes[..., 1], shapes[..., 0]], -1)
        locations = reference_points[:, :, None, :, None, :] + offsets / normalizer[None, None, None, :, None, :]
    else:
        boxes = reference_points[:, :, None, :, None]
        locations = boxes[..., :2] + offsets / K * boxes[..., 2:] * 0.5
    return module.output_proj(official_msdeform_core(value, spatial_shapes, locations, weights))


def official_dat_attention(module, x):
    """DAT's ``DAttentionBaseline.forward`` (CVPR version: references and query grid at
    ``(i + 0.5) / n``, offset range ``1 / n``), step by step: einsums over ``(B heads, C, N)``,
    the table expanded per image and sampled with a ``(B G, HW, Ns, 2)`` displacement grid, the
    logits and their softmax materialised. ``module``: our DeformableAttention; x ``(B, C, H, W)``
    at the map size its table was built for."""
    import torch.nn.functional as F
    B, C, H, W = x.shape
    G, M = module.groups, module.num_heads
    hd, cg = C // M, C // G
    q = module.proj_q(x)
    offset = module.conv_offset(q.reshape(B * G, cg, H, W))
    Hk, Wk = offset.shape[2:]
    offset = offset.tanh().mul(torch.tensor([1.0 / Hk, 1.0 / Wk], dtype=x.dtype).reshape(1, 2, 1, 1))
    offset = offset.mul(module.offset_range_factor).permute(0, 2, 3, 1)

    def grid(h, w):
        ys = torch.linspace(0.5, h - 0.5, h, dtype=x.dtype)
        xs = torch.linspace(0.5, w - 0.5, w, dtype=x.dtype)
        ref = torch.stack(torch.meshgrid(ys, xs, indexing="ij"), -1)
        ref[..., 1].div_(w).mul_(2).sub_(1)
        ref[..., 0].div_(h).mul_(2).sub_(1)
        return ref[None].expand(B * G, -1, -1, -1)
    pos = offset + grid(Hk, Wk)
    sampled = F.grid_sample(x.reshape(B * G, cg, H, W), pos[..., (1, 0)], mode="bilinear", align_corners=True)
    sampled = sampled.reshape(B, C, 1, Hk * Wk)
    q = q.reshape(B * M, hd, H * W)
    k = module.proj_k(sampled).reshape(B * M, hd, Hk * Wk)
    v = module.proj_v(sampled).reshape(B * M, hd, Hk * Wk)
    attn = torch.einsum("b c m, b c n -> b m n", q, k).mul(hd ** -0.5)
    rpe = module.rpe_table[None].expand(B, -1, -1, -1)
    displacement = (grid(H, W).reshape(B * G, H * W, 2).unsqueeze(2)
                    - pos.reshape(B * G, Hk * Wk, 2).unsqueeze(1)).mul(0.5)
    bias = F.grid_sample(rearrange(rpe, "b (g c) h w -> (b g) c h w", g=G), displacement[..., (1, 0)],
                         mode="bilinear", align_corners=True)
    attn = (attn + bias.reshape(B * M, H * W, Hk * Wk)).softmax(dim=2)
    out = torch.einsum("b m n, b c n -> b c m", attn, v).reshape(B, C, H, W)
    return module.proj_out(out)


def official_window_attention(module, x):
    """DAT's ``LocalAttention`` / ``ShiftWindowAttention.forward``: roll, windows by einops,
    q scaled, einsum logits + the indexed bias + the ``-100`` ``attn_mask`` buffer, softmax, roll
    back. ``module``: our WindowAttention; x ``(B, C, H, W)`` at the buffer's map size."""
    B, C, H, W = x.shape
    w, s, M = module.window, module.shift, module.num_heads
    if s:
        x = torch.roll(x, shifts=(-s, -s), dims=(2, 3))
    r1, r2 = H // w, W // w
    tokens = rearrange(x, "b c (r1 h1) (r2 w1) -> (b r1 r2) (h1 w1) c", h1=w, w1=w)
    q, k, v = torch.chunk(module.proj_qkv(tokens), 3, dim=2)
    q = q * (C // M) ** -0.5
    q, k, v = [rearrange(t, "b n (h c1) -> b h n c1", h=M) for t in (q, k, v)]
    attn = torch.einsum("b h m c, b h n c -> b h m n", q, k)
    bias = module.relative_position_bias_table[module.relative_position_index.view(-1)].view(w * w, w * w, -1)
    attn = attn + bias.permute(2, 0, 1).unsqueeze(0)
    if s:
        nW = module.attn_mask.shape[0]
        attn = rearrange(attn, "(b n) h w1 w2 -> b n h w1 w2", n=nW) + module.attn_mask.reshape(1, nW, 1, w * w, w * w)
        attn = rearrange(attn, "b n h w1 w2 -> (b n) h w1 w2")
    out = torch.einsum("b h m n, b h n c -> b h m c", attn.softmax(dim=3), v)
    out = module.proj_out(rearrange(out, "b h n c1 -> b n (h c1)"))
    out = rearrange(out, "(b r1 r2) (h1 w1) c -> b c (r1 h1) (r2 w1)", r1=r1, r2=r2, h1=w, w1=w)
    return torch.roll(out, shifts=(s, s), dims=(2, 3)) if s else out


def official_depatch(module, x):
    """DPT's ``Simple_DePatch.forward`` at its build size: the code from the patch features, the wh
    bias added, ``pointwhCoder.decode`` against the ``anchor`` buffer, ``meshgrid`` by linear
    interpolation and ``repeat_interleave``, then Deformable DETR's pure core with one head,
    level and point and unit weights, ``output_proj``, ``norm``. ``module``: our DePatchEmbed."""
    import torch.nn.functional as F
    B, C, H, W = x.shape
    n, anchor = module.points, module.box_coder.anchor.to(x.dtype)
    P = anchor.shape[0]
    side = int(P ** 0.5)
    feats = module.patch_embed.norm(module.patch_embed.proj(x).flatten(2).transpose(1, 2))
    code = module.offset_predictor(F.gelu(feats))
    code = torch.cat([code[:, :, :2], code[:, :, 2:] + module.box_coder.wh_bias], dim=-1)
    pixel = 1.0 / side
    dx, dy = torch.tanh(code[:, :, 0]) * pixel, torch.tanh(code[:, :, 1]) * pixel
    dw, dh = F.relu(torch.tanh(code[:, :, 2])) * pixel, F.relu(torch.tanh(code[:, :, 3])) * pixel
    boxes = torch.stack([dx + anchor[:, 0] - dw, dy + anchor[:, 1] - dh, dx + anchor[:, 0] + dw,
                         dy + anchor[:, 1] + dh], dim=-1).clamp(0.0, 1.0)
    xs = F.interpolate(boxes[:, :, 0::2], size=n, mode="linear", align_corners=True)
    ys = F.interpolate(boxes[:, :, 1::2], size=n, mode="linear", align_corners=True)
    xs, ys = xs.unsqueeze(3).repeat_interleave(n, dim=3), ys.unsqueeze(2).repeat_interleave(n, dim=2)
    locations = torch.stack([xs, ys], dim=-1).reshape(B, P * n * n, 1, 1, 1, 2)
    value = x.reshape(B, C, 1, H * W).transpose(1, 3)  # (B, HW, 1 head, C)
    out = official_msdeform_core(value, [(H, W)], locations, torch.ones(B, P * n * n, 1, 1, 1, dtype=x.dtype))
    out = module.output_proj(out.reshape(B, P, n * n * C))
    return module.norm(out).transpose(1, 2).reshape(B, -1, side, side)


def official_dpt_logits(model, x):
    """DPT's ``DeformablePatchTransformer.forward`` at its build size from the official state_dict
    names: stage 1's conv patch embedding + ``pos_embed1``, :func:`official_depatch` +
    ``pos_embedK`` into stages 2-4, PVT blocks (spatial-reduction attention with explicit
    ``softmax(q k^T scale)``), the class token before stage 4, ``norm``, ``head`` of the token."""
    import torch.nn.functional as F
    state = model.state_dict()
    B = x.shape[0]

    def block(blk, t, H, W):
        attn, (N, C) = blk.attn, t.shape[1:]
        y = blk.norm1(t)
        q = attn.q(y).reshape(B, N, attn.num_heads, -1).permute(0, 2, 1, 3)
        if attn.sr_ratio > 1:
            y = attn.norm(attn.sr(y.permute(0, 2, 1).reshape(B, C, H, W)).reshape(B, C, -1).permute(0, 2, 1))
        kv = attn.kv(y).reshape(B, -1, 2, attn.num_heads, C // attn.num_heads).permute(2, 0, 3, 1, 4)
        a = (q @ kv[0].transpose(-2, -1) * (C // attn.num_heads) ** -0.5).softmax(dim=-1)
        t = t + attn.proj((a @ kv[1]).transpose(1, 2).reshape(B, N, C))
        return t + blk.mlp(blk.norm2(t))
    embed = model.patch_embed1
    t = embed.norm(embed.proj(x).flatten(2).transpose(1, 2)) + state["pos_embed1"]
    H = W = x.shape[-1] // embed.proj.stride[0]
    for i in range(1, 5):
        if i > 1:
            grid = official_depatch(model.get_submodule(f"patch_embed{i}"), t.transpose(1, 2).reshape(B, -1, H, W))
            H, W = grid.shape[-2:]
            t = grid.flatten(2).transpose(1, 2)
            if i == 4:
                t = torch.cat([model.cls_token.expand(B, -1, -1), t], dim=1)
            t = t + state[f"pos_embed{i}"]
        for blk in model.get_submodule(f"block{i}"):
            t = block(blk, t, H, W)
    return model.head(F.layer_norm(t, t.shape[-1:], model.norm.weight, model.norm.bias, model.norm.eps)[:, 0])


def official_dat_logits(model, x):
    """DAT's ``DAT.forward`` at its build size (maps divisible by the windows): ``patch_proj``;
    per stage and block ``x = attn(LN(x)) + x``, ``x = mlp(LN(x)) + x`` with the attentions in
    their official formulations (:func:`official_window_attention`, :func:`official_dat_attention`);
    ``down_projs`` between stages; ``cls_norm``, average pool, ``cls_head``."""
    from video_sparse.layers.dat import DeformableAttention
    x = model.patch_proj(x)
    for i, stage in enumerate(model.stages):
        for d, attn in enumerate(stage.attns):
            official = official_dat_attention if isinstance(attn, DeformableAttention) else official_window_attention
            x = official(attn, stage.layer_norms[2 * d](x)) + x
            x = stage.mlps[d](stage.layer_norms[2 * d + 1](x)) + x
        if i < 3:
            x = model.down_projs[i](x)
    return model.cls_head(model.cls_norm(x).mean(dim=(2, 3)))
