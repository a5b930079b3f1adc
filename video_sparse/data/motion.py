"""The built-in motion benchmark: synthetic videos whose label is carried by temporal order alone.

Ten classes in five time-reversal pairs (class ``2p`` and class ``2p + 1`` are each other played
backwards). Every video shows one *actor* doing its class's motion, 0-2 *distractors* on
time-symmetric random walks or jitter, a textured background drifting slowly, random colours and
shapes, mild sensor noise and motion blur.

How the symmetry property is guaranteed
---------------------------------------
A video is rendered frame by frame from a :class:`MotionState`, a set of arrays indexed by frame
``t`` and sub-frame ``s`` (the exposure is integrated over ``S`` symmetric sub-frame instants,
which produces motion blur). Rendering frame ``t`` reads only ``state[t]``. The state of a class-B
video drawn from seed ``z`` is *exactly* the time reversal of the class-A state drawn from the
same seed (frame axis and sub-frame axis flipped). Seeds are drawn independently of the class, so
a class-A video and its reversal as class-B video are equally likely. Nuisances (distractors,
background drift) are reversed by a fair coin of their own, so their law is time-symmetric and
they carry no information about time's direction either. Consequently a model blind to frame
order cannot beat 50% inside a pair, while a model that compares consecutive frames can reach
100%. ``tests/test_motion.py`` checks all of this on the generator's parameters.

Files: H.264 MP4 (yuv420p), every frame an intra frame at high quality so that compression
quality does not depend on the frame index (a GOP's sharp first frame would leak time's
direction to order-blind models).
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import signal
import tempfile
import threading
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, fields
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from ..errors import WriteError, place_error

log = logging.getLogger(__name__)

CLASS_NAMES = (
    "moving left", "moving right",
    "moving up", "moving down",
    "rotating clockwise", "rotating counter-clockwise",
    "growing", "shrinking",
    "fading in", "fading out",
)
NUM_PAIRS = len(CLASS_NAMES) // 2
SHAPES = ("circle", "square", "triangle", "cross", "bar", "half-disc", "ell")
# The smallest turn that maps each shape onto itself (0: every turn does).
SYMMETRY_DEGREES = {"circle": 0, "square": 90, "triangle": 120, "cross": 90, "bar": 180, "half-disc": 360,
                    "ell": 360}
# A rotation must be visible in the pixels and its direction unambiguous: a shape that repeats
# itself every S degrees turned by a step of s looks the same as turned by s - S the other way, so
# sparse clips (4 frames: steps of 36-55 degrees here) only rotate shapes with S >= 180.
ROTATABLE_SHAPES = tuple(s for s in SHAPES if SYMMETRY_DEGREES[s] >= 180)
# Sizes are radii as fractions of min(H, W); noise in [0, 1] intensity units.
ACTOR_SIZE = (0.14, 0.18)
# A rotating actor is drawn larger: its turn moves its outline by a few pixels per step, which must
# span a cell of the models' stride-4/8 feature maps. (Size tells the pair, never the direction.)
ROTATING_ACTOR_SIZE = (0.2, 0.25)
ROTATION_DEGREES = (135.0, 165.0)  # total turn over the video
DISTRACTOR_SIZE = (0.05, 0.09)
NOISE_STD = 0.015
GENERATOR_VERSION = 6  # bump when rendering changes, so cached sets are regenerated


def class_pairs() -> list[tuple[int, int]]:
    """The (A, B) class-index pairs where B is A played backwards."""
    return [(2 * p, 2 * p + 1) for p in range(NUM_PAIRS)]


@dataclass
class MotionState:
    """Everything that varies over time in one video, sampled at every (frame, sub-frame).

    Arrays have a leading ``(T, S)``; objects add an axis ``O`` (actor first, then distractors).
    Angles in radians, positions and sizes in pixels, ``alpha`` the object's opacity.
    """

    cx: np.ndarray      # (T, S, O)
    cy: np.ndarray      # (T, S, O)
    angle: np.ndarray   # (T, S, O)
    size: np.ndarray    # (T, S, O)
    alpha: np.ndarray   # (T, S, O)
    bg_shift: np.ndarray  # (T, S, 2) background drift (dy, dx)
    noise: np.ndarray   # (T, H, W, 3) sensor noise in [0, 1] units

    def time_reversed(self) -> "MotionState":
        """The same video played backwards: frame and sub-frame axes flipped."""
        out = {}
        for f in fields(self):
            a = getattr(self, f.name)
            out[f.name] = a[::-1, ::-1].copy() if f.name != "noise" else a[::-1].copy()
        return MotionState(**out)


@dataclass
class MotionVideo:
    """One generated video: its time-varying state plus the constants needed to render it."""

    label: int
    state: MotionState
    shapes: list[str]         # per object
    colours: np.ndarray       # (O, 3) in [0, 1]
    background: np.ndarray    # (H + 2m, W + 2m, 3) texture, cropped with bg_shift
    margin: int


def _subframe_times(frames: int, subframes: int, exposure: float) -> np.ndarray:
    """(T, S) instants integrated by each frame; symmetric around the frame's centre."""
    offsets = (np.arange(subframes) / max(subframes - 1, 1) - 0.5) * exposure if subframes > 1 else np.zeros(1)
    return np.arange(frames)[:, None] + offsets[None, :]


