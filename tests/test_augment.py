"""Training augmentations: RandAugment, RandomResizedCrop, random erasing, flip label swaps,
mixup/cutmix, their config keys, and a training run with all of them on."""
import math

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from helpers import compose
from video_sparse.apps.checks import ConfigError, check_train
from video_sparse.data.randaugment import CUTOUT_FILL, OPS, ClipRandAugment, solarize_add
from video_sparse.data.transforms import erase_box, horizontal_flip_labels, resized_crop_box
from video_sparse.engine.metrics import multi_head_loss
from video_sparse.engine.mixup import MixupCutmix, smooth_one_hot


def _clip(T=3, H=20, W=28, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (T, 3, H, W), dtype=np.uint8))


# ----------------------------------------------------------------------------- RandAugment
@pytest.mark.parametrize("name", list(OPS))
@pytest.mark.parametrize("magnitude", [0, 13, 27, 30])
def test_randaugment_op_treats_frames_alike(name, magnitude):
    """Reference: the op applied to each frame alone with the same random draws."""
    aug, clip = ClipRandAugment(1, magnitude), _clip()
    out = aug.apply(clip, name, np.random.default_rng(3))
    assert out.shape == clip.shape and out.dtype == torch.uint8
    per_frame = torch.cat([aug.apply(f[None], name, np.random.default_rng(3)) for f in clip])
    torch.testing.assert_close(out, per_frame, rtol=0, atol=0)


@pytest.mark.parametrize("name", ["rotate", "color", "contrast", "brightness", "sharpness", "shear_x", "shear_y",
                                  "translate_x", "translate_y", "solarize_add", "cutout", "posterize"])
def test_randaugment_magnitude_zero_is_identity(name):
    clip = _clip()
    torch.testing.assert_close(ClipRandAugment(1, 0).apply(clip, name, np.random.default_rng(0)), clip, rtol=0, atol=0)


def _pil_frames(clip, fn):
    return torch.stack([torch.from_numpy(np.array(fn(Image.fromarray(f.permute(1, 2, 0).numpy())))).permute(2, 0, 1)
                        for f in clip])


def test_randaugment_pixel_ops_match_pil():
    clip, rng = _clip(), np.random.default_rng(0)
    m = 27
    aug = ClipRandAugment(1, m)
    torch.testing.assert_close(aug.apply(clip, "invert", rng), _pil_frames(clip, ImageOps.invert))
    threshold = 256 - m / 30 * 256
    torch.testing.assert_close(aug.apply(clip, "solarize", rng), _pil_frames(clip, lambda im: ImageOps.solarize(
        im, math.ceil(threshold))))
    bits = 8 - int(m / 30 * 4)
    torch.testing.assert_close(aug.apply(clip, "posterize", rng), _pil_frames(clip, lambda im: ImageOps.posterize(
        im, bits)))
    added = solarize_add(clip, 99)
    expect = torch.where(clip < 128, (clip.int() + 99).clamp(max=255).to(torch.uint8), clip)
    torch.testing.assert_close(added, expect)


def test_randaugment_translate_moves_every_frame_by_the_same_pixels():
    clip = _clip(W=30)
    out = ClipRandAugment(1, 30).apply(clip, "translate_x", np.random.default_rng(0))
    shift = round(0.4464 * 30)
    moved_right = torch.equal(out[..., shift:], clip[..., :-shift])
    moved_left = torch.equal(out[..., :-shift], clip[..., shift:])
    assert moved_right != moved_left


