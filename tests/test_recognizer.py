"""video_sparse.Recognizer: the probabilities of eval.py predict= and of a run's final evaluation,
from files or from decoded frames; features and timelines as eval.py writes them."""
import csv
import json

import numpy as np
import pytest
import torch

from helpers import compose
from helpers import write_video
from video_sparse import Recognizer
from video_sparse.data.decode import read_frames


def _csv_topk(path):
    """``{video: [(class, prob), ...]}`` of a predictions.csv."""
    out = {}
    for row in csv.DictReader(open(path)):
        k = sum(1 for key in row if key.endswith("_prob"))
        out[row["path"]] = [(row[f"top{i}_name"], float(row[f"top{i}_prob"])) for i in range(1, k + 1)]
    return out


def _assert_same_topk(ours, theirs):
    assert [name for name, _ in ours] == [name for name, _ in theirs]
    np.testing.assert_allclose([p for _, p in ours], [p for _, p in theirs], atol=6e-7, rtol=0)


def _eval_py(trained_run, tmp_path, paths, *overrides):
    """What ``eval.py checkpoint=<the run's best.pt> predict=[paths] <overrides>`` writes: its run directory."""
    from video_sparse.engine.evaluator import evaluate_checkpoint

    cfg = compose("eval", [f"checkpoint={trained_run}/checkpoints/best.pt", f"predict=[{','.join(map(str, paths))}]",
                           *overrides, "logger.mode=disabled", "trainer.device=cpu"])
    (tmp_path / "run").mkdir()
    evaluate_checkpoint(cfg, tmp_path / "run")
    return tmp_path / "run"


@pytest.fixture(scope="module")
def recognizer(trained_run):
    return Recognizer.from_checkpoint(trained_run / "checkpoints" / "best.pt", device="cpu", batch_size=3)


def test_recognizer_gives_the_final_evaluation_of_the_run(trained_run, recognizer):
    final = _csv_topk(trained_run / "predictions.csv")
    paths = list(final)
    got = recognizer.predict(paths, topk=5)
    for path, ours in zip(paths, got):
        _assert_same_topk(ours, final[path])
    labels = [recognizer.class_names.index(row["label_name"]) for row in csv.DictReader(open(trained_run / "predictions.csv"))]
    top1 = (recognizer.probabilities(paths).argmax(1) == torch.tensor(labels)).double().mean().item()
    assert top1 == pytest.approx(json.loads((trained_run / "metrics.json").read_text())["top1"])


def test_recognizer_gives_what_eval_predict_writes(trained_run, recognizer, tmp_path):
    paths = list(_csv_topk(trained_run / "predictions.csv"))[:4]
    written = _csv_topk(_eval_py(trained_run, tmp_path, paths, "predict.topk=3") / "predictions.csv")
    for path in paths:
        _assert_same_topk(recognizer.predict(path, topk=3), written[path])


def test_decoded_frames_give_the_probabilities_of_their_file(recognizer, trained_run):
    paths = list(_csv_topk(trained_run / "predictions.csv"))[:3]
    frames = [read_frames(p, lambda n: np.arange(n)) for p in paths]  # every frame, as stored (32 px)
    torch.testing.assert_close(recognizer.probabilities(frames), recognizer.probabilities(paths), rtol=0, atol=1e-6)
    torch.testing.assert_close(recognizer.probabilities(torch.from_numpy(frames[0])),
                               recognizer.probabilities(paths[0]), rtol=0, atol=1e-6)


def test_features_are_the_rows_eval_features_writes(recognizer, trained_run, tmp_path):
    paths = list(_csv_topk(trained_run / "predictions.csv"))[:3]
    written = np.load(_eval_py(trained_run, tmp_path, paths, "features=true") / "features.npy")
    np.testing.assert_allclose(recognizer.features(paths), written, rtol=1e-6, atol=1e-6)


def test_timeline_is_eval_timeline(recognizer, trained_run, tmp_path):
    long = write_video(tmp_path / "long.mp4", num_frames=60, height=32, width=32, fps=10)
    windows, probs = recognizer.timeline(long, window=2.0, stride=1.0, csv_path=tmp_path / "mine.csv")
    assert [w.start_s for w in windows] == [0.0, 1.0, 2.0, 3.0, 4.0] and probs.shape == (5, len(recognizer.class_names))
    run = _eval_py(trained_run, tmp_path, [long], "predict.window=2", "predict.stride=1")
    assert (tmp_path / "mine.csv").read_text() == (run / "long.timeline.csv").read_text()


