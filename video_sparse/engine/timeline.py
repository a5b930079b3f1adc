"""Timelines of long videos (``eval.py predict=<video> predict.window=<s> predict.stride=<s>``): the
class probabilities of every window of :class:`~video_sparse.data.timeline.WindowClips`, written to a
CSV as they come and drawn as a PNG of the top classes over time."""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from einops import rearrange
from tqdm import tqdm

from ..data.timeline import Window, WindowClips
from .metrics import multi_head_probs
from .runtime import autocast

MAX_SEGMENTS_PRINTED = 20


@torch.no_grad()
def video_timeline(model: torch.nn.Module, clips: WindowClips, class_names: Sequence[str], out_csv: str | os.PathLike,
                   *, batch_size: int, device: torch.device, amp: str = "off",
                   progress: bool = True) -> tuple[list[Window], np.ndarray]:
    """Score every window of ``clips`` (their views' softmaxes averaged, both heads of a dual model
    as evaluation does); rows go to ``out_csv`` batch by batch: ``window, start_frame, end_frame,
    start_s, end_s, top1, top1_prob`` and one probability column per class.
    Returns the windows and their probabilities ``(num_windows, num_classes)``."""
    model.eval()
    windows: list[Window] = []
    probs: list[np.ndarray] = []
    with open(out_csv, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["window", "start_frame", "end_frame", "start_s", "end_s", "top1", "top1_prob",
                         *class_names])
        batch: list[tuple[Window, torch.Tensor]] = []
        bar = tqdm(total=clips.windows, desc=Path(clips.path).name, unit="window", leave=False, disable=not progress)

        def flush():
            video = clips.transform.to_model(torch.stack([views for _, views in batch]).to(device))
            with autocast(device, amp):
                outputs = model(rearrange(video, "b v c t h w -> (b v) c t h w"))
            p = rearrange(multi_head_probs(outputs), "(b v) k -> b v k", b=len(batch)).mean(1).float().cpu().numpy()
            for (w, _), row in zip(batch, p):
                top = int(row.argmax())
                writer.writerow([w.index, w.start, w.stop, f"{w.start_s:.3f}", f"{w.end_s:.3f}", class_names[top],
                                 f"{row[top]:.6f}", *(f"{v:.6f}" for v in row)])
                windows.append(w)
            probs.append(p)
            f.flush()
            bar.update(len(batch))
            batch.clear()

        for item in clips:
            batch.append(item)
            if len(batch) == batch_size:
                flush()
        if batch:
            flush()
        bar.close()
    return windows, np.concatenate(probs) if probs else np.zeros((0, len(class_names)), np.float32)


def top_classes(probs: np.ndarray, k: int) -> list[int]:
    """Up to ``k`` classes to draw: those that are top-1 in most windows, then the most probable on
    average."""
    wins = np.bincount(probs.argmax(1), minlength=probs.shape[1]) if len(probs) else np.zeros(probs.shape[1])
    order = np.lexsort((-probs.mean(0) if len(probs) else np.zeros(probs.shape[1]), -wins))
    return order[:min(k, probs.shape[1])].tolist()


def segments(windows: Sequence[Window], probs: np.ndarray) -> list[tuple[float, float, int, float]]:
    """Runs of consecutive windows with the same top-1 class: ``(start_s, end_s, class, mean prob)``."""
    out: list[tuple[float, float, int, float]] = []
    top = probs.argmax(1) if len(probs) else []
    i = 0
    while i < len(windows):
        j = i
        while j + 1 < len(windows) and top[j + 1] == top[i]:
            j += 1
        out.append((windows[i].start_s, windows[j].end_s, int(top[i]), float(probs[i:j + 1, top[i]].mean())))
        i = j + 1
    return out


def _clock(seconds: float) -> str:
    m, s = divmod(max(seconds, 0.0), 60)
    h, m = divmod(int(m), 60)
    return f"{h}:{m:02d}:{s:04.1f}" if h else f"{m}:{s:04.1f}"


def timeline_summary(path: str, windows: Sequence[Window], probs: np.ndarray, class_names: Sequence[str]) -> str:
    """The printed timeline: the video, then one line per run of windows with the same top class."""
    runs = segments(windows, probs)
    lines = [f"{path}: {len(windows)} windows"]
    for start, end, c, p in runs[:MAX_SEGMENTS_PRINTED]:
        lines.append(f"    {_clock(start)} - {_clock(end)}  {p:7.2%}  {class_names[c]}")
    if len(runs) > MAX_SEGMENTS_PRINTED:
        lines.append(f"    ... {len(runs) - MAX_SEGMENTS_PRINTED} more segments (the CSV has every window)")
    return "\n".join(lines)


def plot_timeline(windows: Sequence[Window], probs: np.ndarray, class_names: Sequence[str], path: str | os.PathLike,
                  k: int = 5, title: str = "") -> None:
    """Probabilities of the :func:`top_classes` against time (window centres), over a strip
    coloured by each window's top class (grey: a class not drawn)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure

    shown = top_classes(probs, k)
    centre = np.array([(w.start_s + w.end_s) / 2 for w in windows])
    # strip cells meet half-way between window centres (windows overlap when the stride is shorter)
    edges = np.concatenate([[windows[0].start_s], (centre[1:] + centre[:-1]) / 2, [windows[-1].end_s]])
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    ax, strip = fig.subplots(2, 1, sharex=True, height_ratios=[5, 1])
    colors = [f"C{i}" for i in range(len(shown))]
    for c, color in zip(shown, colors):
        ax.plot(centre, probs[:, c], color=color, marker="." if len(windows) < 60 else None, label=class_names[c])
    ax.set_ylim(0, 1)
    ax.set_ylabel("probability")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small", frameon=False)
    ax.set_title(title or "class probabilities over time", fontsize="medium")
    code = {c: i for i, c in enumerate(shown)}
    top = np.array([code.get(int(c), len(shown)) for c in probs.argmax(1)]) if len(probs) else np.zeros(0)
    strip.pcolormesh(edges, [0, 1], top[None, :], cmap=ListedColormap(colors + ["0.8"]), vmin=-0.5,
                     vmax=len(shown) + 0.5)
    strip.set_yticks([])
    strip.set_ylabel("top-1", rotation=0, ha="right", va="center")
    strip.set_xlabel("time (s), each window at its centre")
    fig.savefig(path, dpi=110)
