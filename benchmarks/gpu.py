"""Every GPU measurement of docs/benchmarks.md in one command, for a machine lent for minutes:

    python benchmarks/gpu.py [--out gpu_results.md] [--budget 540]    # on the GPU machine
    python benchmarks/gpu.py --dry-run                                  # the commands, nothing run

Runs, one after the other, each in its own process with its share of the time budget (a step
that overruns is stopped and noted; the next one still runs):

1. the SIFA operator (``sifa_op.py``): time and CUDA peak memory against the naive form;
2. the spatial mixers against their official formulations (``mixers.py --only mixers``);
3. a ``c2d_sifa_r50`` training step in bf16, SIFA on / off / plain C2D (``models.py step``);
4. training steps of ``c2d_sifa_r50`` and ``sifa_small`` in fp32, bf16 and compile + bf16
   (``training.py``).

Each step's table is written into ``--out`` as it finishes (markdown, with the device and torch
version), so a machine taken back mid-way keeps what was measured. The GPU machine needs torch,
einops and the repository only (no hydra, decord, PyAV or wandb: none of these scripts imports them).
"""
from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# (title, script and arguments, share of the budget)
STEPS = [
    ("SIFA operator", ["sifa_op.py", "--device", "{device}", "--repeats", "5"], 0.10),
    ("Spatial mixers vs official formulations", ["mixers.py", "--device", "{device}", "--only", "mixers",
                                                 "--repeats", "5"], 0.30),
    ("c2d_sifa_r50 training step, bf16: SIFA on / off", ["models.py", "step", "--device", "{device}", "--amp", "bf16",
                                                        "--batch", "8", "--frames", "8", "--repeats", "5"], 0.20),
    ("Training steps: fp32, bf16, compile + bf16", ["training.py", "--device", "{device}", "--models", "c2d_sifa_r50",
                                                   "sifa_small", "--options", "fp32", "amp bf16", "compile + bf16",
                                                   "--batch", "8", "--frames", "8", "--size", "224"], 0.40),
]


def commands(device: str) -> list[tuple[str, list[str], float]]:
    """The steps as ``(title, script and arguments, share)`` for ``device``."""
    return [(title, [a.format(device=device) for a in args], share) for title, args, share in STEPS]


def run_all(device: str, out: Path, budget: float) -> int:
    """Run every step within ``budget`` seconds in all; returns how many failed or overran."""
    import torch

    name = torch.cuda.get_device_name() if device.startswith("cuda") and torch.cuda.is_available() else device
    out.write_text(f"# GPU benchmarks: {name}, torch {torch.__version__}, {time.strftime('%Y-%m-%d %H:%M')}\n")
    failed = 0
    for title, args, share in commands(device):
        start, shown = time.time(), f"python benchmarks/{shlex.join(args)}"
        print(f"== {title}: {shown}", flush=True)
        # its own session: a step that overruns is stopped with the processes it started
        proc = subprocess.Popen([sys.executable, str(HERE / args[0]), *args[1:]], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            stdout, stderr = proc.communicate(timeout=budget * share)
            result = stdout if proc.returncode == 0 else f"failed ({proc.returncode}):\n{stderr[-3000:]}"
            failed += proc.returncode != 0
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, _ = proc.communicate()
            result = f"stopped after {budget * share:.0f} s (its share of --budget)\n{stdout}"
            failed += 1
        section = f"\n## {title}\n\n`{shown}` ({time.time() - start:.0f} s)\n\n{result.strip()}\n"
        with out.open("a") as f:
            f.write(section)
        print(section, flush=True)
    return failed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", type=Path, default=Path("gpu_results.md"))
    ap.add_argument("--budget", type=float, default=540.0, help="seconds for all the steps together")
    ap.add_argument("--dry-run", action="store_true", help="print the commands only")
    args = ap.parse_args()
    if args.dry_run:
        for title, script_args, share in commands(args.device):
            print(f"{title} ({share * args.budget:.0f} s): python benchmarks/{shlex.join(script_args)}")
        return
    sys.exit(1 if run_all(args.device, args.out, args.budget) else 0)


if __name__ == "__main__":
    main()
