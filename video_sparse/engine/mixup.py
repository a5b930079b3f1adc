"""Mixup and CutMix on video batches, with label smoothing folded into the soft targets."""
from __future__ import annotations

import math

import numpy as np
import torch


def smooth_one_hot(label: torch.Tensor, num_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    """``(N,)`` class ids -> ``(N, num_classes)`` targets: ``1 - smoothing + smoothing / C`` on the
    class, ``smoothing / C`` elsewhere (the targets of ``cross_entropy(label_smoothing=...)``)."""
    off = smoothing / num_classes
    target = torch.full((len(label), num_classes), off, device=label.device)
    return target.scatter_(1, label[:, None], 1.0 - smoothing + off)


def cutmix_box(rng: np.random.Generator, h: int, w: int, lam: float) -> tuple[int, int, int, int]:
    """A box ``(y0, y1, x0, x1)`` covering about ``1 - lam`` of an ``h x w`` frame, centred at a
    uniform pixel and clipped at the borders."""
    ratio = math.sqrt(1.0 - lam)
    ch, cw = int(h * ratio), int(w * ratio)
    cy, cx = int(rng.integers(h)), int(rng.integers(w))
    return max(cy - ch // 2, 0), min(cy + ch // 2, h), max(cx - cw // 2, 0), min(cx + cw // 2, w)


class MixupCutmix:
    """Mixes each clip of a batch with the clip at the mirrored batch position (``i`` with
    ``N - 1 - i``).

    With probability ``prob`` a batch is mixed: by CutMix (probability ``switch_prob`` when both
    are enabled) — a box of every frame is pasted from the partner clip, ``lam`` = the kept area —
    or by Mixup — ``lam * x + (1 - lam) * partner``; ``lam ~ Beta(alpha, alpha)``. Targets are
    ``lam * smooth(y) + (1 - lam) * smooth(partner's y)``.

    Call with a batch ``(N, 3, T, H, W)``, labels ``(N,)`` and a numpy generator; returns the mixed
    batch (a new tensor) and soft targets ``(N, num_classes)``.
    """

    def __init__(self, num_classes: int, mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0, prob: float = 1.0,
                 switch_prob: float = 0.5, label_smoothing: float = 0.0):
        if mixup_alpha < 0 or cutmix_alpha < 0:
            raise ValueError(f"mixup/cutmix alphas must be >= 0, got {mixup_alpha}, {cutmix_alpha}")
        self.num_classes, self.mixup_alpha, self.cutmix_alpha = num_classes, mixup_alpha, cutmix_alpha
        self.prob, self.switch_prob, self.label_smoothing = prob, switch_prob, label_smoothing

    def __call__(self, video: torch.Tensor, label: torch.Tensor,
                 rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        target = smooth_one_hot(label, self.num_classes, self.label_smoothing)
        enabled = self.mixup_alpha > 0 or self.cutmix_alpha > 0
        if not enabled or rng.random() >= self.prob:
            return video, target
        use_cutmix = self.cutmix_alpha > 0 and (self.mixup_alpha == 0 or rng.random() < self.switch_prob)
        lam = float(rng.beta(*(2 * [self.cutmix_alpha if use_cutmix else self.mixup_alpha])))
        partner = video.flip(0)
        if use_cutmix:
            h, w = video.shape[-2:]
            y0, y1, x0, x1 = cutmix_box(rng, h, w, lam)
            video = video.clone()
            video[..., y0:y1, x0:x1] = partner[..., y0:y1, x0:x1]
            lam = 1.0 - (y1 - y0) * (x1 - x0) / (h * w)
        else:
            video = video * lam + partner * (1.0 - lam)
        return video, target * lam + target.flip(0) * (1.0 - lam)
