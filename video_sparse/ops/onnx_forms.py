"""Which form of an operator a trace records. onnxruntime runs some ATen ops far slower than
PyTorch does (``GridSample``, the ``ScatterElements`` of slice writes), so an ONNX export traces
equivalent forms built from row gathers and concatenations; eager code, ``torch.compile`` and
``.pt2`` programs keep the forms PyTorch runs fastest."""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch

_onnx = False


@contextlib.contextmanager
def onnx_forms() -> Iterator[None]:
    """Within the block, ``torch.export`` traces the ONNX forms (``export_model(format="onnx")``)."""
    global _onnx
    previous, _onnx = _onnx, True
    try:
        yield
    finally:
        _onnx = previous


def tracing_for_onnx() -> bool:
    """Whether the operator being run is being traced for an ONNX file."""
    return _onnx and torch.compiler.is_exporting()
