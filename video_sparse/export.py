"""``python -m video_sparse.export checkpoint=... [format=onnx|pt2]`` (the app:
:mod:`video_sparse.apps.export`), and :func:`export_model` for Python (:mod:`video_sparse.engine.export`)."""


def __getattr__(name: str):
    if name in ("export_model", "load_exported", "ExportError"):  # import torch only when asked
        from .engine import export as engine_export
        return getattr(engine_export, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":  # the documented command name; the app lives with the others
    import runpy

    runpy.run_module("video_sparse.apps.export", run_name="__main__", alter_sys=True)
