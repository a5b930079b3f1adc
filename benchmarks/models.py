"""Model costs: parameters and FLOPs of every registered video model, and the training-step time and
memory of SIFA-Net with and without its SIFA operators.

    python benchmarks/models.py flops               # params / GMACs table (1 clip)
    python benchmarks/models.py step [--repeats 3]  # c2d_sifa_r50 train step, SIFA on/off, vs c2d_r50
    python benchmarks/models.py step --device cuda --amp bf16 --batch 8 --frames 8   # on a GPU

FLOPs come from ``torch.utils.flop_counter`` (convolutions, matmuls); the SIFA operator's own work
(bilinear sampling, correlation, aggregation: grid_sample is not counted there) is added by
formula: per query pixel and frame pair, 4 K^2 C MACs to sample K^2 taps bilinearly, K^2 C for
the correlation and K^2 C for the aggregation. Step memory is the process's peak RSS growth during
the steps, measured in a fresh subprocess per configuration; on CUDA, the allocator's peak
(``torch.cuda.max_memory_allocated``) during the steps.
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

import video_sparse  # noqa: E402
from video_sparse.layers.sifa import SIFABottleneck  # noqa: E402

VIDEO_INPUTS = {"c2d_small": (4, 64), "sifa_small": (4, 64)}  # name: (frames, size); default (16, 224)


def sifa_operator_macs(model: torch.nn.Module, x: torch.Tensor) -> int:
    """MACs of the SIFA operators themselves (not their offset convs). The operator's input is
    the block's conv2-BN-ReLU output, whose shape a hook on ``bn2`` records."""
    shapes = []
    hooks = [m.bn2.register_forward_hook(lambda mod, i, o, blk=m: shapes.append((blk.kernel_size, o.shape)))
             for m in model.modules() if isinstance(m, SIFABottleneck) and m.sifa]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return sum(n * max(t - 1, 0) * h * w * c * k * k * (4 + 1 + 1) for k, (n, c, t, h, w) in shapes)


def flops_table() -> None:
    from torch.utils.flop_counter import FlopCounterMode

    print("| model | input (N,3,T,H,W) | params (M) | GMACs (counted) | SIFA operator GMACs | total GMACs |")
    print("|---|---|---|---|---|---|")
    for name in video_sparse.list_models():
        frames, size = VIDEO_INPUTS.get(name, (16, 224))
        classes = 10 if name.endswith("small") else 400
        model = video_sparse.build_model(name, num_classes=classes).eval()
        x = torch.randn(1, 3, frames, size, size)
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model(x)
        macs = counter.get_total_flops() / 2
        sifa = sifa_operator_macs(model, x)
        params = sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6
        print(f"| {name} | {tuple(x.shape)} | {params:.2f} | {macs / 1e9:.2f} | {sifa / 1e9:.3f} | "
              f"{(macs + sifa) / 1e9:.2f} |")


def one_step_config(name: str, sifa: bool, repeats: int, device: str = "cpu", amp: str = "off", batch: int = 2,
                    frames: int = 16, size: int = 224) -> dict:
    """Runs in a subprocess: median train-step time and peak memory (RSS growth; on CUDA the
    allocator's peak)."""
    torch.manual_seed(0)
    kwargs = {} if name == "c2d_r50" else {"temporal": sifa}
    model = video_sparse.build_model(name, num_classes=400, **kwargs).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, frames, size, size, device=device)
    y = torch.randint(0, 400, (batch,), device=device)
    from video_sparse.engine.metrics import multi_head_loss

    def step():
        with torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16, enabled=amp == "bf16"):
            loss = multi_head_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    cuda = device.startswith("cuda")
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    step()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        step()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else \
        (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
    return {"time": statistics.median(times), "peak_mib": peak}


def step_table(repeats: int, device: str = "cpu", amp: str = "off", batch: int = 2, frames: int = 16,
               size: int = 224) -> None:
    rows = []
    for name, sifa in (("c2d_sifa_r50", True), ("c2d_sifa_r50", False), ("c2d_r50", False)):
        config = [name, str(sifa), str(repeats), device, amp, str(batch), str(frames), str(size)]
        out = subprocess.run([sys.executable, __file__, "_one", *config], capture_output=True, text=True, check=True)
        rows.append((name, sifa, json.loads(out.stdout.strip().splitlines()[-1])))
    ref = rows[1][2]
    where = torch.cuda.get_device_name() if device.startswith("cuda") else f"{torch.get_num_threads()} threads"
    memory = "CUDA peak allocated MiB" if device.startswith("cuda") else "peak RSS growth MiB"
    print(f"torch {torch.__version__}, {where}, batch {batch} x {frames} frames x {size}², SGD step, amp {amp}, "
          f"median of {repeats}\n")
    print(f"| model | SIFA operators | step s | vs SIFA off | {memory} | vs SIFA off |")
    print("|---|---|---|---|---|---|")
    for name, sifa, r in rows:
        label = "on" if sifa else ("off" if name == "c2d_sifa_r50" else "-")
        print(f"| {name} | {label} | {r['time']:.2f} | {r['time'] / ref['time']:.2f} | {r['peak_mib']:.0f} | "
              f"{r['peak_mib'] / ref['peak_mib']:.2f} |")


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "_one":
        name, sifa, repeats, device, amp, batch, frames, size = sys.argv[2:10]
        print(json.dumps(one_step_config(name, sifa == "True", int(repeats), device, amp, int(batch), int(frames),
                                         int(size))))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["flops", "step"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu", help="step: cpu | cuda")
    ap.add_argument("--amp", default="off", choices=["off", "bf16"], help="step: bf16 autocast")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--size", type=int, default=224)
    args = ap.parse_args()
    if args.what == "flops":
        flops_table()
    else:
        step_table(args.repeats, args.device, args.amp, args.batch, args.frames, args.size)


if __name__ == "__main__":
    main()
