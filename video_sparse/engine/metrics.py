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
    pred, top5_hit = _topk_hits(probs, target)
    cm = confusion_matrix(pred, target, c)
    support = cm.sum(1)
    per_class = cm.diag()[support > 0].double() / support[support > 0]
    out = {"top1": (pred == target).double().mean().item(), "top5": top5_hit.double().mean().item(),
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
    classes with probabilities (``top1_name, top1_prob, ...``). Unknown labels are -1 / empty; a
    video that was not classified (NaN probabilities: unreadable, missing) has an empty prediction."""
    k = min(topk, probs.shape[1])
    classified = ~probs.isnan().any(1)
    values, indices = probs.nan_to_num(0.0).topk(k, dim=1)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "label_name", "pred", "pred_name"]
                   + [f"top{i + 1}_{s}" for i in range(k) for s in ("name", "prob")])
        for p, lab, val, idx, ok in zip(paths, labels.tolist(), values.tolist(), indices.tolist(), classified.tolist()):
            row = [p, lab, class_names[lab] if lab >= 0 else ""]
            if not ok:
                w.writerow(row + [""] * (2 + 2 * k))
                continue
            row += [idx[0], class_names[idx[0]]]
            for v, i in zip(val, idx):
                row += [class_names[i], f"{v:.6f}"]
            w.writerow(row)


def _topk_hits(probs: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(pred (N,), top5_hit (N,) bool)``; top-5 means top-``min(5, C)``. Shared by
    :func:`classification_metrics` and :func:`per_class_accuracy`: ties break the same way, so
    per-class counts add up to the overall top-1 and top-5."""
    topk = probs.topk(min(5, probs.shape[1]), dim=1).indices
    return topk[:, 0], (topk == target[:, None]).any(1)


def per_class_accuracy(probs: torch.Tensor, target: torch.Tensor, num_classes: int | None = None) -> list[dict]:
    """Per-class counts from class probabilities ``probs (N, C)`` and class ids ``target (N,)``.

    One dict per class, ordered by class id: ``class_id``, ``support`` (videos of that class),
    ``top1_correct``, ``top5_correct``, ``top1_acc`` and ``top5_acc`` (``None`` without support),
    ``predicted_as_most`` (class id of the most frequent wrong prediction for that class, lowest id
    on ties; ``None`` when there is none) and ``num_predicted`` (videos predicted as that class).
    ``num_classes`` defaults to ``C``.
    """
    n, c = probs.shape
    if num_classes is not None and num_classes != c:
        raise ValueError(f"probs has {c} classes, num_classes={num_classes}")
    if n and not (0 <= int(target.min()) and int(target.max()) < c):
        raise ValueError(f"target ids must lie in [0, {c}), got [{int(target.min())}, {int(target.max())}]")
    pred, top5_hit = _topk_hits(probs, target)
    cm = confusion_matrix(pred, target, c)
    support = cm.sum(1)
    top5_correct = torch.bincount(target[top5_hit], minlength=c)
    wrong = cm.clone()
    wrong.fill_diagonal_(0)
    # max(dim) returns the first maximal index: "lowest id on ties", deterministic across runs.
    most_wrong_count, most_wrong = wrong.max(1)
    rows = []
    for i in range(c):
        s, t1, t5 = int(support[i]), int(cm[i, i]), int(top5_correct[i])
        rows.append({"class_id": i, "support": s, "top1_correct": t1, "top5_correct": t5,
                     "top1_acc": t1 / s if s else None, "top5_acc": t5 / s if s else None,
                     "predicted_as_most": int(most_wrong[i]) if most_wrong_count[i] > 0 else None,
                     "num_predicted": int(cm[:, i].sum())})
    return rows


def _ratio(num: int, den: int, places: int = 6) -> str:
    """``num / den`` rounded half up to ``places`` decimals in integer arithmetic, so that the CSV
    holds the exact decimal rounding (1/128 -> 0.007813) rather than a binary float's."""
    scale = 10 ** places
    q = (2 * num * scale + den) // (2 * den)
    return f"{q // scale}.{q % scale:0{places}d}"


def write_per_class(path: str | os.PathLike, probs: torch.Tensor, target: torch.Tensor,
                    class_names: Sequence[str]) -> None:
    """CSV with one row per class, ordered by class id: ``class_id, class_name, support, top1_acc,
    top5_acc, predicted_as_most, num_predicted`` (see :func:`per_class_accuracy`). ``probs (N, C)``,
    ``target (N,)``. Accuracies have 6 decimals and are empty for classes without videos;
    ``predicted_as_most`` is a class name, empty when no video of the class was misclassified."""
    if len(class_names) != probs.shape[1]:
        raise ValueError(f"{len(class_names)} class names for {probs.shape[1]} classes")
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["class_id", "class_name", "support", "top1_acc", "top5_acc", "predicted_as_most",
                    "num_predicted"])
        for r in per_class_accuracy(probs, target):
            s, most = r["support"], r["predicted_as_most"]
            w.writerow([r["class_id"], class_names[r["class_id"]], s,
                        _ratio(r["top1_correct"], s) if s else "", _ratio(r["top5_correct"], s) if s else "",
                        class_names[most] if most is not None else "", r["num_predicted"]])


