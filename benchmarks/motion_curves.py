"""Learning curves of motion-benchmark runs: validation top-1 and pair accuracy per epoch, as a
table on stdout and a PNG.

    python train.py +experiment=motion_transformer model=sifa_biformer_nano hydra.run.dir=runs/sifa_biformer_nano
    ...
    python benchmarks/motion_curves.py runs/sifa_biformer_nano runs/c2d_biformer_nano --out docs/motion_transformers.png

Each run directory is read from its ``checkpoints/last.pt`` (the per-epoch history the trainer
keeps) and labelled with the run's model name. Top-1 of an order-blind model is bounded by half
its pair accuracy; the plot draws that bound at perfect pair accuracy (0.5) for reference.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from video_sparse.engine.checkpoint import load_checkpoint  # noqa: E402


def read_run(run_dir: Path) -> tuple[str, list[dict]]:
    """(model name, per-epoch history) of a finished or interrupted run."""
    path = run_dir / "checkpoints" / "last.pt"
    if not path.is_file():
        raise SystemExit(f"{path}: no checkpoint. Fix: pass the run directory of a motion-benchmark training run")
    state = load_checkpoint(path)
    return state["config"]["model"]["name"], state["history"]


def table(runs: list[tuple[str, list[dict]]]) -> str:
    epochs = max(len(h) for _, h in runs)
    lines = ["| epoch | " + " | ".join(f"{name} top-1 (pair)" for name, _ in runs) + " |",
             "|---|" + "---|" * len(runs)]
    for e in range(epochs):
        cells = [f"{h[e]['val_top1']:.3f} ({h[e]['val_pair_acc']:.3f})" if e < len(h) else "" for _, h in runs]
        lines.append(f"| {e + 1} | " + " | ".join(cells) + " |")
    lines.append("| time per epoch (s) | " + " | ".join(
        f"{statistics.median(r['epoch_time_s'] for r in h):.0f}" for _, h in runs) + " |")
    return "\n".join(lines)


def plot(runs: list[tuple[str, list[dict]]], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(10, 4))
    FigureCanvasAgg(fig)
    top1, pair = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for name, history in runs:
        epochs = [r["epoch"] for r in history]
        style = "--" if name.startswith("c2d_") else "-"
        line, = top1.plot(epochs, [r["val_top1"] for r in history], style, marker=".", label=f"{name} ({len(history)} epochs)")
        pair.plot(epochs, [r["val_pair_acc"] for r in history], style, marker=".", color=line.get_color(), label=name)
    top1.axhline(0.5, color="0.6", lw=0.8)
    top1.text(1, 0.52, "order-blind ceiling", fontsize=8, color="0.4")
    for ax, title in ((top1, "validation top-1"), (pair, "validation pair accuracy (motion, either direction)")):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylim(0, 1.02)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    top1.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="run directories of motion-benchmark trainings")
    parser.add_argument("--out", type=Path, default=Path("motion_curves.png"), help="PNG to write")
    args = parser.parse_args()
    runs = [read_run(r) for r in args.runs]
    print(table(runs))
    plot(runs, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
