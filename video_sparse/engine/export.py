"""Export a video model to ONNX or to a ``torch.export`` program, and check what was written.

Both go through ``torch.export`` (the ONNX file through ``torch.onnx.export(dynamo=True)``) with
the batch and frame axes dynamic, so one file serves any batch size and clip length (the spatial
size is fixed: position biases and windows are built for it). Every operator here is plain
PyTorch; the deformable samplers become ONNX ``GridSample`` and the custom-backward operators
export their forward. An export is checked right after it is written: the exported model runs on
a random clip of another batch size and clip length than the example, and its outputs must match
the PyTorch model's.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import re
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import torch

from ..errors import UserError, WriteError, check_writable_dir, place_error, write_error
from ..ops.onnx_forms import onnx_forms

FORMATS = ("onnx", "pt2")
OPSET = 18  # GridSample with 4-D inputs is opset 16; 18 is what the dynamo exporter writes best
INPUT_NAME = "clips"
MAX_FRAMES = 1024
# What an export may store about itself (JSON strings): read back by eval.py.
METADATA_KEYS = ("model", "class_names", "data", "weights", "frames", "size", "source")
STORED_KEYS = (*METADATA_KEYS, "clip_lengths")  # clip_lengths: written by export_model itself


class ExportError(UserError, RuntimeError):
    """A model that cannot be exported, or an export whose outputs disagree with PyTorch."""


class UntrustedProgramError(UserError, RuntimeError):
    """A ``.pt2`` program given without the trust its loading needs (it can run code)."""


@dataclass(frozen=True)
class ClipLengths:
    """The clip lengths an exported model takes: ``low`` to ``high`` frames, multiples of ``multiple``."""

    low: int
    high: int
    multiple: int = 1

    def takes(self, frames: int) -> bool:
        return self.low <= frames <= self.high and frames % self.multiple == 0

    def __str__(self) -> str:
        if self.low == self.high:
            return f"T = {self.low}"
        return f"T = {self.low}..{self.high}" + (f", multiples of {self.multiple}" if self.multiple > 1 else "")


@dataclass
class ExportCheck:
    """What the check after an export measured: the largest relative error of each output
    (``max |exported - torch| / max |torch|``) on clips of shape ``shape``."""

    shape: tuple[int, ...]
    errors: list[float]
    outputs: list[str] = field(default_factory=list)
    lengths: ClipLengths | None = None  # the clip lengths the file takes

    def summary(self) -> str:
        errs = ", ".join(f"{name} {err:.1e}" for name, err in zip(self.outputs, self.errors))
        return f"checked on clips {tuple(self.shape)} (batches of 3 and 1): max relative error {errs}"


def output_names(program: torch.export.ExportedProgram) -> list[str]:
    """``logits``, and ``logits_dual`` for SIFA-Net's dual frame-skipping head."""
    count = len(program.graph_signature.user_outputs)
    return ["logits", *(f"logits_{i}" if i > 1 else "logits_dual" for i in range(1, count))]


def _failure(model_name: str, fmt: str, error: Exception) -> ExportError:
    """One line: where in the model's code the export stopped, the operator there, and why."""
    chain, e = [], error
    while e is not None and len(chain) < 8:
        chain.append(e)
        e = e.__cause__ or e.__context__
    text = "\n".join(str(e) for e in chain)
    # torch.export names the model's line that raised ("The following call raised this error: File ...")
    calls = re.findall(r'raised this error:\s*File "([^"]+)", line (\d+), in \w+\s*\n\s*(.+)', text)
    if calls:
        file, line, code = calls[-1]
    else:  # else the innermost frame outside the libraries
        frames = [f for e in chain for f in traceback.extract_tb(e.__traceback__)
                  if "site-packages" not in f.filename and "/engine/export.py" not in f.filename]
        file, line, code = (frames[-1].filename, frames[-1].lineno, frames[-1].line) if frames else ("", 0, "")
    where = f" at {Path(file).name}:{line} ({code.strip()})" if file else ""
    summary = re.search(r"Exception summary\s*\n+\s*(.+)", text)
    reason = summary.group(1) if summary else f"{type(chain[-1]).__name__}: {chain[-1]}"
    reason = re.sub(r"<class '(?:\w+\.)*(\w+)'>", r"\1", " ".join(reason.split()))
    return ExportError(f"model={model_name} cannot be exported to {fmt}{where}: {reason[:300]}")


