"""Classify videos from Python with what ``eval.py`` uses: the same loading, decoding, views,
transforms and averaging, so a :class:`Recognizer` gives the probabilities ``eval.py predict=``
and a run's final evaluation give.

    >>> rec = Recognizer.from_checkpoint("outputs/.../checkpoints/best.pt")   # or run.onnx, run.pt2
    >>> rec.predict("clip.mp4", topk=3)
    [('moving left', 0.91), ('moving up', 0.05), ('moving right', 0.02)]
"""
from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch
from omegaconf import DictConfig

from .loading import LoadedModel, load_for_inference

Video = Union[str, os.PathLike, np.ndarray, torch.Tensor]  # a file, or its decoded uint8 frames (T, H, W, 3)


class Recognizer:
    """A model with its class names and clip recipe (the data config it was trained with).

    ``clips`` x ``crops`` views per video, averaged (``test.clips``, ``test.crops`` of eval.py);
    ``batch_size`` videos per forward pass; ``num_workers`` decoding processes; ``amp``: off | bf16
    | fp16. Videos are file paths, or decoded uint8 RGB frames ``(T, H, W, 3)`` (every frame of the
    video, in order; numpy or torch).
    """

    def __init__(self, loaded: LoadedModel, device: str | torch.device = "auto", *, clips: int = 1, crops: int = 1,
                 batch_size: int = 8, num_workers: int = 0, amp: str = "off"):
        from .runtime import resolve_device

        self.model, self.data_cfg, self.class_names = loaded.model, loaded.data_cfg, list(loaded.class_names)
        self.model_name, self.weights = loaded.model_name, loaded.weights
        self.device = resolve_device(str(device)) if not isinstance(device, torch.device) else device
        if isinstance(self.model, torch.nn.Module):
            self.model.to(self.device).eval()
        self.clips, self.crops, self.batch_size, self.num_workers, self.amp = clips, crops, batch_size, num_workers, amp

    @classmethod
    def from_checkpoint(cls, checkpoint: str | os.PathLike, *, device: str = "auto", weights: str = "auto",
                        model: DictConfig | None = None, data: DictConfig | None = None, trust_pt2: bool = False,
                        **kwargs) -> "Recognizer":
        """A ``train.py`` checkpoint, an export (``.onnx``; ``.pt2`` with ``trust_pt2``: loading one
        can run code), or a weights file with its ``model`` and dataset config ``data`` (e.g.
        ``pytorchvideo:<name>``); ``weights``: auto (the EMA when the run kept one) | ema | model.
        Other keywords go to :class:`Recognizer`."""
        from .runtime import resolve_device

        loaded = load_for_inference(str(checkpoint), model=model, data=data, weights=weights,
                                    device=str(resolve_device(device)), trust_pt2=trust_pt2)
        return cls(loaded, device, **kwargs)

    def probabilities(self, videos: Video | Sequence[Video]) -> torch.Tensor:
        """Class probabilities ``(N, C)`` (a view's softmax, both heads of a dual model averaged,
        then the views averaged); raises :class:`~.evaluate.StrictEvaluationError` naming every
        video that cannot be read."""
        from .evaluate import predict

        return predict(self.model, self._loader(_as_list(videos)), self.device, self.amp, progress=False,
                       strict=True)["probs"]

    def predict(self, videos: Video | Sequence[Video], topk: int = 5):
        """The ``topk`` classes of each video as ``[(class name, probability), ...]``, most probable
        first; one list for one video, a list of them for a sequence."""
        probs = self.probabilities(videos)
        values, indices = probs.topk(min(topk, probs.shape[1]), dim=1)
        out = [[(self.class_names[i], v) for v, i in zip(vals, idx)] for vals, idx in zip(values.tolist(),
                                                                                          indices.tolist())]
        return out if _is_sequence(videos) else out[0]

    def features(self, videos: Video | Sequence[Video]) -> np.ndarray:
        """float32 ``(N, V + 1, D)``: each view's pooled classifier input, then their mean (the rows of
        ``eval.py features=true``; see :mod:`.features`)."""
        from .features import feature_rows

        rows = [r for _, r in feature_rows(self.model, self._loader(_as_list(videos)), self.device, self.amp)]
        return torch.cat(rows).numpy()

    def timeline(self, video: Video, window: float, stride: float | None = None,
                 csv_path: str | os.PathLike | None = None, fps: float | None = None):
        """Windows of ``window`` seconds every ``stride`` (default: half a window) over one video, each
        scored like a video: returns ``(windows, probs (W, C))``; ``csv_path``: also write the CSV of
        ``eval.py predict.window=``. A file gives its frames' presentation times; decoded frames
        need their ``fps`` (frame i shown from i / fps seconds)."""
        from ..data import build_window_clips
        from .timeline import video_timeline

        stride = stride if stride is not None else window / 2
        clips = build_window_clips(self.data_cfg, video, window, stride, clips=self.clips, crops=self.crops, fps=fps)
        with tempfile.TemporaryDirectory() as tmp:
            out = csv_path if csv_path is not None else Path(tmp) / "timeline.csv"
            result = video_timeline(self.model, clips, self.class_names, out, batch_size=self.batch_size,
                                    device=self.device, amp=self.amp, progress=False)
        for said in (clips.damage(), clips.error and f"the timeline ends early: {clips.error}"):
            if said:
                warnings.warn(f"{clips.path}: {said}", stacklevel=2)
        return result

    def _loader(self, videos: list[Video]):
        from ..data import build_decoded_dataset, build_predict_dataset
        from .runtime import data_loader

        if all(isinstance(v, (str, os.PathLike)) for v in videos):
            dataset = build_predict_dataset(self.data_cfg, [str(v) for v in videos], clips=self.clips,
                                            crops=self.crops)
        elif not any(isinstance(v, (str, os.PathLike)) for v in videos):
            dataset = build_decoded_dataset(self.data_cfg, videos, clips=self.clips, crops=self.crops)
        else:
            raise TypeError("videos: all file paths or all decoded frames, not a mix of both")
        return data_loader(dataset, self.batch_size, self.num_workers, self.device)


def _is_sequence(videos) -> bool:
    return isinstance(videos, (list, tuple))


def _as_list(videos) -> list:
    return list(videos) if _is_sequence(videos) else [videos]