def _random_texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A smooth random two-colour texture of shape (h, w, 3)."""
    coarse = rng.random((6, 6))
    ys, xs = np.linspace(0, 5, h), np.linspace(0, 5, w)
    y0, x0 = np.minimum(ys.astype(int), 4), np.minimum(xs.astype(int), 4)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    smooth = ((1 - fy) * (1 - fx) * coarse[y0][:, x0] + (1 - fy) * fx * coarse[y0][:, x0 + 1]
              + fy * (1 - fx) * coarse[y0 + 1][:, x0] + fy * fx * coarse[y0 + 1][:, x0 + 1])
    fine = rng.random((h, w)) * 0.35
    mix = (smooth * 0.65 + fine)[..., None]
    base = rng.uniform(0.15, 0.85, 3)
    other = np.clip(base + rng.uniform(-0.2, 0.2, 3), 0, 1)
    return base * (1 - mix) + other * mix


def _contrasting_colour(rng: np.random.Generator, background_mean: float) -> np.ndarray:
    while True:
        c = rng.uniform(0, 1, 3)
        if abs(c.mean() - background_mean) > 0.3:
            return c


def _reflect(p, lo, hi):
    """Fold positions back into [lo, hi] as if reflected by walls."""
    width = hi - lo
    if width <= 0:
        return np.full_like(p, lo)
    q = np.mod(p - lo, 2 * width)
    return lo + np.where(q > width, 2 * width - q, q)


def _random_walk(rng, times, start, step, lo, hi):
    """Reflected Gaussian random walk with knots at frames -1..T, linearly interpolated at ``times``."""
    knots_t = np.arange(-1, times.shape[0] + 1)
    pos = _reflect(start + np.cumsum(np.r_[0.0, rng.normal(0, step, len(knots_t) - 1)]), lo, hi)
    return np.interp(times, knots_t, pos)


def sample_video(seed: int | np.random.SeedSequence, label: int, frames: int = 16, height: int = 64,
                 width: int = 64, subframes: int = 5, exposure: float = 1.0,
                 max_distractors: int = 2) -> MotionVideo:
    """Draw one video of class ``label`` from ``seed``.

    The class-A member of a pair is sampled; the class-B member uses the same draw with time
    reversed, which makes ``sample_video(z, 2p + 1)`` the exact reversal of ``sample_video(z, 2p)``.

    Args:
        frames, height, width: video size.
        subframes, exposure: motion blur integrates ``subframes`` instants spread over
            ``exposure`` frame intervals, centred on each frame (1.0: the shutter is open all the
            time between frames).
        max_distractors: distractor objects per video are drawn uniformly from 0..max_distractors.
    """
    if not 0 <= label < len(CLASS_NAMES):
        raise ValueError(f"label must be in [0, {len(CLASS_NAMES)}), got {label}")
    rng = np.random.default_rng(seed)
    pair, reverse = divmod(label, 2)
    T, H, W = frames, height, width
    times = _subframe_times(T, subframes, exposure=exposure)
    scale = min(H, W)
    span = max(T - 1, 1)
    tau = times / span  # normalised time in [-0.5/span, 1 + 0.5/span]
    ones = np.ones_like(times)

    # --- actor (object 0): its motion is the class -------------------------------------------
    shape = str(rng.choice(ROTATABLE_SHAPES if pair == 2 else SHAPES))
    size = rng.uniform(*(ROTATING_ACTOR_SIZE if pair == 2 else ACTOR_SIZE)) * scale
    angle0 = rng.uniform(0, 2 * np.pi)
    cx = rng.uniform(size * 1.2, W - size * 1.2) * ones
    cy = rng.uniform(size * 1.2, H - size * 1.2) * ones
    angle = angle0 * ones
    sizes = size * ones
    alpha = ones.copy()
    if pair in (0, 1):  # moving left / moving up: travel 35-55% of the frame
        travel = rng.uniform(0.35, 0.55) * scale
        extent = (W if pair == 0 else H)
        start = rng.uniform(size + travel, extent - size)
        pos = start - travel * tau
        if pair == 0:
            cx = pos
        else:
            cy = pos
    elif pair == 2:  # rotating clockwise on screen (y axis points down): the angle increases
        angle = angle0 + np.deg2rad(rng.uniform(*ROTATION_DEGREES)) * tau
    elif pair == 3:  # growing
        s0 = rng.uniform(0.05, 0.07) * scale
        ratio = rng.uniform(2.4, 3.0)
        sizes = s0 * ratio ** tau
        lim = s0 * ratio * 1.1
        cx = rng.uniform(lim, W - lim) * ones if W > 2 * lim else W / 2 * ones
        cy = rng.uniform(lim, H - lim) * ones if H > 2 * lim else H / 2 * ones
    else:  # fading in
        a0, a1 = rng.uniform(0.0, 0.15), rng.uniform(0.9, 1.0)
        alpha = np.clip(a0 + (a1 - a0) * tau, 0, 1)
    shapes = [shape]
    tracks = [(cx, cy, angle, sizes, alpha)]

    # --- nuisances: each reversed by its own fair coin so that its law is time-symmetric ------
    margin = int(np.ceil(0.1 * scale)) + 2
    background = _random_texture(rng, H + 2 * margin, W + 2 * margin)
    bg_mean_colour = float(background.mean())
    direction = rng.uniform(0, 2 * np.pi)
    drift = rng.uniform(0, 0.08 * scale) * np.array([np.sin(direction), np.cos(direction)])
    bg_times = times if rng.random() < 0.5 else span - times
    bg_shift = np.stack([drift[0] * (bg_times / span - 0.5), drift[1] * (bg_times / span - 0.5)], -1)

    for _ in range(int(rng.integers(0, max_distractors + 1))):
        d_shape = str(rng.choice(SHAPES))
        d_size = rng.uniform(*DISTRACTOR_SIZE) * scale
        d_times = times if rng.random() < 0.5 else span - times
        if rng.random() < 0.5:  # random walk
            step = rng.uniform(0.01, 0.03) * scale
            dcx = _random_walk(rng, d_times, rng.uniform(d_size, W - d_size), step, d_size, W - d_size)
            dcy = _random_walk(rng, d_times, rng.uniform(d_size, H - d_size), step, d_size, H - d_size)
        else:  # jitter around a fixed point
            knots = np.arange(-1, T + 1)
            jit = rng.normal(0, 0.015 * scale, (2, len(knots)))
            dcx = rng.uniform(d_size, W - d_size) + np.interp(d_times, knots, jit[0])
            dcy = rng.uniform(d_size, H - d_size) + np.interp(d_times, knots, jit[1])
        shapes.append(d_shape)
        tracks.append((dcx, dcy, rng.uniform(0, 2 * np.pi) * ones, d_size * ones, ones))

    colours = np.stack([_contrasting_colour(rng, bg_mean_colour) for _ in shapes])
    noise = rng.standard_normal((T, H, W, 3), dtype=np.float32) * NOISE_STD
    stacked = [np.stack(arrs, axis=-1) for arrs in zip(*tracks)]
    state = MotionState(*stacked, bg_shift=bg_shift, noise=noise)
    if reverse:
        state = state.time_reversed()
    return MotionVideo(label=label, state=state, shapes=shapes, colours=colours,
                       background=background, margin=margin)


def _shape_distance(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Approximate signed distance to the unit shape in object coordinates (negative inside)."""
    au, av = np.abs(u), np.abs(v)
    if shape == "circle":
        return np.sqrt(u * u + v * v) - 1.0
    if shape == "square":
        return np.maximum(au, av) - 0.8
    if shape == "triangle":  # equilateral with in-radius 0.5, a vertex pointing along -u
        n = np.array([[1.0, 0.0], [-0.5, np.sqrt(3) / 2], [-0.5, -np.sqrt(3) / 2]])
        return np.max([n[i, 0] * u + n[i, 1] * v for i in range(3)], axis=0) - 0.5
    if shape == "cross":
        return np.minimum(np.maximum(au - 1.0, av - 0.3), np.maximum(au - 0.3, av - 1.0))
    if shape == "bar":
        return np.maximum(au - 1.0, av - 0.35)
    if shape == "half-disc":
        return np.maximum(np.sqrt(u * u + (v + 0.4) ** 2) - 1.0, -(v + 0.4))
    if shape == "ell":
        return np.minimum(np.maximum(np.abs(u + 0.5) - 0.35, av - 0.9),
                          np.maximum(au - 0.85, np.abs(v - 0.55) - 0.35))
    raise ValueError(f"unknown shape {shape!r}")


