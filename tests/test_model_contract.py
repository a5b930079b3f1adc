"""Every video model of the registry against the contract the engine relies on
(``video_sparse.models.VideoModel``): heads and their classifiers, class count, clip lengths,
layer-wise lr depths; and one model per family through a forward pass with the features hook."""
import pytest
import torch

from helpers import FAMILIES
from video_sparse import build_model
from video_sparse.engine.features import pooled_inputs
from video_sparse.engine.optim import param_groups
from video_sparse.models import VideoModel
from video_sparse.models.registry import variants
from video_sparse.models.specs import BiFormerSpec, CSWinSpec, DATSpec, DilateFormerSpec, DPTSpec, PerFrameVideoSpec, SlideSwinSpec

IMAGE_SPECS = (BiFormerSpec, DilateFormerSpec, CSWinSpec, SlideSwinSpec, DATSpec, DPTSpec)
VIDEO_MODELS = sorted(n for n, v in variants().items()
                      if not isinstance(v.spec, IMAGE_SPECS) or isinstance(v.spec, PerFrameVideoSpec))


def test_the_video_models_are_the_registry_less_its_image_backbones():
    assert {"c2d_small", "sifa_small", "c2d_sifa_r50", "sifa_biformer_nano", "x3d_nano", "mvit_nano"} <= set(VIDEO_MODELS)
    assert not {"biformer_tiny", "dat_tiny"} & set(VIDEO_MODELS) and {"biformer_tiny", "dat_tiny"} <= set(variants())


@pytest.mark.parametrize("name", VIDEO_MODELS)
def test_every_video_model_keeps_the_contract(name):
    torch.manual_seed(0)
    model = build_model(name, 7)
    assert isinstance(model, VideoModel)
    heads = model.classifiers()
    assert list(heads)[0] == "main" and set(heads) <= {"main", "dual"}
    assert all(isinstance(fc, torch.nn.Linear) and fc.out_features == 7 for fc in heads.values())
    assert model.num_classes == 7
    assert model.min_frames >= 1 and model.frames_multiple >= 1
    if model.fixed_frames is not None:
        assert model.fixed_frames >= model.min_frames and model.fixed_frames % model.frames_multiple == 0
    params = [p for p in model.parameters() if p.requires_grad]
    if model.num_lr_layers is None:
        with pytest.raises(ValueError, match="Fix: trainer.layer_decay=null"):
            param_groups(model, 0.05, layer_decay=0.9)
        return
    depths = {model.layer_id(n) for n, p in model.named_parameters() if p.requires_grad}
    assert depths <= set(range(model.num_lr_layers)) and {0, model.num_lr_layers - 1} <= depths
    groups = param_groups(model, 0.05, layer_decay=0.9)
    assert sum(len(g["params"]) for g in groups) == len(params)
    assert max(g["lr_scale"] for g in groups) == 1.0  # the heads train at the full rate


@pytest.mark.parametrize("name, frames, size", FAMILIES)
def test_one_model_per_family_gives_a_logit_per_head_and_its_pooled_features(name, frames, size):
    torch.manual_seed(0)
    model = build_model(name, 7).eval()
    heads = model.classifiers()
    x = torch.randn(2, 3, frames, size, size)
    with torch.no_grad(), pooled_inputs(heads) as seen:
        out = model(x)
    outputs = (out,) if isinstance(out, torch.Tensor) else tuple(out)
    assert len(outputs) == len(heads) and all(o.shape == (2, 7) for o in outputs)
    for (head, fc), logits in zip(heads.items(), outputs):
        assert seen[head].shape == (2, fc.in_features)
        # applied at several positions or once, the classifier is linear: the logits are its map of the feature
        torch.testing.assert_close(fc(seen[head]), logits.float(), rtol=1e-4, atol=1e-4)
