"""One comparison of every registered video model: parameters, GFLOPs at the model's standard clip,
CPU inference and training clips/s at one common small clip, motion-benchmark top-1 and pair
accuracy, an accuracy-versus-cost plot, and the scaling of clips/s with frames and resolution.

    python benchmarks/compare.py                                   # everything; writes docs/compare.md + plots
    python benchmarks/compare.py --runs runs/x3d_nano runs/slow_nano  # record those motion runs first
    python benchmarks/compare.py --train-motion x3d_nano,slow_nano    # train their recipes first (long)
    python benchmarks/compare.py --models x3d_nano,sifa_small --skip-scaling   # a subset

Motion-benchmark results live in ``docs/motion_results.csv`` (one row per model: top-1, pair
accuracy, epochs, minutes, the ``train.py`` command, the source); ``--runs`` adds or replaces rows
from run directories (their final ``metrics.json``, ``checkpoints/last.pt`` and
``.hydra/overrides.yaml``), ``--train-motion`` runs ``train.py`` for each model (the transformers,
per-frame and MViT, with ``+experiment=motion_transformer``) and records it.

FLOPs are counted by ``torch.utils.flop_counter`` in one forward pass of one clip (convolutions,
matmuls and attention; grid_sample, pooling and element-wise work are not counted), reported as
GFLOPs = 2 x multiply-adds. Throughput: batch 2, median of ``--repeats`` timed runs after one
warm-up, SGD training steps, on however many threads torch uses (printed). MViT only runs its own
clip (position embeddings): its throughput is at that clip (marked *).
"""
from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import video_sparse  # noqa: E402
from video_sparse.engine.metrics import multi_head_loss  # noqa: E402
from video_sparse.models.registry import variants  # noqa: E402
from video_sparse.models.specs import C2DResNetSpec, MViTSpec, PerFrameVideoSpec, PTVResNetSpec, X3DSpec  # noqa: E402

VIDEO_SPECS = (C2DResNetSpec, PerFrameVideoSpec, X3DSpec, PTVResNetSpec, MViTSpec)
MOTION_CLIP = (4, 64)        # the motion benchmark's clip (data=motion: 4 frames at 64 px)
COMMON_CLIP = (8, 112)       # the clip every model's throughput is measured at
SCALING_MODELS = ("c2d_r50", "c2d_sifa_r50", "x3d_s", "slowfast_r50")
SCALING_FRAMES = (4, 8, 16, 32)   # at 112 px
SCALING_SIZES = (112, 160, 224)   # at 8 frames
RESULTS = ROOT / "docs" / "motion_results.csv"
FIELDS = ["model", "top1", "pair_acc", "epochs", "minutes", "command", "source"]


def video_models() -> list[str]:
    return [n for n, v in variants().items() if isinstance(v.spec, VIDEO_SPECS)]


def standard_clip(name: str) -> tuple[int, int]:
    """(frames, size) a model is meant for: the zoo clip of the pytorchvideo baselines (MViT's own),
    the motion clip for the CPU sizes (10 classes), SIFA-Net's 16 x 224 for the C2D ResNets and
    8 x 224 for the per-frame transformers."""
    variant = variants()[name]
    spec = variant.spec
    if isinstance(spec, MViTSpec):
        return spec.frames, spec.size
    if isinstance(spec, (X3DSpec, PTVResNetSpec)):
        return spec.clip_frames, spec.crop_size
    if variant.num_classes == 10:
        return MOTION_CLIP
    return (16, 224) if isinstance(spec, C2DResNetSpec) else (8, 224)


def throughput_clip(name: str) -> tuple[tuple[int, int], bool]:
    """The common clip, or the model's own where it takes no other (MViT): (clip, is_own)."""
    return (standard_clip(name), True) if isinstance(variants()[name].spec, MViTSpec) else (COMMON_CLIP, False)


def clip_batch(n: int, frames: int, size: int) -> torch.Tensor:
    return torch.randn(n, 3, frames, size, size)


