"""Export to ONNX and torch.export (video_sparse/engine/export.py, python -m video_sparse.export), and
exported models in eval.py (runtime=onnxruntime): the exported logits equal PyTorch's at other batch
sizes and clip lengths, and an evaluation with the exported file equals the checkpoint's."""
import json
import subprocess
import sys

import pytest
import torch

from helpers import FAMILIES, ROOT, compose
from video_sparse import build_model
from video_sparse.engine.export import ExportError, UntrustedProgramError, export_model, load_exported

pytest.importorskip("onnxruntime")

# One small variant of every registered family: (name, frames, size) of the example clip.
def _outputs(model, x):
    with torch.no_grad():
        out = model(x)
    return (out,) if isinstance(out, torch.Tensor) else tuple(out)


def _assert_close(exported, reference, tol=1e-4):
    assert len(exported) == len(reference)
    for got, expected in zip(exported, reference):
        assert got.shape == expected.shape
        err = float((got - expected).abs().max() / expected.abs().max())
        assert err <= tol, f"relative error {err:.2e}"


def _export_and_compare(name, frames, size, fmt, tmp_path):
    """Export with random weights (BN statistics made non-trivial), then compare at two clip lengths."""
    torch.manual_seed(0)
    model = build_model(name, num_classes=7)
    with torch.no_grad():  # running statistics that are not the identity, so that BN matters
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    model.eval()
    path = tmp_path / f"{name}.{fmt}"
    check = export_model(model, path, fmt, frames, size, model_name=name, metadata={"model": json.dumps(name)})
    assert max(check.errors) <= 1e-4 and check.shape[0] == 4
    exported = load_exported(path, trust_pt2=True)
    assert exported.metadata["model"] == json.dumps(name)
    lengths = {frames, check.shape[2]}
    assert len(lengths) == 2 or getattr(model, "fixed_frames", None) == frames  # MViT takes one clip length
    for T in sorted(lengths):
        x = torch.randn(2, 3, T, size, size)
        _assert_close(_outputs(exported, x), _outputs(model, x))
    return check


# Slow: the default suite exports sifa_small to both formats in the app tests below (checked there
# at another batch size and clip length, and evaluated).
@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "pt2"])
def test_sifa_net_exports_for_any_batch_and_clip_length(tmp_path, fmt):
    """SIFA's deformable sampler (row gathers in the export) and custom-backward operator, both heads."""
    check = _export_and_compare("sifa_small", 4, 32, fmt, tmp_path)
    assert check.outputs == ["logits", "logits_dual"] and check.shape == (4, 3, 7, 32, 32)


