"""Training and inference throughput (clips/s) of the default models with each execution option
of the training loop: fp32, ``trainer.amp=bf16``, ``trainer.channels_last``, ``trainer.compile``.

    python benchmarks/training.py                       # sifa_small and c2d_small on the CPU
    python benchmarks/training.py --device cuda --models c2d_sifa_r50 --batch 8 --frames 8 --size 224

A training step is what the loop runs: autocast forward, the heads' summed cross-entropy, backward
(GradScaler for fp16), AdamW step. Inference is a no-grad forward in eval mode. Inputs are random
clips of the motion benchmark's shape by default (data time is measured by benchmarks/data.py).
Each configuration runs in a fresh process (compilation caches and peak memory start from zero);
times are medians over ``--repeats`` timings of ``--steps`` steps after warm-up, compile included
in the warm-up. Peak memory: the process's peak RSS on the CPU, ``max_memory_allocated`` on CUDA.
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OPTIONS = {  # name: (amp, channels_last, compile)
    "fp32": ("off", False, False),
    "amp bf16": ("bf16", False, False),
    "channels_last": ("off", True, False),
    "compile": ("off", False, True),
    "compile + bf16": ("bf16", False, True),
}


def measure(args) -> dict:
    import video_sparse
    from video_sparse.engine.metrics import multi_head_loss
    from video_sparse.engine.optim import param_groups
    from video_sparse.engine.runtime import autocast, to_channels_last

    amp, channels_last, compile_ = OPTIONS[args.option]
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = video_sparse.build_model(args.model, num_classes=10).to(device)
    x = torch.randn(args.batch, 3, args.frames, args.size, args.size, device=device)
    y = torch.randint(0, 10, (args.batch,), device=device)
    if channels_last:
        to_channels_last(model)
        x = to_channels_last(x)
    net = torch.compile(model) if compile_ else model
    optimizer = torch.optim.AdamW(param_groups(model, 0.05), lr=1e-4)
    scaler = torch.amp.GradScaler(device.type, enabled=amp == "fp16")

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def train_step():
        with autocast(device, amp):
            loss = multi_head_loss(net(x), y)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)

    @torch.no_grad()
    def infer_step():
        with autocast(device, amp):
            net(x)

    def clips_per_s(step, train: bool) -> float:
        model.train(train)
        for _ in range(args.warmup):
            step()
        times = []
        for _ in range(args.repeats):
            sync()
            t0 = time.perf_counter()
            for _ in range(args.steps):
                step()
            sync()
            times.append(time.perf_counter() - t0)
        return args.batch * args.steps / statistics.median(times)

    t0 = time.perf_counter()
    train_cps = clips_per_s(train_step, True)
    infer_cps = clips_per_s(infer_step, False)
    peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else \
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"train": train_cps, "infer": infer_cps, "peak_mb": peak / 2 ** 20, "total_s": time.perf_counter() - t0}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["sifa_small", "c2d_small"])
    p.add_argument("--options", nargs="+", default=list(OPTIONS), choices=list(OPTIONS))
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--frames", type=int, default=4)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--steps", type=int, default=5, help="steps per timing")
    p.add_argument("--repeats", type=int, default=5, help="timings per number (median)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation happens here)")
    p.add_argument("--model", help=argparse.SUPPRESS)  # one configuration, in a child process
    p.add_argument("--option", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.model:
        print(json.dumps(measure(args)))
        return

    shared = [f"--{k}={getattr(args, k)}" for k in ("device", "batch", "frames", "size", "steps", "repeats", "warmup")]
    rows = []
    for model in args.models:
        base = None
        for option in args.options:
            out = subprocess.run([sys.executable, __file__, f"--model={model}", f"--option={option}", *shared],
                                 capture_output=True, text=True)
            if out.returncode != 0:
                print(f"{model} / {option} failed:\n{out.stderr[-2000:]}", file=sys.stderr)
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            base = base or r
            rows.append((model, option, r["train"], r["train"] / base["train"], r["infer"], r["infer"] / base["infer"],
                         r["peak_mb"], r["total_s"]))
            print(f"  {model} / {option}: train {r['train']:.1f} clips/s, infer {r['infer']:.1f} clips/s",
                  file=sys.stderr)
    print(f"\ndevice {args.device}, {torch.get_num_threads()} threads, batch {args.batch} x (3, {args.frames}, "
          f"{args.size}, {args.size}), median of {args.repeats} x {args.steps} steps after {args.warmup} warm-up\n")
    print("| model | option | train clips/s | vs fp32 | inference clips/s | vs fp32 | peak memory (MB) | "
          "run incl. warm-up (s) |")
    print("|---|---|---|---|---|---|---|---|")
    for model, option, tr, trr, inf, infr, peak, total in rows:
        print(f"| {model} | {option} | {tr:.1f} | {trr:.2f}x | {inf:.1f} | {infr:.2f}x | {peak:.0f} | {total:.0f} |")


if __name__ == "__main__":
    main()
