"""What the tests share: composing configs as the apps do, running the apps, a tiny training run,
test videos and one model per family. Imported as ``from helpers import ...`` (pytest puts tests/
on the path); fixtures stay in conftest.py."""
import os
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# What a user reads: README and the guides it links to (their commands, keys and models are tested)
USER_DOCS = ("README.md", "docs/motion.md", "docs/training.md", "docs/datasets.md", "docs/evaluation.md",
             "docs/models.md")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("WANDB_MODE", "offline")


def tiny(motion_cache):
    """Hydra overrides for a seconds-long run on a tiny motion set."""
    return [f"data.cache_dir={motion_cache}", "data.train_size=20", "data.val_size=10", "data.video_frames=8",
            "data.video_size=32", "data.frames=4", "data.size=32", "data.short_side=32", "trainer.epochs=1",
            "trainer.batch_size=4", "trainer.num_workers=0", "logger.mode=disabled", "trainer.device=cpu"]


def compose(config_name, overrides):
    from hydra import compose as hydra_compose, initialize_config_dir

    import video_sparse.apps.config  # noqa: F401  (registers the schema)
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return hydra_compose(config_name=config_name,
                             overrides=video_sparse.apps.config.expand_shorthands(config_name, overrides))


def compose_with_hydra(config_name, overrides):
    """Like :func:`compose`, with the ``hydra`` node (launcher, sweeper) kept."""
    from hydra import compose as hydra_compose, initialize_config_dir

    import video_sparse.apps.config  # noqa: F401  (registers the schema)
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return hydra_compose(config_name=config_name, return_hydra_config=True,
                             overrides=video_sparse.apps.config.expand_shorthands(config_name, overrides))


def run_app(script, args, cwd, timeout=300, check=True):
    """Run ``python train.py|eval.py args`` as a user would; returns the CompletedProcess."""
    import subprocess
    proc = subprocess.run([sys.executable, str(ROOT / script), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                             f"{proc.stderr[-5000:]}")
    return proc


def train_in_process(overrides, run_dir):
    """What ``python train.py <overrides>`` does after parsing (the checks, then the training loop),
    in this process: the seconds of a fresh interpreter saved where the command line is not the
    subject (the apps are run as commands by tests/test_apps.py)."""
    from video_sparse.apps.checks import check_train
    from video_sparse.engine import trainer

    cfg = compose("train", overrides)
    check_train(cfg)
    return trainer.train(cfg, run_dir)


def write_video(path, num_frames=40, height=48, width=64, codec="libx264", options=None, pix_fmt="yuv420p",
                fps=25, pts=None):
    """A textured scene panning across the frame (real motion for P- and B-frames), each frame
    with its index in a corner. ``pts``: per-frame timestamps in ms (variable frame rate)."""
    rng = np.random.default_rng(num_frames + height)
    texture = np.repeat(np.repeat(rng.integers(0, 256, (height // 4 + 2, width // 4 + 2, 3), dtype=np.uint8), 8, 0),
                        8, 1)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.options = options or {}
        if pts is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        for t in range(num_frames):
            y, x = (2 * t) % height, (3 * t) % width
            image = np.ascontiguousarray(texture[y:y + height, x:x + width])
            image[:6, :6] = 6 * t % 256
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            if pts is not None:
                frame.pts, frame.time_base = int(pts[t]), Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


FAMILIES = [
    ("c2d_small", 4, 32),                # C2D ResNet (order-blind twin)
    ("sifa_small", 4, 32),               # SIFA-Net ResNet: deformable inter-frame attention, dual head
    ("msdeform_small", 4, 32),           # SIFA-Net with multi-scale deformable attention across frames
    ("sifa_biformer_nano", 8, 64),       # BiFormer bi-level routing
    ("sifa_dilateformer_nano", 8, 64),   # DilateFormer multi-scale dilated attention
    ("sifa_cswin_nano", 8, 64),          # CSWin cross-shaped windows
    ("sifa_slide_nano", 8, 64),          # Slide attention
    ("sifa_dat_nano", 8, 64),            # DAT deformable attention
    ("sifa_dpt_nano", 8, 64),            # DPT deformable patches
    ("x3d_nano", 8, 64),                 # pytorchvideo baselines
    ("slow_nano", 8, 64),
    ("slowfast_nano", 8, 64),
    ("ptv_c2d_nano", 8, 64),
    ("i3d_nano", 8, 64),
    ("r2plus1d_nano", 8, 64),
    ("csn_nano", 16, 64),                # 8x temporal reduction: 16 frames leave 2
    ("mvit_nano", 4, 64),
]