_NAMED_AXES_MAX = 50      # above this, tick labels are class ids: names would overlap
_ANNOTATE_MAX = 30        # above this, counts no longer fit in the cells
_MAX_NAME_CHARS = 40
_MAX_FIGURE_INCHES = 30   # <= 3000 px a side at dpi 100 (200 classes: ~2200 px, ~0.1 MB)


def _shorten(name: str, width: int = _MAX_NAME_CHARS) -> str:
    return name if len(name) <= width else name[:width - 1] + "\N{HORIZONTAL ELLIPSIS}"


def _tick_step(c: int, max_ticks: int = 25) -> int:
    """Smallest round step that leaves at most ``max_ticks`` ticks on an axis of ``c`` classes."""
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500):
        if c <= step * max_ticks:
            return step
    return -(-c // max_ticks)


def plot_confusion_matrix(cm: torch.Tensor, class_names: Sequence[str], path: str | os.PathLike,
                          title: str = "confusion matrix", *, top1: float | None = None) -> None:
    """Confusion matrix ``cm (C, C)`` (``cm[i, j]``: videos of class i predicted as j) as a PNG.

    Colours are row-normalised (the fraction of each true class predicted as j); rows of classes
    without videos are grey. Up to 50 classes the axes carry the class names (cut to 40 characters),
    above that every k-th class id, the names being in ``per_class.csv``. Counts are written in the
    cells up to 30 classes. The figure grows with C up to 30 inches (dpi 100). ``top1``: overall
    top-1 accuracy in [0, 1], shown in the title.
    """
    # The Agg canvas directly rather than pyplot: no global backend switch and no figure registry
    # to leak into when this runs inside a training process or a notebook.
    import matplotlib
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    c = len(class_names)
    if tuple(cm.shape) != (c, c):
        raise ValueError(f"confusion matrix of shape {tuple(cm.shape)} for {c} class names")
    counts = cm.long().numpy()
    support = counts.sum(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = np.ma.masked_invalid(counts / support)  # rows without support: 0/0 -> masked -> grey

    named, fontsize = c <= _NAMED_AXES_MAX, 8
    if named:
        labels = [_shorten(str(n)) for n in class_names]
        # Inches per class, plus room for the longest label on the left and at the bottom
        # (~0.6 em per character).
        cell, margin = 0.3, 1.5 + max(map(len, labels), default=0) * fontsize * 0.6 / 72
    else:
        cell, margin = 0.12, 2.0
    side = min(max(5.0, margin + cell * c), _MAX_FIGURE_INCHES)

    fig = Figure(figsize=(side + 1.0, side))  # + 1 inch for the colorbar
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    cmap = matplotlib.colormaps["Blues"].with_extremes(bad="0.85")
    im = ax.imshow(norm, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")

    if named:
        ax.set_xticks(range(c))
        ax.set_yticks(range(c))
        # parse_math=False: class names are user data and a "$" must not start mathtext.
        ax.set_xticklabels(labels, rotation=90, fontsize=fontsize, parse_math=False)
        ax.set_yticklabels(labels, fontsize=fontsize, parse_math=False)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
    else:
        ticks = range(0, c, _tick_step(c))
        ax.set_xticks(ticks)
        ax.set_yticks(ticks)
        ax.tick_params(labelsize=fontsize)
        ax.set_xlabel("predicted class id (names in per_class.csv)")
        ax.set_ylabel("true class id (names in per_class.csv)")

    if c <= _ANNOTATE_MAX:
        for i, j in zip(*np.nonzero(counts)):
            ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black")

    summary = f"{int(counts.sum())} videos, {c} classes"
    if top1 is not None:
        summary = f"top-1 {top1:.2%}, " + summary
    ax.set_title(f"{title}\n{summary}", parse_math=False)
    fig.savefig(path, dpi=100, bbox_inches="tight")
