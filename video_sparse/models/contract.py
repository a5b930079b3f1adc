"""What every video model of the registry gives the engine, named in one place."""
from __future__ import annotations

import torch.nn as nn


class VideoModel(nn.Module):
    """The base of every video model family: what training, evaluation, features, export and weight
    loading use, with the defaults a family overrides where it has something to say.

    - call: clips ``(N, 3, T, H, W)`` float -> logits ``(N, num_classes)``, or ``(main, dual)`` for
      a model with the frame-skipping head (evaluation averages both heads' softmaxes);
    - ``classifiers()``: ``{head: nn.Linear}``, each head's final linear layer, in the order the
      call returns the heads; their inputs are the features of ``eval.py features=true``. Default:
      ``head.fc`` (and ``head_dual.fc`` when ``dual``);
    - ``num_classes``: the classes of each head (the main classifier's outputs);
    - ``min_frames``, ``frames_multiple``, ``fixed_frames``: the clip lengths it takes (at least
      ``min_frames``, multiples of ``frames_multiple``, or exactly ``fixed_frames`` when set):
      export's dynamic frame axis;
    - ``num_lr_layers`` and ``layer_id(parameter name)``: each parameter's depth in
      ``[0, num_lr_layers)`` for layer-wise lr decay (``trainer.layer_decay``); None: no depth scale.
    Weight loading (``load_pretrained``) calls ``image_state_to_video`` (a per-frame transformer
    taking an image checkpoint of its backbone) or ``zoo_state_to_model`` (a pytorchvideo zoo
    checkpoint) where a family defines them.
    """

    min_frames: int = 1
    frames_multiple: int = 1
    fixed_frames: int | None = None
    num_lr_layers: int | None = None

    def layer_id(self, param_name: str) -> int:
        raise NotImplementedError(f"{type(self).__name__} has no depth scale for layer-wise lr decay")

    def classifiers(self) -> dict[str, nn.Linear]:
        heads = {"main": self.head, "dual": self.head_dual} if getattr(self, "dual", False) else {"main": self.head}
        return {name: head.fc for name, head in heads.items()}

    @property
    def num_classes(self) -> int:
        return next(iter(self.classifiers().values())).out_features