@pytest.mark.slow
@pytest.mark.parametrize("name, frames, size", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_every_model_family_exports_to_onnx(tmp_path, name, frames, size):
    """Every registered family, run in onnxruntime at two clip lengths: logits within 1e-4. SIFA's
    taps and BRA's routed logits export without the ops onnxruntime runs slowly (GridSample,
    ScatterElements)."""
    _export_and_compare(name, frames, size, "onnx", tmp_path)
    if name in ("sifa_small", "sifa_biformer_nano"):
        import onnx
        ops = {node.op_type for node in onnx.load(next(tmp_path.glob("*.onnx"))).graph.node}
        assert not ops & {"GridSample", "ScatterElements", "ScatterND"}, ops


def test_every_family_is_in_the_export_test():
    """A new model family gets an export test: each registered video model's spec type (or
    pytorchvideo architecture) is covered by FAMILIES."""
    from video_sparse.models.registry import variants

    def family(name):
        spec = variants()[name].spec
        return type(spec).__name__, getattr(spec, "arch", None)

    covered = {family(name) for name, _, _ in FAMILIES}
    video = [n for n in variants() if not n.startswith(("biformer_", "dilateformer_", "cswin_", "slide_swin_",
                                                        "dat_", "dpt_"))]  # image backbones: not video models
    assert {family(n) for n in video} <= covered, sorted({family(n) for n in video} - covered)


class DataDependent(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(3, 4)

    def forward(self, x):
        if x.mean() > 0:  # a branch on the values: no graph holds it
            x = x * 2
        return self.fc(x.mean((2, 3, 4)))


@pytest.mark.parametrize("fmt", ["onnx", "pt2"])
def test_a_model_that_cannot_be_exported_gets_one_line_naming_the_operator(tmp_path, fmt):
    with pytest.raises(ExportError) as info:
        export_model(DataDependent(), tmp_path / f"bad.{fmt}", fmt, 4, 16, model_name="data_dependent")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"model=data_dependent cannot be exported to {fmt} at test_export.py:")
    assert "(if x.mean() > 0:" in message and "data-dependent" in message
    assert not (tmp_path / f"bad.{fmt}").exists() and not list(tmp_path.glob("*.tmp"))


def test_onnxruntime_evaluation_equals_pytorch(trained_run, tmp_path):
    """export, then eval.py with the .onnx (runtime=onnxruntime) and with the checkpoint: the
    same top-1 and, per video, the same probabilities; predict works the same way."""
    from video_sparse.engine.evaluator import evaluate_checkpoint
    from video_sparse.apps.export import export_command

    ckpt = trained_run / "checkpoints" / "best.pt"
    result = export_command(compose("export", [f"checkpoint={ckpt}"]), tmp_path / "export")
    onnx_file = tmp_path / "export" / "sifa_small.onnx"
    assert result["output"] == str(onnx_file) and max(result["errors"]) <= 1e-4
    import onnx
    ops = {node.op_type for node in onnx.load(onnx_file).graph.node}
    assert "Gather" in ops and "GridSample" not in ops  # SIFA's taps as row gathers: faster in onnxruntime
    common = ["logger.mode=disabled", "trainer.device=cpu", "trainer.num_workers=0", "test.clips=2"]
    reports = {}
    for name, checkpoint, extra in (("torch", ckpt, []), ("onnx", onnx_file, ["runtime=onnxruntime"])):
        (tmp_path / name).mkdir()
        reports[name] = evaluate_checkpoint(compose("eval", [f"checkpoint={checkpoint}", *common, *extra]),
                                            tmp_path / name)
    assert reports["onnx"]["top1"] == reports["torch"]["top1"]
    assert reports["onnx"]["num_videos"] == reports["torch"]["num_videos"] == 10
    assert reports["onnx"]["weights"] == "model (onnx)"
    rows = {name: (tmp_path / name / "predictions.csv").read_text().splitlines() for name in reports}
    for a, b in zip(rows["torch"][1:], rows["onnx"][1:]):
        path_a, label_a, pred_a, *probs_a = a.split(",")
        path_b, label_b, pred_b, *probs_b = b.split(",")
        assert (path_a, label_a, pred_a) == (path_b, label_b, pred_b)
    # predict with the exported file prints the same classes as with the checkpoint
    video = rows["torch"][1].split(",")[0]
    printed = {}
    for name, checkpoint in (("torch", ckpt), ("onnx", onnx_file)):
        (tmp_path / f"predict_{name}").mkdir()
        evaluate_checkpoint(compose("eval", [f"checkpoint={checkpoint}", f"predict=[{video}]", *common[:3]]),
                            tmp_path / f"predict_{name}")
        printed[name] = (tmp_path / f"predict_{name}" / "predictions.csv").read_text().splitlines()[1].split(",")[:3]
    assert printed["onnx"] == printed["torch"]


def test_export_command_writes_a_pt2_program_that_eval_runs(trained_run, tmp_path):
    """The command as README shows it; the .pt2 file evaluates with eval.py like the checkpoint."""
    from video_sparse.engine.evaluator import evaluate_checkpoint

    ckpt = trained_run / "checkpoints" / "best.pt"
    out = tmp_path / "served" / "model.pt2"
    proc = subprocess.run([sys.executable, "-m", "video_sparse.export", f"checkpoint={ckpt}", "format=pt2",
                           f"output={out}", f"hydra.run.dir={tmp_path / 'run'}"], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"wrote {out}" in proc.stdout and "max relative error logits" in proc.stdout
    (tmp_path / "eval").mkdir()
    common = [f"checkpoint={out}", "logger.mode=disabled", "trainer.device=cpu", "trainer.num_workers=0"]
    with pytest.raises(UntrustedProgramError, match=r"model.pt2: loading a torch.export program .* Fix: trust_pt2=true"):
        evaluate_checkpoint(compose("eval", common), tmp_path / "eval")
    metrics = evaluate_checkpoint(compose("eval", [*common, "trust_pt2=true"]), tmp_path / "eval")
    assert metrics["num_videos"] == 10 and metrics["weights"] == "model (pt2)"


@pytest.mark.parametrize("app, overrides, message", [
    ("export", [], "nothing to export. Fix: checkpoint=outputs/<run>/checkpoints/best.pt, or model=<name>"),
    ("export", ["checkpoint=/nope/best.pt"], "checkpoint: file not found: /nope/best.pt"),
    ("export", ["model=sifa_small", "output=x.onnx", "format=pt2"],
     "does not end in .pt2 (format=pt2). Fix: output=x.pt2"),
    ("eval", ["checkpoint={ckpt}", "runtime=onnxruntime"], "runtime=onnxruntime runs an exported .onnx file"),
])
def test_export_and_runtime_mistakes_are_one_line(trained_run, app, overrides, message):
    from video_sparse.apps.checks import check_eval, check_export
    from video_sparse.options import ConfigError

    ckpt = trained_run / "checkpoints" / "best.pt"
    cfg = compose(app, [o.format(ckpt=ckpt) for o in overrides])
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        (check_export if app == "export" else check_eval)(cfg)


def test_the_python_names_readme_shows():
    """``from video_sparse.export import export_model, load_exported`` (README, Python API) without
    importing torch's exporters at ``import video_sparse.export``."""
    import video_sparse.engine.export as engine
    from video_sparse.export import ExportError as error, export_model as export, load_exported as load

    assert (export, load, error) == (engine.export_model, engine.load_exported, engine.ExportError)
