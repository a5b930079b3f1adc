"""BRA, MSDA, CSWin, Slide, DAT and DPT's DePatch: forward+backward time and peak memory, ours vs
the official formulations, at the official stage shapes for a video batch of 8 frames; Slide's inference with and
without re-parameterisation; the MSDeformAttn core vs Deformable DETR's pure-PyTorch core; then
end-to-end clips/s of the video models.

    python benchmarks/mixers.py [--repeats 5] [--device cpu|cuda] [--only mixers|models] [--match CSWin]

Peers (tests/official_mixers.py): BiFormer's gather-based BRA (ops/bra_legacy.py),
DilateFormer's unfold-based MSDA, CSWin's img2windows / get_lepe stripe attention
(models/cswin.py, LePEAttention) and Slide-Swin's two-convolution SlideAttention (one-hot
``dep_conv`` + ``dep_conv1``), re-implemented on the parameters of our modules; the outputs are
compared in the same run. Each measurement runs in a fresh subprocess: the median of ``repeats``
forward+backward passes after one warm-up, and the peak memory of the pass — the CUDA allocator's
peak on cuda, the growth of the process's peak RSS over its resident size before the first pass on
cpu. Module shapes: BiFormer-T stages 1/2/3 = 64/128/256 channels at 56²/28²/14² (n_win 7,
top-k 1/4/16, 2/4/8 heads); DilateFormer-T stages 1/2 = 72/144 channels at 56²/28² (3/6 heads,
dilations 1, 2, 3); CSWin-T stages 1/2 = 64/128 channels at 56²/28² (stripes 1/2, 2/4 heads);
Slide-Swin-T stages 1/2 = 96/192 channels at 56²/28² (3/6 heads, 3x3 neighbourhoods); DAT-T's
deformable attention in stages 3/4 = 384/768 channels at 14²/7² (12/24 heads, 3/6 offset groups,
offset kernels 5/3) and its shifted windows in stage 1 (96 channels at 56², 3 heads, 7x7, shift 4),
against the official ``DAttentionBaseline`` / ``ShiftWindowAttention`` formulations; DPT-T's DePatch
into stage 2 (64 -> 128 channels, 56² -> 28²) against the official ``Simple_DePatch`` with the
pure-PyTorch MSDeformAttn core.
MSDeformAttn: Deformable DETR's encoder at an 800x1088 image (levels 100x136, 50x68, 25x34, 13x17,
every position a query, 8 heads of 32 channels, 4 points per level) and the temporal mixer of
c2d_msdeform_r50's layer2 / layer3 for 2 clips of 16 frames at 224 px (T = 4 after the stem: 8 query
frames of 28x28 / 14x14, levels = frames t-1, t, t+1, 4 / 8 heads of 32 channels, 4 points), sampling
locations spread over the maps and 10 % beyond them.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import video_sparse  # noqa: E402
from video_sparse.layers.biformer import BiLevelRoutingAttention  # noqa: E402
from video_sparse.layers.cswin import CrossShapedWindowAttention  # noqa: E402
from video_sparse.layers.dat import DeformableAttention, WindowAttention  # noqa: E402
from video_sparse.layers.depatch import DePatchEmbed  # noqa: E402
from video_sparse.layers.dilate import MultiScaleDilatedAttention  # noqa: E402
from video_sparse.layers.slide import SlideAttention  # noqa: E402
from video_sparse.ops.msdeform_attention import msdeform_attention  # noqa: E402
from official_mixers import (official_bra, official_cswin, official_dat_attention, official_depatch,  # noqa: E402
                             official_msda, official_msdeform_core, official_slide, official_window_attention)

FRAMES = 8
CASES = {  # name: (module factory, map side, channels)
    "BRA BiFormer-T stage 1": (lambda: BiLevelRoutingAttention(64, 2, 7, 64, 1), 56, 64),
    "BRA BiFormer-T stage 2": (lambda: BiLevelRoutingAttention(128, 4, 7, 128, 4), 28, 128),
    "BRA BiFormer-T stage 3": (lambda: BiLevelRoutingAttention(256, 8, 7, 256, 16), 14, 256),
    "MSDA DilateFormer-T stage 1": (lambda: MultiScaleDilatedAttention(72, 3, (1, 2, 3)), 56, 72),
    "MSDA DilateFormer-T stage 2": (lambda: MultiScaleDilatedAttention(144, 6, (1, 2, 3)), 28, 144),
    "CSWin CSWin-T stage 1": (lambda: CrossShapedWindowAttention(64, 2, 1), 56, 64),
    "CSWin CSWin-T stage 2": (lambda: CrossShapedWindowAttention(128, 4, 2), 28, 128),
    "Slide Slide-Swin-T stage 1": (lambda: SlideAttention(96, 3), 56, 96),
    "Slide Slide-Swin-T stage 2": (lambda: SlideAttention(192, 6), 28, 192),
    "DAT DAT-T stage 3 deformable": (lambda: DeformableAttention(384, 12, 3, 14, 2.0, 5), 14, 384),
    "DAT DAT-T stage 4 deformable": (lambda: DeformableAttention(768, 24, 6, 7, 2.0, 3), 7, 768),
    "Window DAT-T stage 1 shifted": (lambda: WindowAttention(96, 3, 7, 4, 56), 56, 96),
    "DePatch DPT-T stage 2": (lambda: DePatchEmbed(64, 128, 28), 56, 64),
}
CHANNELS_FIRST = ("DAT", "Window", "DePatch")  # modules taking (B, C, H, W) maps
ENCODER_LEVELS = [(100, 136), (50, 68), (25, 34), (13, 17)]
MSDEFORM_CASES = {  # name: (batch, queries, level shapes, heads, channels per head, points)
    "MSDeformAttn Deformable-DETR encoder": (1, sum(h * w for h, w in ENCODER_LEVELS), ENCODER_LEVELS, 8, 32, 4),
    "MSDeformAttn c2d_msdeform_r50 layer2": (8, 28 * 28, [(28, 28)] * 3, 4, 32, 4),
    "MSDeformAttn c2d_msdeform_r50 layer3": (8, 14 * 14, [(14, 14)] * 3, 8, 32, 4),
}
OFFICIAL = {"BRA": official_bra, "MSDA": official_msda, "CSWin": official_cswin, "Slide": official_slide,
            "DAT": official_dat_attention, "Window": official_window_attention, "DePatch": official_depatch}
VIDEO_MODELS = {  # name: (clips, frames, side)
    "sifa_biformer_nano": (16, 8, 64), "sifa_dilateformer_nano": (16, 8, 64),
    "sifa_cswin_nano": (16, 8, 64), "sifa_biformer_tiny": (1, 8, 224), "sifa_dilateformer_tiny": (1, 8, 224),
    "sifa_cswin_tiny": (1, 8, 224), "sifa_slide_nano": (16, 8, 64), "sifa_slide_tiny": (1, 8, 224),
    "sifa_dat_nano": (16, 8, 64), "sifa_dat_tiny": (1, 8, 224), "sifa_dpt_nano": (16, 8, 64),
    "sifa_dpt_tiny": (1, 8, 224),
}


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def measure(fn, device: str, repeats: int) -> dict:
    """Median seconds of ``fn()`` over ``repeats`` after a warm-up, and the peak bytes of one call."""
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        before = rss_bytes()
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - before
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return {"seconds": statistics.median(times), "peak": peak}


def one_mixer(case: str, impl: str, device: str, repeats: int) -> dict:
    """Subprocess body: one implementation of one case; also returns a checksum of its output."""
    factory, side, channels = CASES[case]
    torch.manual_seed(0)
    module = factory().to(device)
    shape = (FRAMES, channels, side, side) if case.startswith(CHANNELS_FIRST) else (FRAMES, side, side, channels)
    x = torch.randn(shape, device=device, requires_grad=True)
    official = OFFICIAL[case.split()[0]]
    forward = {"ours": lambda t: module(t), "official": lambda t: official(module, t)}[impl]
    with torch.no_grad():
        grad_out = torch.randn_like(module(x))

    def step():
        x.grad = None
        module.zero_grad(set_to_none=True)
        forward(x).backward(grad_out)

    result = measure(step, device, repeats)
    with torch.no_grad():
        out = forward(x)
    result["checksum"] = [out.double().sum().item(), out.double().abs().sum().item(), x.grad.double().abs().sum().item()]
    return result


def one_slide_inference(case: str, form: str, device: str, repeats: int) -> dict:
    """Subprocess body: Slide attention forward without gradients: the official two-convolution
    form, or ours re-parameterised."""
    factory, side, channels = CASES[case]
    torch.manual_seed(0)
    module = factory().to(device).eval()
    torch.nn.init.normal_(module.dep_conv1.bias)  # biases as a trained model has them
    forward = (lambda t: official_slide(module, t)) if form == "official two-path" else module
    if form == "re-parameterised":
        module.reparameterize()
    x = torch.randn(FRAMES, side, side, channels, device=device)

    def infer():
        with torch.no_grad():
            forward(x)

    result = measure(infer, device, repeats)
    with torch.no_grad():
        result["checksum"] = [forward(x).double().sum().item()]
    return result


def one_model(name: str, device: str, repeats: int) -> dict:
    clips, frames, side = VIDEO_MODELS[name]
    torch.manual_seed(0)
    model = video_sparse.build_model(name, num_classes=400).to(device)
    x = torch.randn(clips, 3, frames, side, side, device=device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def train_step():
        out = model(x)
        loss = sum(o.float().logsumexp(-1).mean() for o in (out if isinstance(out, tuple) else (out,)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def infer():
        with torch.no_grad():
            model(x)

    model.train()
    train = measure(train_step, device, repeats)
    model.eval()
    inference = measure(infer, device, repeats)
    return {"train": clips / train["seconds"], "infer": clips / inference["seconds"], "peak": train["peak"]}


def subprocess_json(*args: str) -> dict:
    # A fixed mmap threshold makes glibc hand every large freed block back at once, so the peak RSS
    # follows the tensors alive (with its adaptive threshold freed blocks stay in the heap).
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env=env)
    if out.returncode:
        raise RuntimeError(f"{args}: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--only", choices=["mixers", "models"], help="print one of the two tables")
    parser.add_argument("--match", default="", help="only the layers / models whose name contains this")
    args = parser.parse_args()
    memory = "CUDA peak allocated" if args.device == "cuda" else "peak RSS growth"
    print(f"torch {torch.__version__}, device {args.device}, {torch.get_num_threads()} threads, "
          f"median of {args.repeats}; memory: {memory}\n")
    if args.only != "models":
        mixer_table(args)
        slide_inference_table(args)
        msdeform_table(args)
    if args.only != "mixers":
        model_table(args)


def ours_vs_official_row(mode: str, case: str, shape: str, args) -> str:
    """Both implementations of one case, each in its own process: one table row."""
    ours = subprocess_json(mode, case, "ours", args.device, str(args.repeats))
    official = subprocess_json(mode, case, "official", args.device, str(args.repeats))
    same = all(abs(a - b) <= 1e-4 * max(1.0, abs(b)) for a, b in zip(ours["checksum"], official["checksum"]))
    return (f"| {case} | {shape} | {ours['seconds'] * 1e3:.1f} | {official['seconds'] * 1e3:.1f} | "
            f"{official['seconds'] / ours['seconds']:.2f}x | {ours['peak'] / 2**20:.0f} | "
            f"{official['peak'] / 2**20:.0f} | {ours['peak'] / official['peak']:.2f}x | {'yes' if same else 'NO'} |")


def mixer_table(args) -> None:
    print(f"forward+backward of one layer on {FRAMES} frames\n")
    print("| layer | map | ours ms | official ms | speed-up | ours MiB | official MiB | memory ratio | same output |")
    print("|---|---|---|---|---|---|---|---|---|")
    for case, (_, side, channels) in CASES.items():
        if args.match in case:
            print(ours_vs_official_row("_mixer", case, f"{FRAMES}x{channels}x{side}²", args))


def one_msdeform(case: str, impl: str, device: str, repeats: int) -> dict:
    """Subprocess body: the MSDeformAttn core (ours or the official pure-PyTorch one), forward+backward
    with respect to the values, locations and weights."""
    N, Lq, shapes, M, D, K = MSDEFORM_CASES[case]
    S = sum(h * w for h, w in shapes)
    g = torch.Generator().manual_seed(0)
    value = torch.randn(N, S, M, D, generator=g).to(device).requires_grad_(True)
    locations = (torch.rand(N, Lq, M, len(shapes), K, 2, generator=g) * 1.2 - 0.1).to(device).requires_grad_(True)
    weights = torch.rand(N, Lq, M, len(shapes), K, generator=g).to(device).requires_grad_(True)
    core = {"ours": msdeform_attention, "official": official_msdeform_core}[impl]
    grad_out = torch.randn(N, Lq, M * D, generator=g).to(device)

    def step():
        for t in (value, locations, weights):
            t.grad = None
        core(value, shapes, locations, weights).backward(grad_out)

    result = measure(step, device, repeats)
    with torch.no_grad():
        out = core(value, shapes, locations, weights)
    result["checksum"] = [out.double().sum().item(), value.grad.double().abs().sum().item(),
                          locations.grad.double().abs().sum().item()]
    return result


def msdeform_table(args) -> None:
    print("\nMSDeformAttn core, forward+backward: ours (one level and point at a time, sampled again in backward) "
          "vs the official pure-PyTorch core\n")
    print("| case | batch x queries x heads x levels x points | ours ms | official ms | speed-up | ours MiB | "
          "official MiB | memory ratio | same output |")
    print("|---|---|---|---|---|---|---|---|---|")
    for case, (N, Lq, shapes, M, D, K) in MSDEFORM_CASES.items():
        if args.match in case:
            print(ours_vs_official_row("_msdeform", case, f"{N}x{Lq}x{M}x{len(shapes)}x{K} (C={M * D})", args))


def slide_inference_table(args) -> None:
    print(f"\nSlide attention inference (no gradients) on {FRAMES} frames: the official two-convolution form vs "
          "ours re-parameterised\n")
    print("| layer | map | official two-path ms | ours re-parameterised ms | speed-up | same output |")
    print("|---|---|---|---|---|---|")
    for case, (_, side, channels) in CASES.items():
        if not case.startswith("Slide") or args.match not in case:
            continue
        two = subprocess_json("_slide", case, "official two-path", args.device, str(args.repeats))
        merged = subprocess_json("_slide", case, "re-parameterised", args.device, str(args.repeats))
        same = abs(two["checksum"][0] - merged["checksum"][0]) <= 1e-4 * max(1.0, abs(two["checksum"][0]))
        print(f"| {case} | {FRAMES}x{channels}x{side}² | {two['seconds'] * 1e3:.1f} | {merged['seconds'] * 1e3:.1f} | "
              f"{two['seconds'] / merged['seconds']:.2f}x | {'yes' if same else 'NO'} |")


def model_table(args) -> None:
    print("\nvideo models, 400 classes: AdamW training step and inference\n")
    print("| model | clips x frames x size | train clips/s | inference clips/s | train step peak MiB |")
    print("|---|---|---|---|---|")
    for name, (clips, frames, side) in VIDEO_MODELS.items():
        if args.match.lower() not in name:
            continue
        r = subprocess_json("_model", name, args.device, str(args.repeats))
        print(f"| {name} | {clips}x{frames}x{side}² | {r['train']:.2f} | {r['infer']:.2f} | {r['peak'] / 2**20:.0f} |")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_mixer":
        print(json.dumps(one_mixer(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))))
    elif len(sys.argv) > 1 and sys.argv[1] == "_slide":
        print(json.dumps(one_slide_inference(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))))
    elif len(sys.argv) > 1 and sys.argv[1] == "_msdeform":
        print(json.dumps(one_msdeform(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))))
    elif len(sys.argv) > 1 and sys.argv[1] == "_model":
        print(json.dumps(one_model(sys.argv[2], sys.argv[3], int(sys.argv[4]))))
    else:
        main()
