"""Dense, obviously-correct references of the sparse spatial attentions, for tests only (float64).

Each builds the full token-by-token attention of a map and restricts it with a mask written out
by loops over pixels, so it shares no indexing, padding or shifting logic with the fast versions.
"""
import math

import torch


def dilated_attention_reference(q, k, v, dilation, kernel_size=3, scale=None):
    """MSDA core. q, k, v ``(B, heads, d, H, W)``. Each pixel attends to its ``K x K`` neighbours at
    ``dilation``; a neighbour outside the map is a key with logit 0 and value 0."""
    B, heads, d, H, W = q.shape
    scale = d ** -0.5 if scale is None else scale
    pad = dilation * (kernel_size - 1) // 2
    n = H * W
    neighbour = torch.zeros(n, n, dtype=torch.bool)
    outside = torch.zeros(n, dtype=q.dtype)
    for y in range(H):
        for x in range(W):
            for i in range(kernel_size):
                for j in range(kernel_size):
                    yy, xx = y - pad + i * dilation, x - pad + j * dilation
                    if 0 <= yy < H and 0 <= xx < W:
                        neighbour[y * W + x, yy * W + xx] = True
                    else:
                        outside[y * W + x] += 1
    flat = lambda t: t.reshape(B, heads, d, n).transpose(-1, -2)  # noqa: E731
    scores = (flat(q) @ flat(k).transpose(-1, -2)) * scale
    scores = scores.masked_fill(~neighbour, -math.inf)
    top = torch.maximum(scores.amax(-1), torch.where(outside > 0, 0.0, -math.inf).to(q.dtype))
    e = torch.exp(scores - top[..., None])
    denominator = e.sum(-1) + outside * torch.exp(-top)
    out = (e @ flat(v)) / denominator[..., None]
    return out.transpose(-1, -2).reshape(B, heads, d, H, W)


