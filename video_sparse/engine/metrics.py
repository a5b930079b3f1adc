"""Classification metrics, prediction tables and the confusion-matrix plot."""
from __future__ import annotations

import csv
import os
from typing import Sequence

import torch


def multi_head_loss(outputs: torch.Tensor | tuple[torch.Tensor, ...], target: torch.Tensor,
                    label_smoothing: float = 0.0) -> torch.Tensor:
    """Sum of the heads' cross-entropies (a single tensor is one head). ``target``: class ids
    ``(N,)`` or class probabilities ``(N, classes)`` (mixup/cutmix)."""
    heads = outputs if isinstance(outputs, (tuple, list)) else (outputs,)
    return sum(torch.nn.functional.cross_entropy(h.float(), target, label_smoothing=label_smoothing) for h in heads)


def multi_head_probs(outputs: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Average of the heads' softmaxes ``(N, classes)``."""
    heads = outputs if isinstance(outputs, (tuple, list)) else (outputs,)
    return torch.stack([h.float().softmax(-1) for h in heads]).mean(0)


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``cm[i, j]`` = number of videos of class i predicted as j."""
    return torch.bincount(target * num_classes + pred, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def classification_metrics(probs: torch.Tensor, target: torch.Tensor,
                           pairs: Sequence[tuple[int, int]] = ()) -> dict:
    """top1, top5, mean_class_acc (over classes present) and, with ``pairs``, pair_acc: the
    fraction of videos whose prediction falls in the right pair of classes."""
    n, c = probs.shape
    if n == 0:
        return {"top1": float("nan"), "top5": float("nan"), "mean_class_acc": float("nan")}
    topk = probs.topk(min(5, c), dim=1).indices
    correct = topk == target[:, None]
    pred = topk[:, 0]
    cm = confusion_matrix(pred, target, c)
    support = cm.sum(1)
    per_class = cm.diag()[support > 0].double() / support[support > 0]
    out = {"top1": correct[:, 0].double().mean().item(), "top5": correct.any(1).double().mean().item(),
           "mean_class_acc": per_class.mean().item()}
    if pairs:
        pair_of = torch.full((c,), -1, dtype=torch.long)
        for i, (a, b) in enumerate(pairs):
            pair_of[a] = pair_of[b] = i
        out["pair_acc"] = (pair_of[pred] == pair_of[target]).double().mean().item()
    return out


def write_predictions(path: str | os.PathLike, paths: Sequence[str], probs: torch.Tensor, labels: torch.Tensor,
                      class_names: Sequence[str], topk: int = 5) -> None:
    """CSV with one row per video: path, label, label_name, pred, pred_name, and the top-k
    classes with probabilities (``top1_name, top1_prob, ...``). Unknown labels are -1 / empty."""
    k = min(topk, probs.shape[1])
    values, indices = probs.topk(k, dim=1)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "label_name", "pred", "pred_name"]
                   + [f"top{i + 1}_{s}" for i in range(k) for s in ("name", "prob")])
        for p, lab, val, idx in zip(paths, labels.tolist(), values.tolist(), indices.tolist()):
            row = [p, lab, class_names[lab] if lab >= 0 else "", idx[0], class_names[idx[0]]]
            for v, i in zip(val, idx):
                row += [class_names[i], f"{v:.6f}"]
            w.writerow(row)


def plot_confusion_matrix(cm: torch.Tensor, class_names: Sequence[str], path: str | os.PathLike,
                          title: str = "confusion matrix") -> None:
    """Row-normalised confusion matrix as a PNG (counts annotated when there are <= 30 classes)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = len(class_names)
    norm = cm.double() / cm.sum(1, keepdim=True).clamp(min=1)
    side = min(4 + 0.35 * c, 40)
    fig, ax = plt.subplots(figsize=(side, side))
    im = ax.imshow(norm.numpy(), cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(c))
    ax.set_yticks(range(c))
    fontsize = max(3, min(9, 300 // max(c, 1)))
    ax.set_xticklabels(class_names, rotation=90, fontsize=fontsize)
    ax.set_yticklabels(class_names, fontsize=fontsize)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if c <= 30:
        for i in range(c):
            for j in range(c):
                if cm[i, j]:
                    ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=fontsize,
                            color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