def _clip_span(lo: float, hi: float, n: int) -> tuple[int, int]:
    return max(int(np.floor(lo)), 0), min(int(np.ceil(hi)) + 1, n)


def render_video(video: MotionVideo) -> np.ndarray:
    """Render to uint8 frames of shape (T, H, W, 3). Frame t depends only on ``state[t]``.

    Each object's coverage is averaged over the exposure's sub-frames (motion blur) and then
    composited over the layers below it; the background is read at the exposure's mean drift.
    """
    st = video.state
    T, S, O = st.cx.shape
    H, W = st.noise.shape[1:3]
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float32)
    # Background: the texture shifted by the exposure's mean drift. The shift is the same for
    # every pixel, so bilinear interpolation is a blend of four integer-shifted crops.
    tex = video.background.astype(np.float32)
    img = np.empty((T, H, W, 3), np.float32)
    for t, (dy, dx) in enumerate(video.margin + st.bg_shift.mean(axis=1)):
        y0, x0 = int(np.floor(dy)), int(np.floor(dx))
        fy, fx = dy - y0, dx - x0
        win = tex[y0:y0 + H + 1, x0:x0 + W + 1]
        img[t] = ((1 - fy) * (1 - fx) * win[:-1, :-1] + (1 - fy) * fx * win[:-1, 1:]
                  + fy * (1 - fx) * win[1:, :-1] + fy * fx * win[1:, 1:])
    for o in reversed(range(O)):  # distractors first, the actor on top
        # Only the box the object sweeps during the whole video can be covered (every unit shape
        # lies within radius 1.3; +1 px for the soft edge).
        reach = 1.3 * st.size[..., o].max() + 1
        x_lo, x_hi = _clip_span(st.cx[..., o].min() - reach, st.cx[..., o].max() + reach, W)
        y_lo, y_hi = _clip_span(st.cy[..., o].min() - reach, st.cy[..., o].max() + reach, H)
        if x_lo >= x_hi or y_lo >= y_hi:
            continue
        dx = xs[y_lo:y_hi, x_lo:x_hi] - st.cx[..., o, None, None].astype(np.float32)  # (T, S, h, w)
        dy = ys[y_lo:y_hi, x_lo:x_hi] - st.cy[..., o, None, None].astype(np.float32)
        angle = st.angle[..., o, None, None].astype(np.float32)
        c, s = np.cos(angle), np.sin(angle)
        size = st.size[..., o, None, None].astype(np.float32)
        u, v = (c * dx + s * dy) / size, (-s * dx + c * dy) / size
        coverage = np.clip(0.5 - _shape_distance(video.shapes[o], u, v) * size, 0.0, 1.0)
        a = (coverage * st.alpha[..., o, None, None].astype(np.float32)).mean(axis=1)[..., None]
        box = img[:, y_lo:y_hi, x_lo:x_hi]
        img[:, y_lo:y_hi, x_lo:x_hi] = box * (1 - a) + video.colours[o].astype(np.float32) * a
    frames = img + st.noise
    return np.clip(np.rint(frames * 255), 0, 255).astype(np.uint8)


