"""Slow, obviously-correct SIFA: a loop transcription of the spec, for tests only (float64).

Every output element is computed from scalars with the official rules: pixel-centre bilinear
interpolation, each corner outside the frame reads zero, and the whole sample is zero unless
-1 < y < H and -1 < x < W. Written with torch scalar ops so autograd gives reference gradients.
"""
import math

import torch


def _bilinear(frame, c, y, x):
    """frame (C, H, W); scalar tensors y, x. Zero unless -1 < y < H and -1 < x < W."""
    H, W = frame.shape[-2:]
    if not (-1 < y.item() < H and -1 < x.item() < W):
        return frame.new_zeros(())
    y0, x0 = math.floor(y.item()), math.floor(x.item())
    total = frame.new_zeros(())
    for yy, wy in ((y0, (y0 + 1) - y), (y0 + 1, y - y0)):
        for xx, wx in ((x0, (x0 + 1) - x), (x0 + 1, x - x0)):
            if 0 <= yy < H and 0 <= xx < W:
                total = total + wy * wx * frame[c, yy, xx]
    return total


def sifa_reference(features, offsets, kernel_size=3, dilation=1, groups=1, normalize="none"):
    N, C, T, H, W = features.shape
    K = kernel_size
    pad = (dilation * (K - 1) + 1) // 2
    cg = C // groups
    out = [[[[[features[n, c, t, h, w] for w in range(W)] for h in range(H)] for t in range(T)]
             for c in range(C)] for n in range(N)]
    for n in range(N):
        for t in range(T - 1):
            nxt = features[n, :, t + 1]
            for h in range(H):
                for w in range(W):
                    samples = []  # per tap: list of C sampled values
                    for i in range(K):
                        for j in range(K):
                            k = i * K + j
                            y = h - pad + i * dilation + offsets[n, 2 * k, t + 1, h, w]
                            x = w - pad + j * dilation + offsets[n, 2 * k + 1, t + 1, h, w]
                            samples.append([_bilinear(nxt, c, y, x) for c in range(C)])
                    for g in range(groups):
                        chans = range(g * cg, (g + 1) * cg)
                        dots = [sum(features[n, c, t, h, w] * s[c] for c in chans) for s in samples]
                        if normalize == "none":
                            weights = [d / C for d in dots]
                        else:
                            weights = list(torch.softmax(torch.stack(dots) / math.sqrt(C), 0))
                        for c in chans:
                            out[n][c][t][h][w] = out[n][c][t][h][w] + sum(a * s[c] for a, s in zip(weights, samples))
    return torch.stack([torch.stack([torch.stack([torch.stack([torch.stack(row) for row in plane])
                                                  for plane in ch]) for ch in sample]) for sample in out])