def gflops(model: torch.nn.Module, frames: int, size: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(clip_batch(1, frames, size))
    return counter.get_total_flops() / 1e9


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def inference_clips_per_s(model: torch.nn.Module, frames: int, size: int, repeats: int, batch: int = 2) -> float:
    model.eval()
    x = clip_batch(batch, frames, size)
    with torch.no_grad():
        return batch / median_seconds(lambda: model(x), repeats)


def training_clips_per_s(model: torch.nn.Module, classes: int, frames: int, size: int, repeats: int,
                         batch: int = 2) -> float:
    model.train()
    x, y = clip_batch(batch, frames, size), torch.randint(0, classes, (batch,))
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3, momentum=0.9)

    def step():
        opt.zero_grad(set_to_none=True)
        multi_head_loss(model(x), y).backward()
        opt.step()
    return batch / median_seconds(step, repeats)


def cost_row(name: str, repeats: int) -> dict:
    torch.manual_seed(0)
    classes = variants()[name].num_classes
    model = video_sparse.build_model(name, classes)
    frames, size = standard_clip(name)
    (t, s), own = throughput_clip(name)
    return {"model": name, "params_m": sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6,
            "clip": f"{frames}x{size}²", "gflops": gflops(model.eval(), frames, size),
            "infer": inference_clips_per_s(model, t, s, repeats),
            "train": training_clips_per_s(model, classes, t, s, repeats), "own_clip": own}


# ----------------------------------------------------------------------------- motion results
def read_results(path: Path = RESULTS) -> dict[str, dict]:
    if not path.is_file():
        return {}
    with open(path, newline="") as f:
        return {row["model"]: row for row in csv.DictReader(f)}


def write_results(rows: dict[str, dict], path: Path = RESULTS) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows[k] for k in sorted(rows))


def run_result(run_dir: Path) -> dict:
    """A motion-benchmark row from a finished ``train.py`` run directory."""
    from video_sparse.engine.checkpoint import load_checkpoint

    metrics_path, last = run_dir / "metrics.json", run_dir / "checkpoints" / "last.pt"
    if not metrics_path.is_file() or not last.is_file():
        raise SystemExit(f"{run_dir}: no metrics.json or checkpoints/last.pt. Fix: pass the directory of a finished "
                         "train.py run (its hydra.run.dir)")
    metrics, state = json.loads(metrics_path.read_text()), load_checkpoint(last)
    if state["config"]["data"]["name"] != "motion":
        raise SystemExit(f"{run_dir}: trained on data={state['config']['data']['name']}, not the motion benchmark")
    overrides_path = run_dir / ".hydra" / "overrides.yaml"
    overrides = [] if not overrides_path.is_file() else [
        line[2:].strip() for line in overrides_path.read_text().splitlines() if line.startswith("- ")]
    overrides = [o for o in overrides if not o.startswith(("hydra.", "logger.", "data.cache_dir"))]
    history = state["history"]
    day = time.strftime("%Y-%m-%d", time.localtime(metrics_path.stat().st_mtime))
    return {"model": state["config"]["model"]["name"], "top1": f"{metrics['top1']:.3f}",
            "pair_acc": f"{metrics['pair_acc']:.3f}", "epochs": str(len(history)),
            "minutes": f"{sum(h.get('epoch_time_s', 0.0) for h in history) / 60:.1f}",
            "command": "python train.py " + " ".join(overrides), "source": f"run of {day} (minutes: its epochs)"}


def train_motion(name: str, out_dir: Path) -> Path:
    run_dir = out_dir / name
    transformer = isinstance(variants()[name].spec, (PerFrameVideoSpec, MViTSpec))
    recipe = ["+experiment=motion_transformer"] if transformer else []  # the ResNets' lr 3e-3 is too high
    subprocess.run([sys.executable, str(ROOT / "train.py"), *recipe, f"model={name}", f"hydra.run.dir={run_dir}",
                    "logger.mode=disabled"], check=True)
    return run_dir


# ----------------------------------------------------------------------------- tables and plots
def family(name: str) -> str:
    spec = variants()[name].spec
    if isinstance(spec, (X3DSpec, PTVResNetSpec, MViTSpec)):
        return "pytorchvideo baseline"
    if isinstance(spec, PerFrameVideoSpec):
        return "per-frame transformer + SIFA" if spec.temporal_stages else "per-frame transformer, order-blind"
    temporal = any(p not in ("P", "G") for pattern in spec.patterns for p in pattern)  # S: SIFA, ... (not plain)
    return "C2D ResNet + inter-frame operator" if temporal else "C2D ResNet"