def test_cutout_fills_one_square_in_every_frame():
    clip = _clip(H=28, W=28)
    out = ClipRandAugment(1, 30).apply(clip, "cutout", np.random.default_rng(1))
    changed = (out != clip).any(1)  # (T, H, W)
    assert changed.any() and (changed == changed[0]).all()
    fill = torch.tensor(CUTOUT_FILL, dtype=torch.uint8).view(3, 1, 1)
    ys, xs = torch.nonzero(changed[0], as_tuple=True)
    box = out[..., ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    assert (box == fill).all() and max(box.shape[-2:]) <= round(0.3571 * 28)


def test_randaugment_draws_ops_and_checks_its_arguments():
    clip, aug = _clip(), ClipRandAugment(2, 27)
    torch.testing.assert_close(aug(clip, np.random.default_rng(4)), aug(clip, np.random.default_rng(4)))
    assert any(not torch.equal(aug(clip, np.random.default_rng(s)), clip) for s in range(5))
    torch.testing.assert_close(ClipRandAugment(0, 27)(clip, np.random.default_rng(0)), clip)
    with pytest.raises(ValueError, match=r"magnitude must be in \[0, 30\]"):
        ClipRandAugment(2, 31)
    with pytest.raises(TypeError, match="uint8"):
        aug(clip.float(), np.random.default_rng(0))


# ----------------------------------------------------------------------------- crops and erasing
def test_resized_crop_box_area_ratio_and_bounds():
    rng = np.random.default_rng(0)
    for _ in range(300):
        h, w = int(rng.integers(20, 200)), int(rng.integers(20, 200))
        top, left, ch, cw = resized_crop_box(rng, h, w, (0.08, 1.0), (3 / 4, 4 / 3))
        assert 0 <= top and top + ch <= h and 0 <= left and left + cw <= w and ch > 0 and cw > 0
        assert 3 / 4 * 0.9 <= cw / ch <= 4 / 3 * 1.1 or (ch, cw) in ((h, w),)  # rounding, or the fallback
    # a box of the whole area cannot have the ratio of a 10 x 100 frame: centred fallback, ratio clamped
    assert resized_crop_box(np.random.default_rng(0), 10, 100, (0.99, 1.0), (3 / 4, 4 / 3)) == (0, 43, 10, 13)


def test_erase_box_area_and_ratio():
    rng = np.random.default_rng(0)
    for _ in range(300):
        box = erase_box(rng, 64, 48)
        assert box is not None
        top, left, h, w = box
        assert 0 <= top and top + h <= 64 and 0 <= left and left + w <= 48
        assert 0.02 * 0.8 <= h * w / (64 * 48) <= 1 / 3 * 1.2 and 0.3 * 0.8 <= h / w <= 1 / 0.3 * 1.2


# ----------------------------------------------------------------------------- flip labels
SSV2_NAMES = ["Pushing something from left to right", "Pushing something from right to left",
              "Turning the camera left while filming something", "Turning the camera right while filming something",
              "Moving something up", "Putting leftovers on something", "Showing Left and Right hands",
              "Showing Right and Left hands", "Tearing something just a little bit"]


def test_horizontal_flip_labels_pair_classes_by_name():
    assert horizontal_flip_labels(SSV2_NAMES, "swap") == [1, 0, 3, 2, 4, 5, 7, 6, 8]
    assert horizontal_flip_labels(SSV2_NAMES, "random") == list(range(len(SSV2_NAMES)))
    assert horizontal_flip_labels(SSV2_NAMES, "none") is None
    assert horizontal_flip_labels(SSV2_NAMES[:3], "swap") == [1, 0, -1]  # no partner: never mirrored
    with pytest.raises(ValueError, match="flip mode"):
        horizontal_flip_labels(SSV2_NAMES, "mirror")


# ----------------------------------------------------------------------------- mixup / cutmix
def _batch(n=6, classes=5):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 3, 4, 16, 12, generator=g), torch.tensor([0, 1, 2, 3, 4, 0])[:n]


def test_mixup_blends_each_clip_with_its_mirror_position():
    video, label = _batch()
    mixed, target = MixupCutmix(5, mixup_alpha=0.8)(video, label, np.random.default_rng(0))
    torch.testing.assert_close(target.sum(1), torch.ones(6))
    lam = target[1, 1].item()  # clip 1 (class 1) mixes with clip 4 (class 4)
    torch.testing.assert_close(mixed[1], lam * video[1] + (1 - lam) * video[4])
    assert target[1, 4].item() == pytest.approx(1 - lam) and 0 < lam < 1


