"""SIFA operator: forward+backward time and memory kept for backward, fast vs naive vs reference.

    python benchmarks/sifa_op.py [--repeats 5] [--device cpu|cuda]

Shapes: SIFA-Net R50 layers 2/3/4 at batch 2 x 16 frames x 224 (stem stride 4 in time: T = 4):
C = 128/256/512, H = W = 28/14/7. "saved" is the memory autograd keeps alive between forward and
backward (every tensor saved for backward, counted once), as a multiple of the input's size;
"peak" is the CUDA allocator's peak during forward+backward (cuda only). The loop reference runs
on a tiny shape only (it is Python loops), against the fast operator on the same shape.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from video_sparse.ops.sifa import sifa_attention, sifa_attention_naive  # noqa: E402


def saved_bytes(fn, *args) -> int:
    """Bytes of distinct storages autograd saves for backward while running ``fn(*args)``."""
    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn(*args)
    inputs = {a.untyped_storage().data_ptr() for a in args}
    del out
    return sum(v for k, v in storages.items() if k not in inputs)


def time_fwd_bwd(fn, f, off, repeats, device) -> tuple[float, float | None]:
    def run():
        out = fn(f, off)
        out.sum().backward()
        f.grad = off.grad = None

    run()  # warm-up
    times = []
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    for _ in range(repeats):
        t = time.perf_counter()
        run()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    peak = torch.cuda.max_memory_allocated() if device == "cuda" else None
    return statistics.median(times), peak


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    dev = args.device
    print(f"torch {torch.__version__}, device {dev}, {torch.get_num_threads()} threads, K=3, d=1, float32\n")
    print("| layer | input (N,C,T,H,W) | fast ms | naive ms | naive/fast | fast saved (x input) | naive saved (x input) |"
          + (" fast peak MiB | naive peak MiB |" if dev == "cuda" else ""))
    print("|---|---|---|---|---|---|---|" + ("---|---|" if dev == "cuda" else ""))
    for name, c, hw in (("layer2", 128, 28), ("layer3", 256, 14), ("layer4", 512, 7)):
        f = torch.randn(2, c, 4, hw, hw, device=dev, requires_grad=True)
        off = (torch.randn(2, 18, 4, hw, hw, device=dev) * 2).requires_grad_(True)
        size = f.numel() * f.element_size()
        row = [name, str(tuple(f.shape))]
        t_fast, p_fast = time_fwd_bwd(sifa_attention, f, off, args.repeats, dev)
        t_naive, p_naive = time_fwd_bwd(sifa_attention_naive, f, off, args.repeats, dev)
        s_fast, s_naive = saved_bytes(sifa_attention, f, off), saved_bytes(sifa_attention_naive, f, off)
        row += [f"{t_fast * 1e3:.1f}", f"{t_naive * 1e3:.1f}", f"{t_naive / t_fast:.2f}",
                f"{s_fast / size:.2f}", f"{s_naive / size:.2f}"]
        if dev == "cuda":
            row += [f"{p_fast / 2**20:.0f}", f"{p_naive / 2**20:.0f}"]
        print("| " + " | ".join(row) + " |")

    from sifa_reference import sifa_reference
    f = torch.randn(1, 4, 3, 5, 5, dtype=torch.float64, requires_grad=True)
    off = torch.randn(1, 18, 3, 5, 5, dtype=torch.float64, requires_grad=True)
    t_ref, _ = time_fwd_bwd(sifa_reference, f, off, 1, "cpu")
    t_fast, _ = time_fwd_bwd(sifa_attention, f, off, args.repeats, "cpu")
    print(f"\nloop reference vs fast on {tuple(f.shape)} float64 (cpu): reference {t_ref * 1e3:.0f} ms, "
          f"fast {t_fast * 1e3:.2f} ms ({t_ref / t_fast:.0f}x)")


if __name__ == "__main__":
    main()
