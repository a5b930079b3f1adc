"""CPU inference of exported models: PyTorch eager vs onnxruntime vs the torch.export program.

    python benchmarks/export.py [--models sifa_small c2d_sifa_r50 sifa_biformer_nano] [--batches 1 8]
                                [--repeats 5] [--threads N]

Each model (random weights, eval mode, fp32) is exported once to ONNX and to a ``.pt2`` program
(``video_sparse.engine.export.export_model``, which also checks the logits), then each runtime
classifies clips of the model's benchmark shape at each batch size: one warm-up call, then the
median of ``--repeats`` timed calls. Prints a markdown table of clips/s and the ratio to eager.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from video_sparse import build_model  # noqa: E402
from video_sparse.engine.export import export_model, load_exported  # noqa: E402

# name -> (frames, size) of the clips it is benchmarked on: the motion benchmark's for the small
# models, Kinetics' 8 x 224 for the ResNet-50.
SHAPES = {"sifa_small": (8, 64), "c2d_sifa_r50": (8, 224), "sifa_biformer_nano": (8, 64)}


def median_seconds(fn, x: torch.Tensor, repeats: int) -> float:
    with torch.no_grad():
        fn(x)  # warm-up: onnxruntime and the program allocate on the first call
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn(x)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch and onnxruntime intra-op threads "
                    "(default: torch's default, every core)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            frames, size = SHAPES[name]
            model = build_model(name, num_classes=400 if name.endswith("r50") else 10).eval()
            runtimes = {"PyTorch eager": model}
            for fmt in ("onnx", "pt2"):
                start = time.perf_counter()
                check = export_model(model, Path(tmp) / f"{name}.{fmt}", fmt, frames, size, model_name=name)
                print(f"{name}: {fmt} written and checked in {time.perf_counter() - start:.0f} s, takes "
                      f"{check.lengths} ({check.summary()})", file=sys.stderr)
                runtimes["onnxruntime" if fmt == "onnx" else "torch.export program"] = load_exported(
                    Path(tmp) / f"{name}.{fmt}", trust_pt2=True)  # written just above
            for batch in args.batches:
                x = torch.randn(batch, 3, frames, size, size)
                eager = None
                for runtime, fn in runtimes.items():
                    sec = median_seconds(fn, x, args.repeats)
                    eager = eager or sec
                    rows.append((name, f"{frames}x{size}x{size}", batch, runtime, batch / sec, eager / sec))
                    print(f"  {name} batch {batch} {runtime}: {batch / sec:.2f} clips/s", file=sys.stderr)
    print(f"\nCPU inference, {torch.get_num_threads()} threads, median of {args.repeats} calls after a warm-up\n")
    print("| model | clip | batch | runtime | clips/s | vs eager |")
    print("|---|---|---|---|---|---|")
    for name, clip, batch, runtime, cps, ratio in rows:
        print(f"| {name} | {clip} | {batch} | {runtime} | {cps:.2f} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