def region_of_pixels(H, W, n_win):
    """Region index (row-major over ``n_win x n_win``) of every pixel, regions of
    ``ceil(H / n_win) x ceil(W / n_win)`` pixels from the top-left corner."""
    side_h, side_w = -(-H // n_win), -(-W // n_win)
    return torch.tensor([(y // side_h) * n_win + x // side_w for y in range(H) for x in range(W)])


def routing_reference(q, k, n_win, scale):
    """Routing logits ``(B, regions, regions)`` from the means over each region's pixels; regions
    without pixels get -inf as keys. q, k ``(B, H, W, c)``."""
    B, H, W, c = q.shape
    region = region_of_pixels(H, W, n_win)
    q_mean = q.new_zeros(B, n_win * n_win, c)
    k_mean = q.new_zeros(B, n_win * n_win, c)
    empty = torch.ones(n_win * n_win, dtype=torch.bool)
    for r in range(n_win * n_win):
        members = (region == r).nonzero().flatten()
        if len(members):
            empty[r] = False
            q_mean[:, r] = q.reshape(B, H * W, c)[:, members].mean(1)
            k_mean[:, r] = k.reshape(B, H * W, c)[:, members].mean(1)
    logits = (q_mean * scale) @ k_mean.transpose(-1, -2)
    return logits.masked_fill(empty, -math.inf)


def routing_attention_reference(q, k, v, n_win, topk, num_heads, scale):
    """BRA core: every pixel attends (per head, contiguous channel chunks) to the pixels of the
    ``topk`` regions routed from its region. q, k ``(B, H, W, c)``, v ``(B, H, W, dv)``."""
    B, H, W, c = q.shape
    dv = v.shape[-1]
    region = region_of_pixels(H, W, n_win)
    routes = routing_reference(q.detach(), k.detach(), n_win, scale).topk(topk, dim=-1).indices
    out = []
    for b in range(B):
        allowed = torch.zeros(H * W, H * W, dtype=torch.bool)
        for qi in range(H * W):
            for r in routes[b, region[qi]]:
                allowed[qi, region == r] = True
        heads = []
        for m in range(num_heads):
            qm = q[b].reshape(H * W, c)[:, m * c // num_heads:(m + 1) * c // num_heads]
            km = k[b].reshape(H * W, c)[:, m * c // num_heads:(m + 1) * c // num_heads]
            vm = v[b].reshape(H * W, dv)[:, m * dv // num_heads:(m + 1) * dv // num_heads]
            scores = ((qm * scale) @ km.T).masked_fill(~allowed, -math.inf)
            heads.append(scores.softmax(-1) @ vm)
        out.append(torch.cat(heads, -1).reshape(H, W, dv))
    return torch.stack(out)


def routing_margin(q, k, n_win, topk, scale):
    """Smallest gap between the k-th and (k+1)-th routing logit over all query regions (inf when
    every region is kept): tests pick inputs with a clear margin so that top-k has no ties."""
    logits = routing_reference(q, k, n_win, scale)
    if topk >= logits.shape[-1]:
        return math.inf
    H, W = q.shape[1:3]
    has_pixels = torch.isin(torch.arange(n_win * n_win), region_of_pixels(H, W, n_win))
    s = logits[:, has_pixels].sort(dim=-1, descending=True).values  # queries of empty regions do not exist
    gap = s[..., topk - 1] - s[..., topk]
    return torch.nan_to_num(gap, nan=math.inf).min().item()  # -inf - -inf: only empty regions left


def stripe_attention_reference(q, k, v, window_h, window_w, num_heads, scale, lepe_weight, lepe_bias):
    """CSWin branch core. q, k, v ``(B, H, W, C)``. Windows of ``window_h x window_w`` pixels (None:
    the whole height / width) from the top-left corner, the last ones cut by the map's border; each
    pixel attends (per head) to the pixels of its window, plus LePE: the 3x3 depthwise conv of V
    summed over the neighbours that lie in the same window (and in the map), plus its bias."""
    B, H, W, C = q.shape
    hs, ws = window_h or H, window_w or W
    window = torch.tensor([(y // hs) * (-(-W // ws)) + x // ws for y in range(H) for x in range(W)])
    same = window[:, None] == window[None, :]
    d = C // num_heads
    flat = lambda t: t.reshape(B, H * W, C)  # noqa: E731
    heads = []
    for m in range(num_heads):
        chunk = slice(m * d, (m + 1) * d)
        scores = (flat(q)[..., chunk] @ flat(k)[..., chunk].transpose(-1, -2)) * scale
        heads.append(scores.masked_fill(~same, -math.inf).softmax(-1) @ flat(v)[..., chunk])
    out = torch.cat(heads, -1).reshape(B, H, W, C)
    lepe = torch.zeros_like(out) + (0 if lepe_bias is None else lepe_bias)
    for y in range(H):
        for x in range(W):
            for i in range(3):
                for j in range(3):
                    yy, xx = y + i - 1, x + j - 1
                    if 0 <= yy < H and 0 <= xx < W and window[yy * W + xx] == window[y * W + x]:
                        lepe[:, y, x] = lepe[:, y, x] + lepe_weight[:, 0, i, j] * v[:, yy, xx]
    return out + lepe


def slide_attention_reference(q, k, v, num_heads, fixed_bias, deform_weight, deform_bias, key_bias, kernel_size=3):
    """Slide attention core, pixel by pixel. q, k, v ``(B, C, H, W)`` (q scaled). For neighbour ``i``
    at offset ``(di, dj)``: key/value = the map at that offset (0 outside) + ``fixed_bias[c * ka² + i]``
    + sum over the ka x ka window around that pixel of ``deform_weight[c * ka² + i]`` times the map
    (0 outside) + ``deform_bias[c * ka² + i]``; keys also + ``key_bias[h, i]``; softmax over i."""
    B, C, H, W = q.shape
    hd, taps, p = C // num_heads, kernel_size * kernel_size, kernel_size // 2

    def at(t, b, ch, y, x):
        return t[b, ch, y, x] if 0 <= y < H and 0 <= x < W else t.new_zeros(())

    out = torch.zeros_like(q)
    for b in range(B):
        for h in range(num_heads):
            for y in range(H):
                for x in range(W):
                    logits, vals = [], []
                    for i in range(taps):
                        di, dj = i // kernel_size - p, i % kernel_size - p
                        key, val = [], []
                        for c in range(hd):
                            ch, o = h * hd + c, c * taps + i
                            conv_k = sum(deform_weight[o, 0, a, e] * at(k, b, ch, y + a - p, x + e - p)
                                         for a in range(kernel_size) for e in range(kernel_size))
                            conv_v = sum(deform_weight[o, 0, a, e] * at(v, b, ch, y + a - p, x + e - p)
                                         for a in range(kernel_size) for e in range(kernel_size))
                            key.append(at(k, b, ch, y + di, x + dj) + fixed_bias[o] + conv_k + deform_bias[o]
                                       + key_bias[0, h, 0, i, 0, 0])
                            val.append(at(v, b, ch, y + di, x + dj) + fixed_bias[o] + conv_v + deform_bias[o])
                        logits.append(sum(q[b, h * hd + c, y, x] * key[c] for c in range(hd)))
                        vals.append(torch.stack(val))
                    attn = torch.stack(logits).softmax(0)
                    out[b, h * hd:(h + 1) * hd, y, x] = (attn[:, None] * torch.stack(vals)).sum(0)
    return out


def msdeform_attention_reference(value, spatial_shapes, locations, weights):
    """MSDeformAttn core by loops over queries, heads, levels and points: the bilinear sample at
    pixel ``(loc_x W - 0.5, loc_y H - 0.5)``, each of its four neighbours read only if inside the
    map (zero outside), weighted. value ``(N, S, M, D)``, locations ``(N, Lq, M, L, K, 2)`` as
    ``(x, y)``, weights ``(N, Lq, M, L, K)``; returns ``(N, Lq, M D)``."""
    N, S, M, D = value.shape
    Lq, L, K = locations.shape[1], locations.shape[3], locations.shape[4]
    starts = [sum(h * w for h, w in spatial_shapes[:level]) for level in range(L)]
    out = value.new_zeros(N, Lq, M, D)
    for n in range(N):
        for q in range(Lq):
            for m in range(M):
                for level, (H, W) in enumerate(spatial_shapes):
                    for k in range(K):
                        x = locations[n, q, m, level, k, 0] * W - 0.5
                        y = locations[n, q, m, level, k, 1] * H - 0.5
                        x0, y0 = math.floor(x.item()), math.floor(y.item())
                        sample = value.new_zeros(D)
                        for yy, wy in ((y0, y0 + 1 - y), (y0 + 1, y - y0)):
                            for xx, wx in ((x0, x0 + 1 - x), (x0 + 1, x - x0)):
                                if 0 <= yy < H and 0 <= xx < W:
                                    sample = sample + wy * wx * value[n, starts[level] + yy * W + xx, m]
                        out[n, q, m] = out[n, q, m] + weights[n, q, m, level, k] * sample
    return out.reshape(N, Lq, M * D)


def bilinear_align_corners_reference(image, y, x):
    """``image`` ``(C, H, W)`` read at normalised ``(y, x)`` (tensors of any equal shape): -1 / 1
    are the centres of the first / last pixel (``align_corners=True``), the four neighbours weighted
    by their distances, those outside the map read as zero. Returns ``(C, *y.shape)``."""
    C, H, W = image.shape
    py, px = (y + 1) / 2 * (H - 1), (x + 1) / 2 * (W - 1)
    y0, x0 = py.detach().floor(), px.detach().floor()
    out = image.new_zeros(C, *y.shape)
    for yy, wy in ((y0, y0 + 1 - py), (y0 + 1, py - y0)):
        for xx, wx in ((x0, x0 + 1 - px), (x0 + 1, px - x0)):
            inside = (yy >= 0) & (yy <= H - 1) & (xx >= 0) & (xx <= W - 1)
            index = (yy.clamp(0, H - 1) * W + xx.clamp(0, W - 1)).long()
            values = image.reshape(C, H * W)[:, index.reshape(-1)].reshape(C, *y.shape)
            out = out + values * (wy * wx * inside)
    return out


def deformable_attention_reference(module, x):
    """DAT's deformable attention (CVPR version) written from its definition, per image and head.
    ``module``: our DeformableAttention (its parameters; the offset network run as the official
    ``conv_offset``); x ``(B, C, H, W)``; the position table resized as the module does."""
    from video_sparse.layers.dat import resize_table
    B, C, H, W = x.shape
    M, G = module.num_heads, module.groups
    hd, cg = C // M, C // G
    conv1x1 = lambda conv, t: torch.einsum("oc,bchw->bohw", conv.weight[:, :, 0, 0], t) + conv.bias.view(1, -1, 1, 1)  # noqa: E731
    q = conv1x1(module.proj_q, x)
    table = resize_table(module.rpe_table, (2 * H - 1, 2 * W - 1))
    out = torch.zeros_like(x)
    for b in range(B):
        positions, samples = [], []
        for g in range(G):
            offset = module.conv_offset(q[b:b + 1, g * cg:(g + 1) * cg])[0]  # (2, Hk, Wk): (dy, dx)
            Hk, Wk = offset.shape[1:]
            ref_y = torch.tensor([[(i + 0.5) / Hk * 2 - 1 for _ in range(Wk)] for i in range(Hk)], dtype=x.dtype)
            ref_x = torch.tensor([[(j + 0.5) / Wk * 2 - 1 for j in range(Wk)] for _ in range(Hk)], dtype=x.dtype)
            py = (ref_y + torch.tanh(offset[0]) / Hk * module.offset_range_factor).reshape(-1)
            px = (ref_x + torch.tanh(offset[1]) / Wk * module.offset_range_factor).reshape(-1)
            positions.append((py, px))
            samples.append(bilinear_align_corners_reference(x[b, g * cg:(g + 1) * cg], py, px))  # (cg, Ns)
        sampled = torch.cat(samples)  # key j: every group's sample j, each at its group's position j
        qy = torch.tensor([(i + 0.5) / H * 2 - 1 for i in range(H) for _ in range(W)], dtype=x.dtype)
        qx = torch.tensor([(j + 0.5) / W * 2 - 1 for _ in range(H) for j in range(W)], dtype=x.dtype)
        for h in range(M):
            py, px = positions[h // (M // G)]  # a head's bias follows its group's positions
            rows = slice(h * hd, (h + 1) * hd)
            k = module.proj_k.weight[rows, :, 0, 0] @ sampled + module.proj_k.bias[rows, None]
            v = module.proj_v.weight[rows, :, 0, 0] @ sampled + module.proj_v.bias[rows, None]
            bias = bilinear_align_corners_reference(table[h:h + 1], (qy[:, None] - py[None]) / 2,
                                                    (qx[:, None] - px[None]) / 2)[0]  # (HW, Ns)
            logits = q[b, rows].reshape(hd, H * W).t() @ k * hd ** -0.5 + bias
            out[b, rows] = (logits.softmax(-1) @ v.t()).t().reshape(hd, H, W)
    return conv1x1(module.proj_out, out)


def window_attention_reference(module, x):
    """Swin / DAT window attention over the whole map with a dense mask from per-pixel rules: pixel
    ``(y, x)`` sits at ``(y - s) mod Hp, (x - s) mod Wp`` of the map padded to whole windows and
    rolled by the shift ``s``; a query sees the real pixels of its window, and with a shift only
    those of its band on each axis (rows below ``Hp - w``, then below ``Hp - s``, then the rest);
    the bias is the table's entry for their offset within the window. x ``(B, C, H, W)``."""
    B, C, H, W = x.shape
    w, s, M = module.window, module.shift, module.num_heads
    Hp, Wp = -(-H // w) * w, -(-W // w) * w
    hd = C // M

    def band(r, n):
        return 0 if not s or r < n - w else (1 if r < n - s else 2)
    pixels = [(y, xx) for y in range(H) for xx in range(W)]
    placed = [((y - s) % Hp, (xx - s) % Wp) for y, xx in pixels]
    allowed = torch.zeros(len(pixels), len(pixels), dtype=torch.bool)
    index = torch.zeros(len(pixels), len(pixels), dtype=torch.long)
    for i, (r, c) in enumerate(placed):
        for j, (r2, c2) in enumerate(placed):
            same_window = (r // w, c // w) == (r2 // w, c2 // w)
            same_band = band(r, Hp) == band(r2, Hp) and band(c, Wp) == band(c2, Wp)
            allowed[i, j] = same_window and same_band
            index[i, j] = (r % w - r2 % w + w - 1) * (2 * w - 1) + (c % w - c2 % w + w - 1)
    tokens = x.flatten(2).transpose(1, 2)  # (B, HW, C)
    q, k, v = (module.proj_qkv(tokens)).chunk(3, dim=-1)
    out = torch.zeros_like(tokens)
    for h in range(M):
        rows = slice(h * hd, (h + 1) * hd)
        logits = q[..., rows] @ k[..., rows].transpose(1, 2) * hd ** -0.5
        logits = logits + module.relative_position_bias_table[index, h]
        logits = logits.masked_fill(~allowed, float("-inf"))
        out[..., rows] = logits.softmax(-1) @ v[..., rows]
    return module.proj_out(out).transpose(1, 2).reshape(B, C, H, W)


def depatch_reference(module, x):
    """DPT's DePatch written from its definition, patch by patch: the predicted code plus the wh
    bias; the box ``centre +- half`` with ``centre = anchor + tanh(d) / n`` and
    ``half = relu(tanh(wh)) / n``, clamped to [0, 1]; 3 x 3 points from edge to edge, x-index major;
    each read at pixel ``loc * size - 0.5`` from its four neighbours (zero outside); the samples
    flattened as ``[point, channel]``, projected and normalised. ``module``: our DePatchEmbed."""
    B, C, H, W = x.shape
    s, n = module.stride, module.points
    rows, cols = -(-H // s), -(-W // s)
    padded = torch.nn.functional.pad(x, (0, (cols - 1) * s + 2 - W, 0, (rows - 1) * s + 2 - H))
    features = module.patch_embed.proj(padded)  # (B, dim, rows, cols)
    out = []
    for b in range(B):
        for i in range(rows):
            for j in range(cols):
                f = torch.nn.functional.gelu(module.patch_embed.norm(features[b, :, i, j]))
                dx, dy, w, h = module.offset_predictor(f) + torch.cat([x.new_zeros(2), module.box_coder.wh_bias])
                cx, cy = (j + 0.5) / cols + torch.tanh(dx) / cols, (i + 0.5) / rows + torch.tanh(dy) / rows
                hw, hh = torch.relu(torch.tanh(w)) / cols, torch.relu(torch.tanh(h)) / rows
                x0, x1 = (cx - hw).clamp(0, 1), (cx + hw).clamp(0, 1)
                y0, y1 = (cy - hh).clamp(0, 1), (cy + hh).clamp(0, 1)
                samples = []
                for a in range(n):  # x index major
                    for c in range(n):
                        px = (x0 + (x1 - x0) * a / (n - 1)) * W - 0.5
                        py = (y0 + (y1 - y0) * c / (n - 1)) * H - 0.5
                        fx, fy = math.floor(px.item()), math.floor(py.item())
                        sample = x.new_zeros(C)
                        for yy, wy in ((fy, fy + 1 - py), (fy + 1, py - fy)):
                            for xx, wx in ((fx, fx + 1 - px), (fx + 1, px - fx)):
                                if 0 <= yy < H and 0 <= xx < W:
                                    sample = sample + wy * wx * x[b, :, yy, xx]
                        samples.append(sample)
                out.append(module.norm(module.output_proj(torch.cat(samples))))
    return torch.stack(out).reshape(B, rows, cols, -1).permute(0, 3, 1, 2)