def write_mp4(path: str | os.PathLike, frames: np.ndarray, fps: int = 8, crf: int = 12) -> None:
    """Write (T, H, W, 3) uint8 RGB frames as intra-only H.264 yuv420p MP4 with PyAV."""
    import av

    T, H, W, _ = frames.shape
    if H % 2 or W % 2:
        raise ValueError(f"yuv420p needs even sizes, got {H}x{W}")
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        # g=1: every frame an intra frame, so quality does not depend on the frame index.
        # fastdecode (no CABAC, no deblocking) roughly halves decoding time of these tiny clips.
        stream.options = {"crf": str(crf), "g": "1", "preset": "veryfast", "tune": "fastdecode"}
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


# --------------------------------------------------------------------------------------------
# The cached dataset on disk
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MotionSetSpec:
    """Parameters that define a generated set; their hash names its cache folder."""

    train_size: int = 2000
    val_size: int = 500
    frames: int = 16
    height: int = 64
    width: int = 64
    seed: int = 0
    version: int = GENERATOR_VERSION

    def key(self) -> str:
        return hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "video_sparse" / "motion"


def _video_jobs(spec: MotionSetSpec):
    """(split, index, label, seed) for every video; labels balanced, seeds independent of labels."""
    jobs = []
    for split_id, (split, n) in enumerate((("train", spec.train_size), ("val", spec.val_size))):
        label_rng = np.random.default_rng(np.random.SeedSequence([spec.seed, split_id, 7]))
        labels = label_rng.permutation(np.arange(n) % len(CLASS_NAMES))
        for i in range(n):
            jobs.append((split, i, int(labels[i]), (spec.seed, split_id, i)))
    return jobs