def test_cutmix_pastes_the_same_box_in_every_frame_and_weights_targets_by_area():
    video, label = _batch()
    mixed, target = MixupCutmix(5, cutmix_alpha=1.0)(video, label, np.random.default_rng(2))
    from_partner = (mixed != video)  # (N, 3, T, H, W)
    mask = from_partner[1, 0, 0]
    assert mask.any()
    assert (from_partner[1] == mask).all()  # every channel and frame
    torch.testing.assert_close(mixed[1][:, :, mask], video[4][:, :, mask])
    assert target[1, 4].item() == pytest.approx(mask.float().mean().item())
    assert target[1, 1].item() == pytest.approx(1 - mask.float().mean().item())


def test_mix_targets_fold_in_label_smoothing_and_soft_loss_matches_hard():
    video, label = _batch()
    logits = torch.randn(6, 5)
    _, target = MixupCutmix(5, mixup_alpha=0.8, prob=0.0, label_smoothing=0.1)(video, label, np.random.default_rng(0))
    torch.testing.assert_close(target, smooth_one_hot(label, 5, 0.1))
    torch.testing.assert_close(multi_head_loss((logits, logits * 2), target),
                               multi_head_loss((logits, logits * 2), label, label_smoothing=0.1))


def test_mixup_is_reproducible_and_switches_between_mixup_and_cutmix():
    video, label = _batch()
    mix = MixupCutmix(5, mixup_alpha=0.8, cutmix_alpha=1.0)
    a, b = mix(video, label, np.random.default_rng(9)), mix(video, label, np.random.default_rng(9))
    torch.testing.assert_close(a, b)
    kinds = set()
    for s in range(20):
        mixed, _ = mix(video, label, np.random.default_rng(s))
        kinds.add("cutmix" if ((mixed == video).float().mean() > 0.01).item() else "mixup")
    assert kinds == {"mixup", "cutmix"}


# ----------------------------------------------------------------------------- config
@pytest.mark.parametrize("override,message", [
    ("data.flip=true", "data.flip: the motion benchmark's labels are directions"),
    ("data.randaug_m=40", "data.randaug_m must be a number >= 0 and <= 30, got 40.0. Fix: data.randaug_m=27"),
    ("data.randaug_n=-1", "data.randaug_n must be an integer >= 0"),
    ("data.scale_jitter=[16,8]", "data.scale_jitter must be [min, max] short sides with data.size (64) <= min <= max"),
    ("data.resized_crop=[0,1]", "data.resized_crop must be a list of numbers > 0 and <= 1, got [0.0,1.0]"),
    ("data.random_erase=2", "data.random_erase must be a number >= 0 and <= 1, got 2.0"),
    ("trainer.mixup=-1", "trainer.mixup must be a number >= 0"),
    ("trainer.mix_prob=1.5", "trainer.mix_prob must be a number >= 0 and <= 1, got 1.5"),
    ("trainer.label_smoothing=1", "trainer.label_smoothing must be a number >= 0 and < 1, got 1.0"),
])
def test_augmentation_config_mistakes(override, message):
    with pytest.raises(ConfigError, match="Fix:") as e:
        check_train(compose("train", [override]))
    assert message in str(e.value)


def test_training_runs_with_every_augmentation(tiny_overrides, tmp_path):
    from video_sparse.engine.trainer import train
    cfg = compose("train", tiny_overrides + [
        "model=c2d_small", "data.cache_frames=false", "data.short_side=36", "data.scale_jitter=[32,40]",
        "data.randaug_n=2", "data.random_erase=0.5", "trainer.mixup=0.8", "trainer.cutmix=1.0",
        "trainer.label_smoothing=0.1"])
    metrics = train(cfg, tmp_path / "run")
    assert metrics["num_videos"] == 10 and 0 <= metrics["top1"] <= 1
    rrc = compose("train", tiny_overrides + ["model=c2d_small", "data.resized_crop=[0.3,1.0]"])
    assert train(rrc, tmp_path / "rrc")["num_videos"] == 10