def cost_table(rows: list[dict], results: dict[str, dict]) -> str:
    t, s = COMMON_CLIP
    lines = [f"| model | params (M) | standard clip | GFLOPs | CPU inference clips/s ({t}x{s}²) | CPU training "
             f"clips/s ({t}x{s}²) | motion top-1 | motion pair | motion minutes |", "|---|" + "---|" * 8]
    for r in rows:
        m = results.get(r["model"], {})
        star = "*" if r["own_clip"] else ""
        lines.append(f"| `{r['model']}` | {r['params_m']:.2f} | {r['clip']} | {r['gflops']:.2f} | "
                     f"{r['infer']:.2f}{star} | {r['train']:.2f}{star} | {m.get('top1', '')} | "
                     f"{m.get('pair_acc', '')} | {m.get('minutes', '')} |")
    return "\n".join(lines)


def plot_accuracy_vs_cost(rows: list[dict], results: dict[str, dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [(r, results[r["model"]]) for r in rows if r["model"] in results]
    if not points:
        return
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5))
    markers = {"pytorchvideo baseline": "s", "per-frame transformer + SIFA": "o",
               "per-frame transformer, order-blind": "x", "C2D ResNet + inter-frame operator": "D",
               "C2D ResNet": "+"}
    t, s = COMMON_CLIP
    for ax, xkey, xlabel in ((axes[0], "gflops", "GFLOPs per clip (4x64², the motion clip)"),
                             (axes[1], "train", f"CPU training clips/s ({t}x{s}², batch 2)")):
        for fam, marker in markers.items():
            sel = [(r, m) for r, m in points if family(r["model"]) == fam]
            if sel:
                ax.scatter([r[xkey] for r, _ in sel], [float(m["top1"]) for _, m in sel], marker=marker, label=fam)
        for r, m in points:
            ax.annotate(r["model"], (r[xkey], float(m["top1"])), fontsize=6, xytext=(3, 2), textcoords="offset points")
        ax.set_xscale("log")
        ax.axhline(0.5, color="grey", lw=0.8, ls="--")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("motion benchmark val top-1")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="lower right")
    axes[0].set_title("accuracy vs compute (dashed: the order-blind ceiling)")
    axes[1].set_title("accuracy vs CPU training speed")
    fig.tight_layout()
    fig.savefig(path, dpi=130)


def scaling(repeats: int) -> dict[str, dict[str, list[float]]]:
    out = {}
    for name in SCALING_MODELS:
        model = video_sparse.build_model(name, 400).eval()
        out[name] = {"frames": [inference_clips_per_s(model, t, COMMON_CLIP[1], repeats, batch=1)
                                for t in SCALING_FRAMES],
                     "size": [inference_clips_per_s(model, COMMON_CLIP[0], s, repeats, batch=1) for s in SCALING_SIZES]}
        print(f"scaling {name}: {out[name]}", flush=True)
    return out


def scaling_table(result: dict[str, dict[str, list[float]]]) -> str:
    head = " | ".join(f"{t} frames" for t in SCALING_FRAMES) + " | " + " | ".join(f"{s}²" for s in SCALING_SIZES)
    lines = [f"| model (CPU inference clips/s, batch 1) | {head} |",
             "|---|" + "---|" * (len(SCALING_FRAMES) + len(SCALING_SIZES))]
    for name, r in result.items():
        lines.append(f"| `{name}` | " + " | ".join(f"{v:.2f}" for v in r["frames"] + r["size"]) + " |")
    return "\n".join(lines)