def _generate_one(args):
    folder, spec, (split, index, label, seed) = args
    video = sample_video(np.random.SeedSequence(list(seed)), label, spec.frames, spec.height, spec.width)
    rel = f"{split}/{index:05d}.mp4"
    write_mp4(Path(folder) / rel, render_video(video))
    return split, rel, label


def _is_complete(folder: Path, spec: MotionSetSpec) -> bool:
    """Whether ``folder`` holds the finished set of ``spec`` (its manifest is written last)."""
    try:
        return json.loads((folder / "manifest.json").read_text()).get("spec") == asdict(spec)
    except (OSError, json.JSONDecodeError):
        return False


@contextlib.contextmanager
def _generation_lock(cache: Path, key: str):
    """Hold ``<cache>/<key>.lock`` so that one process at a time generates a set: the jobs of a
    sweep started on a cold cache wait for the first, then find the set ready. A file system
    without ``flock`` (some network ones) goes without: :func:`_install` then keeps whichever copy
    is finished first. Yields whether the lock is held."""
    path = cache / f"{key}.lock"
    with open(path, "a") as f:  # never deleted: removing a lock file races with its next user
        try:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.info("waiting for another process to finish generating the motion set %s", cache / key)
                fcntl.flock(f, fcntl.LOCK_EX)
        except OSError as e:
            log.warning("cannot lock %s (%s); generating the motion set without a lock", path, e)
            yield False
            return
        yield True  # closing the file releases the lock


def _install(tmp: Path, folder: Path, spec: MotionSetSpec) -> None:
    """Rename the finished set ``tmp`` into place, or, when another process installed the same
    set first (no lock), discard ``tmp`` and keep theirs."""
    try:
        os.replace(tmp, folder)
    except OSError:  # ENOTEMPTY / EEXIST: ``folder`` exists and is not empty
        if not _is_complete(folder, spec):
            raise
        shutil.rmtree(tmp, ignore_errors=True)


def _generate(spec: MotionSetSpec, folder: Path, workers: int | None, progress: bool) -> None:
    """Write every video, the lists, ``classes.txt`` and ``manifest.json`` (last) into ``folder``."""
    from tqdm import tqdm

    (folder / "train").mkdir()
    (folder / "val").mkdir()
    jobs = [(str(folder), spec, j) for j in _video_jobs(spec)]
    if workers is None:  # a spawned worker first imports torch (~4 s): below ~500 videos one process is faster
        workers = min(len(os.sched_getaffinity(0)), 8) if len(jobs) >= 500 else 1
    results = []
    bar = tqdm(total=len(jobs), desc="generating motion videos", unit="video", disable=not progress)
    if workers > 1:
        # Spawned, not forked: the caller may be a DDP rank with live gloo threads, and a child
        # forked from a threaded process can deadlock or die. The executor turns a dead worker
        # into BrokenProcessPool where multiprocessing.Pool waits for it forever.
        pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"))
        try:
            for r in pool.map(_generate_one, jobs, chunksize=16):
                results.append(r)
                bar.update()
        finally:
            pool.shutdown(cancel_futures=True)  # on an error or Ctrl-C, do not finish the queue
    else:
        for j in jobs:
            results.append(_generate_one(j))
            bar.update()
    bar.close()
    for split in ("train", "val"):
        lines = [f"{rel} {label}\n" for s, rel, label in results if s == split]
        (folder / f"{split}.txt").write_text("".join(lines))
    (folder / "classes.txt").write_text("".join(f"{c}\n" for c in CLASS_NAMES))
    (folder / "manifest.json").write_text(json.dumps(
        {"spec": asdict(spec), "classes": list(CLASS_NAMES), "pairs": class_pairs()}, indent=1))