def _frames_axis(low: int, multiple: int) -> torch.export.Dim:
    if multiple == 1:
        return torch.export.Dim("frames", min=low, max=MAX_FRAMES)
    return multiple * torch.export.Dim(f"frames_over_{multiple}", min=low // multiple, max=MAX_FRAMES // multiple)


def trace(model: torch.nn.Module, example: torch.Tensor) -> tuple[torch.export.ExportedProgram, ClipLengths]:
    """``torch.export`` of ``model`` with a dynamic batch axis and the widest frame axis it allows.

    The frame axis starts at the model's ``min_frames`` (at least 2: torch.export specialises a
    dimension that may be 1), in multiples of its ``frames_multiple`` (SlowFast's alpha); a model
    with ``fixed_frames`` (MViT's position embeddings) takes that length only. Where the graph
    changes for short clips (a map that becomes 1 frame long: SIFA-Net's dual branch pairs T // 2
    frames) the export refuses the range; the shortest lengths are dropped until it holds. When no
    range down from the example's length holds (the example itself is such a short clip), the
    file takes the example's length only."""
    batch = torch.export.Dim("batch", min=1, max=65536)
    frames = int(example.shape[2])
    fixed = getattr(model, "fixed_frames", None)
    multiple = int(getattr(model, "frames_multiple", 1))
    low = -(-max(int(getattr(model, "min_frames", 1)), 2) // multiple) * multiple
    while fixed is None and low <= frames:
        try:
            axes = {0: batch, 2: _frames_axis(low, multiple)}
            return torch.export.export(model, (example,), dynamic_shapes={"x": axes}), ClipLengths(
                low, MAX_FRAMES, multiple)
        except Exception as e:  # torch._dynamo.exc.UserError: the range violates a guard of the graph
            if "Constraints violated" not in str(e):
                raise
            if "specialized it to be a constant" in str(e):
                break
            suggested = re.search(r"Dim\('frames[^']*', min=(\d+)", str(e))
            low = max(low + multiple, int(suggested.group(1)) * multiple if suggested else 0)
    fixed = frames if fixed is None else int(fixed)
    return torch.export.export(model, (example,), dynamic_shapes={"x": {0: batch}}), ClipLengths(fixed, fixed)


def export_model(model: torch.nn.Module, path: str | Path, fmt: str, frames: int, size: int, *,
                 model_name: str = "model", metadata: dict | None = None, tolerance: float = 1e-4,
                 opset: int = OPSET) -> ExportCheck:
    """Write ``model`` (in eval mode, fp32, on the CPU) to ``path`` as ``fmt`` (``onnx`` | ``pt2``)
    for clips ``(N, 3, T, size, size)`` with any N and the clip lengths :func:`trace` finds, then
    check it (:func:`check_export`).

    ``metadata`` (:data:`METADATA_KEYS`, strings): stored in the ONNX file's ``metadata_props`` or
    in the ``.pt2`` archive's extra files with the clip lengths (``clip_lengths``), for ``eval.py``
    to read back (:class:`ExportedModel`). Raises :class:`ExportError` naming the operator when the
    model cannot be exported, or when the check finds a relative error above ``tolerance``.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    unknown = set(metadata or {}) - set(METADATA_KEYS)
    if unknown:
        raise ValueError(f"metadata keys {sorted(unknown)}: an export stores {', '.join(METADATA_KEYS)}")
    path = Path(path)
    if path.is_dir():
        raise WriteError(f"cannot write the export to output={path}: it is a directory. Fix: output={path / 'model'}."
                         f"{fmt}")
    check_writable_dir(path.parent, f"the folder of output={path}", "output=<a path in a writable directory>")
    # ^ before minutes of tracing
    model = model.float().eval().cpu()
    example = torch.randn(2, 3, frames, size, size, generator=torch.Generator().manual_seed(0))
    tmp = path.with_name(path.name + ".tmp")
    try:
        # ONNX files get the operator forms onnxruntime runs fastest (video_sparse.ops.onnx_forms)
        with torch.no_grad(), _quiet(EXPORTER_LOGGERS), onnx_forms() if fmt == "onnx" else contextlib.nullcontext():
            program, lengths = trace(model, example)
            names = output_names(program)
            stored = {**(metadata or {}), "clip_lengths": json.dumps(dataclasses.asdict(lengths))}
            if fmt == "onnx":
                _write_onnx(program, example, tmp, names, stored, opset)
            else:
                torch.export.save(program, tmp, extra_files=stored)
    except Exception as e:  # noqa: BLE001 - the exporters raise anything; one line names the operator
        tmp.unlink(missing_ok=True)
        if disk := place_error(e):  # the file, not the model
            raise write_error(disk, f"the export {path}", "free space there, or output=<a writable path>") from e
        raise _failure(model_name, fmt, e) from e
    tmp.replace(path)
    check = check_export(model, path, frames, size, lengths, names)
    if not max(check.errors) <= tolerance:
        raise ExportError(f"{path}: the exported model disagrees with PyTorch ({check.summary()}; tolerance "
                          f"{tolerance:g}). Fix: report it with the model name; the file is kept for inspection")
    return check


# The exporters log every optimisation pass at INFO (dozens of lines under Hydra's INFO root logger).
EXPORTER_LOGGERS = ("onnx_ir", "onnxscript", "torch.onnx", "torch.export", "torch._export")


@contextlib.contextmanager
def _quiet(names: tuple[str, ...]) -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(max(lg.getEffectiveLevel(), logging.WARNING))
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _write_onnx(program, example, path: Path, names: list[str], metadata: dict, opset: int) -> None:
    import onnx

    onnx_program = torch.onnx.export(program, (example,), dynamo=True, opset_version=opset, input_names=[INPUT_NAME],
                                     output_names=names, verbose=False)
    proto = onnx_program.model_proto
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, str(value)
    onnx.save_model(proto, str(path))


def _as_tuple(out) -> tuple[torch.Tensor, ...]:
    return (out,) if isinstance(out, torch.Tensor) else tuple(out)


def check_export(model: torch.nn.Module, path: str | Path, frames: int, size: int, lengths: ClipLengths,
                 names: list[str] | None = None) -> ExportCheck:
    """Run the exported file and ``model`` on clips of another batch size and (where ``lengths``
    allows) another clip length than the export's example; the relative error per output."""
    other = frames + lengths.multiple * (1 if lengths.multiple > 1 else 3)
    x = torch.randn(4, 3, other if lengths.takes(other) else frames, size, size,
                    generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = _as_tuple(model(x))
    try:
        exported = load_exported(path, trust_pt2=True)  # the file this process just wrote
        # a batch of 3 and a single clip: exporters may assume a batch axis is not 1
        got = [torch.cat(parts) for parts in zip(*[_as_tuple(exported(part)) for part in (x[:3], x[3:])])]
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own types
        raise ExportError(f"{path}: the exported model cannot run clips {tuple(x.shape)} (another batch size and "
                          f"clip length than the export's example): {' '.join(str(e).split())[:300]}. The exporter "
                          "fixed a dynamic axis; the file is kept for inspection") from e
    errors = [float((g - e).abs().max() / e.abs().max().clamp_min(1e-12)) for g, e in zip(got, expected)]
    return ExportCheck(tuple(x.shape), errors, names or [f"output {i}" for i in range(len(errors))], lengths)


class ExportedModel(torch.nn.Module):
    """An exported file behind the model contract: ``(N, 3, T, H, W)`` float clips in, logits (a
    tuple for several heads) out. ``.onnx`` runs in onnxruntime on the CPU (the
    ``CUDAExecutionProvider`` when onnxruntime-gpu is installed and ``device`` is CUDA); ``.pt2``
    is the ``torch.export`` program. ``metadata``: what :func:`export_model` stored.

    ``torch.export.load`` unpickles parts of a ``.pt2`` archive, so a crafted file runs code when
    loaded: a ``.pt2`` is refused unless ``trusted`` (a file you exported, or whose source you trust).
    ``.onnx`` files are protobuf, loaded without running code."""

    def __init__(self, path: str | Path, device: str = "cpu", trusted: bool = False):
        super().__init__()
        path = Path(path)
        self.format = path.suffix.lstrip(".")
        if self.format == "pt2" and not trusted:
            raise UntrustedProgramError(
                f"{path}: loading a torch.export program (.pt2) unpickles parts of it, which runs any code a crafted "
                "file holds: refused. Fix: trust_pt2=true (eval.py; trust_pt2=True in Python) for a file you "
                "exported or whose source you trust, or serve the .onnx export, which loads without running code")
        if self.format == "onnx":
            import onnxruntime

            providers = ["CPUExecutionProvider"]
            if str(device).startswith("cuda") and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
                providers.insert(0, "CUDAExecutionProvider")
            with _readable_export(path):
                session = onnxruntime.InferenceSession(str(path), providers=providers)
            self.metadata = dict(session.get_modelmeta().custom_metadata_map)
            name = session.get_inputs()[0].name

            def run(x):
                return tuple(torch.from_numpy(o) for o in session.run(None, {name: x.float().cpu().numpy()}))
        elif self.format == "pt2":
            extra = dict.fromkeys(STORED_KEYS, "")
            with _readable_export(path):
                program = torch.export.load(str(path), extra_files=extra)
            self.metadata = {k: v for k, v in extra.items() if v}
            # Not a submodule: an exported module refuses .train()/.eval() (it was exported in eval mode).
            graph, single_as_pair = program.module(), []

            def run(x):
                if x.shape[0] > 1 or not single_as_pair:
                    try:
                        return graph(x.float())
                    except AssertionError as e:
                        if x.shape[0] > 1 or "Guard failed" not in str(e):
                            raise
                        single_as_pair.append(True)
                # torch.export may keep a runtime assertion that the batch is not 1 (an axis that
                # merges batch and frames was traced as different from the frames alone): then a
                # single clip runs as a batch of two copies.
                return tuple(o[:1] for o in _as_tuple(graph(x.float().expand(2, *x.shape[1:]))))
        else:
            raise ValueError(f"{path}: an exported model is a .onnx or .pt2 file")
        self._run = run
        self.num_classes = len(json.loads(self.metadata["class_names"])) if "class_names" in self.metadata else 0
        lengths = json.loads(self.metadata.get("clip_lengths", "null"))
        self.lengths = ClipLengths(**lengths) if lengths else None

    def forward(self, x: torch.Tensor):
        if x.ndim != 5 or x.shape[1] != 3:
            raise ValueError(f"expected a clip batch (N, 3, T, H, W), got shape {tuple(x.shape)}")
        if self.lengths is not None and not self.lengths.takes(x.shape[2]):
            raise ValueError(f"this exported model takes clips of {self.lengths}, got T = {x.shape[2]}. "
                             f"Fix: data.frames={self.lengths.low}, or export again with frames=<your T>")
        with torch.no_grad():
            out = tuple(o.to(x.device) for o in _as_tuple(self._run(x)))
        return out[0] if len(out) == 1 else out


@contextlib.contextmanager
def _readable_export(path: Path) -> Iterator[None]:
    """A damaged or truncated export file (the runtimes raise their own types) in one line."""
    if not path.is_file():
        raise ExportError(f"{path}: no such file. Fix: checkpoint=<an existing .pt, .onnx or .pt2 file>")
    torch_export_log = logging.getLogger("torch.export")  # logs the damage once more before raising
    level = torch_export_log.level
    torch_export_log.setLevel(logging.CRITICAL)
    try:
        yield
    except Exception as e:  # noqa: BLE001 - onnxruntime's InvalidProtobuf, zipfile's BadZipFile, torch's own
        reason = (str(e).strip().splitlines() or [type(e).__name__])[-1][:160]
        raise ExportError(f"{path}: not a readable .{path.suffix.lstrip('.')} export, truncated or damaged "
                          f"({type(e).__name__}: {reason}). Fix: export it again (python -m video_sparse.export "
                          "checkpoint=<the training checkpoint>)") from e
    finally:
        torch_export_log.setLevel(level)


def load_exported(path: str | Path, trust_pt2: bool = False) -> ExportedModel:
    """The exported model of a ``.onnx`` or ``.pt2`` file, run on the CPU (a ``.pt2`` only with
    ``trust_pt2``: see :class:`ExportedModel`)."""
    return ExportedModel(path, trusted=trust_pt2)


def metadata_json(**values) -> dict[str, str]:
    """Metadata values as JSON strings (the ONNX format stores strings only)."""
    return {k: json.dumps(v) for k, v in values.items()}