def test_bad_inputs_are_one_clear_error(recognizer, tmp_path):
    from video_sparse.engine.evaluate import StrictEvaluationError

    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 100)
    with pytest.raises(StrictEvaluationError, match="broken.mp4"):
        recognizer.predict(str(broken))
    with pytest.raises(ValueError, match=r"video 0: frames must be uint8 RGB \(T, H, W, 3\)"):
        recognizer.predict(np.zeros((4, 32, 32, 3), np.float32))
    with pytest.raises(TypeError, match="not a mix"):
        recognizer.predict([str(broken), np.zeros((4, 32, 32, 3), np.uint8)])


def test_readme_recognizer_example_runs_as_written(trained_run, tmp_path, monkeypatch):
    """README's first Python block, with the run's checkpoint for its placeholder and videos of the
    motion set under the file names it uses."""
    import re
    import shutil
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = re.findall(r"```python\n(.*?)```", readme, flags=re.S)[0]
    assert "Recognizer.from_checkpoint" in block
    video = next(iter(_csv_topk(trained_run / "predictions.csv")))
    for name in ("clip.mp4", "a.mp4", "b.mp4"):
        shutil.copy(video, tmp_path / name)
    write_video(tmp_path / "long.mp4", num_frames=60, height=32, width=32, fps=10)
    monkeypatch.chdir(tmp_path)
    scope = {"frames": read_frames(video, lambda n: np.arange(n))}
    exec(block.replace("outputs/<date>/<time>/checkpoints/best.pt", str(trained_run / "checkpoints/best.pt")), scope)
    assert scope["probs"].shape[0] == len(scope["windows"]) > 0


@pytest.mark.slow  # 10 s: an ONNX export; export parity is tested by default in test_export.py
def test_an_exported_model_recognises_like_its_checkpoint(trained_run, recognizer, tmp_path):
    """Recognizer.from_checkpoint of the run's .onnx export: its class names, clip recipe and, per
    video, the checkpoint's probabilities (onnxruntime's float error)."""
    from video_sparse.apps.export import export_command

    export_command(compose("export", [f"checkpoint={trained_run}/checkpoints/best.pt"]), tmp_path)
    exported = Recognizer.from_checkpoint(tmp_path / "sifa_small.onnx", device="cpu", batch_size=3)
    assert exported.class_names == recognizer.class_names and exported.weights == "model (onnx)"
    paths = list(_csv_topk(trained_run / "predictions.csv"))[:4]
    torch.testing.assert_close(exported.probabilities(paths), recognizer.probabilities(paths), rtol=0, atol=1e-4)


def test_timeline_of_decoded_frames_is_the_timeline_of_their_file(recognizer, tmp_path):
    long = write_video(tmp_path / "long.mp4", num_frames=60, height=32, width=32, fps=10)
    frames = read_frames(long, lambda n: np.arange(n))
    windows, probs = recognizer.timeline(long, window=2.0, stride=1.0)
    from_frames, probs_frames = recognizer.timeline(torch.from_numpy(frames), window=2.0, stride=1.0, fps=10)
    assert from_frames == windows  # a constant frame rate: presentation times are i / fps
    np.testing.assert_allclose(probs_frames, probs, rtol=0, atol=1e-6)
    with pytest.raises(TypeError, match="fps="):
        recognizer.timeline(frames, window=2.0)


def test_eval_predict_leaves_an_unreadable_videos_prediction_empty(trained_run, tmp_path):
    good = next(iter(_csv_topk(trained_run / "predictions.csv")))
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 100)
    rows = list(csv.DictReader(open(_eval_py(trained_run, tmp_path, [good, broken]) / "predictions.csv")))
    assert [r["path"] for r in rows] == [good, str(broken)]
    assert rows[0]["pred_name"] and float(rows[0]["top1_prob"]) > 0
    assert {k: v for k, v in rows[1].items() if k not in ("path", "label")} == dict.fromkeys(
        [k for k in rows[1] if k not in ("path", "label")], "")