class MotionSetError(WriteError):
    """The motion set cannot be written: a full disk, a read-only or foreign cache folder."""


@contextlib.contextmanager
def _sigterm_unwinds():
    """SIGTERM (a scheduler, ``kill``) raises ``SystemExit(143)`` here instead of ending the
    process on the spot, so the ``finally`` clauses remove the partial set. Main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def unwind(signum, frame):
        raise SystemExit(128 + signum)
    previous = signal.signal(signal.SIGTERM, unwind)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _new_partial_folder(cache: Path, key: str, locked: bool) -> Path:
    """A fresh ``.<key>-*`` folder for a generation, with the umask's permissions (``mkdtemp``
    makes it 0700, which the renamed set would keep), after removing those that a killed
    generation left (``locked``: no other generation is live)."""
    for stale in cache.glob(f".{key}-*") if locked else []:
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=cache))
    umask = os.umask(0o022)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)
    return tmp


def prepare_motion_dataset(spec: MotionSetSpec, cache_dir: str | os.PathLike | None = None,
                           workers: int | None = None, progress: bool = True) -> Path:
    """Generate the set (or reuse the cached copy) and return its folder.

    The folder holds ``train/*.mp4``, ``val/*.mp4``, ``train.txt`` and ``val.txt`` (``path label``
    lists relative to the folder), ``classes.txt`` and ``manifest.json``. The set is built in a
    temporary folder and renamed into place when complete, so an interrupted generation never
    leaves a half-written set that looks finished (an error, Ctrl-C or SIGTERM removes the partial
    folder; one a SIGKILL left is removed by the next generation); a lock beside it makes concurrent
    callers (the jobs of a sweep) wait for one generation instead of each writing its own.
    ``workers``: processes (default: one per CPU, up to 8, for sets of 500 videos or more, else 1);
    the result does not depend on it. A full disk or an unwritable cache folder raises
    :class:`MotionSetError`.
    """
    if spec.height % 2 or spec.width % 2:
        raise ValueError(f"data.height/width must be even for yuv420p video, got {spec.height}x{spec.width}")
    if spec.train_size < 1 or spec.val_size < 1:
        raise ValueError("data.train_size and data.val_size must be >= 1")
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    folder = cache / spec.key()
    if _is_complete(folder, spec):
        return folder
    try:
        cache.mkdir(parents=True, exist_ok=True)
        with _generation_lock(cache, spec.key()) as locked, _sigterm_unwinds():
            if _is_complete(folder, spec):  # generated by another process while this one waited
                return folder
            if folder.exists():  # an older or damaged copy
                shutil.rmtree(folder)
            tmp = _new_partial_folder(cache, spec.key(), locked)
            try:
                _generate(spec, tmp, workers, progress)
                _install(tmp, folder, spec)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)  # gone after the rename, unless interrupted
    except Exception as e:  # noqa: BLE001 - FFmpeg's and numpy's errors carry the OSError as their cause
        if (disk := place_error(e)) is None:
            raise
        raise MotionSetError(f"data.cache_dir: cannot write the motion set into {cache} ({disk.strerror}); the partial "
                             "set was removed. Fix: free space there, or data.cache_dir=<a writable folder with "
                             "room>") from e
    return folder


def preview(path: str | os.PathLike, seed: int = 0, frames: int = 16, size: int = 64, every: int = 3) -> None:
    """Save a PNG grid: one row per class (seed shared inside each pair, so the two rows of a pair
    show the same draw played forwards and backwards), every ``every``-th frame per column."""
    from PIL import Image, ImageDraw

    rows = []
    for label in range(len(CLASS_NAMES)):
        video = render_video(sample_video(np.random.SeedSequence([seed, label // 2]), label, frames, size, size))
        rows.append(np.concatenate(list(video[::every]), axis=1))
    grid = np.concatenate(rows, axis=0)
    scale, label_w = 2, 190
    img = Image.fromarray(grid).resize((grid.shape[1] * scale, grid.shape[0] * scale), Image.NEAREST)
    canvas = Image.new("RGB", (img.width + label_w, img.height), "white")
    canvas.paste(img, (label_w, 0))
    draw = ImageDraw.Draw(canvas)
    for label, name in enumerate(CLASS_NAMES):
        draw.text((8, label * size * scale + size * scale // 2 - 6), f"{label}: {name}", fill="black")
    canvas.save(path)
