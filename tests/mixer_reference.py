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