def plot_scaling(result: dict[str, dict[str, list[float]]], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for name, r in result.items():
        axes[0].plot(SCALING_FRAMES, r["frames"], marker="o", label=name)
        axes[1].plot(SCALING_SIZES, r["size"], marker="o", label=name)
    axes[0].set_xlabel(f"frames (at {COMMON_CLIP[1]}²)")
    axes[1].set_xlabel(f"crop side (at {COMMON_CLIP[0]} frames)")
    for ax in axes:
        ax.set_yscale("log")
        ax.set_ylabel("CPU inference clips/s (batch 1)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=130)


def measure_costs(names: list[str], args: argparse.Namespace) -> dict:
    """Cost rows (and the scaling curves) of ``names``: measured, and kept in
    ``<out>/compare_costs.json``; with ``--reuse-costs`` read from there."""
    path = args.out / "compare_costs.json"
    if args.reuse_costs:
        if not path.is_file():
            raise SystemExit(f"--reuse-costs: {path} does not exist. Fix: run once without --reuse-costs")
        costs = json.loads(path.read_text())
        missing = [n for n in names if n not in costs["rows"]]
        if missing:
            raise SystemExit(f"--reuse-costs: {path} has no costs of {', '.join(missing)}. Fix: measure them "
                             "(without --reuse-costs)")
        return costs
    setup = f"torch {torch.__version__}, CPU, {torch.get_num_threads()} threads, median of {args.repeats}"
    print(setup + f"; {len(names)} models", flush=True)
    costs = {"setup": setup, "rows": {}}
    for name in names:
        r = costs["rows"][name] = cost_row(name, args.repeats)
        print(f"{name}: {r['params_m']:.2f} M, {r['gflops']:.2f} GFLOPs at {r['clip']}, {r['infer']:.2f} / "
              f"{r['train']:.2f} clips/s", flush=True)
    if not args.skip_scaling:
        costs["scaling"] = scaling(args.repeats)
    path.write_text(json.dumps(costs, indent=1))
    return costs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", help="comma-separated subset (default: every registered video model)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (median)")
    ap.add_argument("--runs", nargs="*", default=[], type=Path, help="motion-benchmark run directories to record")
    ap.add_argument("--train-motion", default="", help="comma-separated models whose motion recipe to train first")
    ap.add_argument("--motion-dir", type=Path, default=ROOT / "runs" / "motion", help="where --train-motion runs go")
    ap.add_argument("--results", type=Path, default=RESULTS, help="the motion results file (read and updated)")
    ap.add_argument("--skip-scaling", action="store_true")
    ap.add_argument("--reuse-costs", action="store_true",
                    help="take the costs from <out>/compare_costs.json of an earlier run instead of measuring them")
    ap.add_argument("--out", type=Path, default=ROOT / "docs", help="compare.md, compare.png, scaling.png go here")
    args = ap.parse_args()

    known = video_models()
    names = known if not args.models else args.models.split(",")
    for name in names + [n for n in args.train_motion.split(",") if n]:
        if name not in known:
            raise SystemExit(f"--models/--train-motion: {name} is not a registered video model. "
                             f"Known: {', '.join(known)}")
    results = read_results(args.results)
    runs = list(args.runs) + [train_motion(n, args.motion_dir) for n in args.train_motion.split(",") if n]
    for run_dir in runs:
        row = run_result(run_dir)
        results[row["model"]] = row
        print(f"recorded {row['model']}: top-1 {row['top1']}, pair {row['pair_acc']} ({run_dir})")
    if runs:
        write_results(results, args.results)

    args.out.mkdir(parents=True, exist_ok=True)
    costs = measure_costs(names, args)
    rows = [costs["rows"][name] for name in names]
    results_name = args.results.relative_to(ROOT) if args.results.is_relative_to(ROOT) else args.results
    text = [f"# Every video model, one comparison\n\nGenerated by `python benchmarks/compare.py` ({costs['setup']}). "
            f"Motion results: `{results_name}` (minutes: the run's training epochs, or wall clock where its source "
            "says so); * = measured at the model's own clip (MViT takes no other).\n", cost_table(rows, results),
            "\n![motion top-1 versus cost](compare.png)\n"]
    plot_accuracy_vs_cost(rows, results, args.out / "compare.png")
    if costs.get("scaling"):
        text += ["## Scaling with frames and resolution\n", scaling_table(costs["scaling"]),
                 "\n![scaling](scaling.png)\n"]
        plot_scaling(costs["scaling"], args.out / "scaling.png")
    (args.out / "compare.md").write_text("\n".join(text))
    print("\n".join(text))
    print(f"written: {args.out / 'compare.md'}")


if __name__ == "__main__":
    main()
