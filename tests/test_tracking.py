"""Tracker: what an offline run records, read back from wandb's own log; a disabled one loads and writes nothing."""
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imsave

from video_sparse.tracking import Tracker, _run_id
from wandb_offline import (offline_run_dirs, read_offline_config, read_offline_exit_code, read_offline_history,
                           read_offline_run_id, read_offline_summary, child_processes)

ROOT = Path(__file__).resolve().parents[1]
CONFIG = {"model": {"name": "sifa_small", "depth": 4}, "trainer": {"lr": 0.001, "epochs": 3}, "seed": 7}
LOSSES = [2.5, 1.75, 1.125, 0.5, 0.25]
LRS = [0.1, 0.05, 0.025, 0.0125, 0.00625]

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc")


@pytest.fixture(autouse=True)
def wandb_home(tmp_path, monkeypatch):
    """wandb's cache, config and artifact staging folders inside the test's tmp dir, not the user's home."""
    for var in ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "home" / var.lower()))


def wandb_processes_left(timeout: float = 5.0) -> list[str]:
    """The wandb processes (wandb-core) this one started still running after up to ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while (left := [cmd for cmd in child_processes() if "wandb" in cmd]) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def log_steps(tracker: Tracker, steps: range) -> None:
    for step in steps:
        tracker.log({"loss": LOSSES[step], "lr": LRS[step]}, step=step)


def test_offline_run_records_config_history_image_and_table(tmp_path):
    image = tmp_path / "confusion.png"
    imsave(image, np.arange(12.0).reshape(3, 4))
    run_dir = tmp_path / "run"
    tracker = Tracker("offline", "video_sparse-test", run_dir, CONFIG, name="unit")
    log_steps(tracker, range(3))
    tracker.log_image("confusion_matrix", image, step=3)
    rows = [["a.mp4", "push", "push"], ["b.mp4", "pull", "push"]]
    tracker.log_table("predictions", ["video", "label", "predicted"], rows, step=3)
    tracker.summary({"final_top1": 0.5})
    tracker.finish()
    tracker.finish()  # idempotent
    assert wandb_processes_left() == []

    (wandb_run,) = offline_run_dirs(run_dir)
    assert tracker.directory == wandb_run
    assert read_offline_run_id(wandb_run) == tracker.run_id == _run_id(run_dir)
    assert read_offline_config(wandb_run) == CONFIG
    assert read_offline_exit_code(wandb_run) == 0

    *scalars, media = read_offline_history(wandb_run)
    assert [(row["_step"], row["loss"], row["lr"]) for row in scalars] == list(zip(range(3), LOSSES, LRS))
    assert media["_step"] == 3 and "loss" not in media
    assert media["confusion_matrix"]["_type"] == "image-file"
    assert media["confusion_matrix"]["path"].startswith("media/images/confusion_matrix_")
    assert (wandb_run / "files" / media["confusion_matrix"]["path"]).is_file()
    assert [path.name for path in (wandb_run / "files/media/images").iterdir()] == [
        Path(media["confusion_matrix"]["path"]).name]
    assert media["predictions"]["_type"] == "table-file" and media["predictions"]["nrows"] == 2
    table = json.loads((wandb_run / "files" / media["predictions"]["path"]).read_text())
    assert table["columns"] == ["video", "label", "predicted"]
    assert table["data"] == rows

    summary = read_offline_summary(wandb_run)
    assert (summary["final_top1"], summary["loss"], summary["_step"]) == (0.5, LOSSES[2], 3)


def test_context_manager_marks_a_failed_run_and_stops_wandb(tmp_path):
    with pytest.raises(RuntimeError, match="diverged"):
        with Tracker("offline", "video_sparse-test", tmp_path, CONFIG, run_id="explicit-id") as tracker:
            log_steps(tracker, range(2))
            raise RuntimeError("loss diverged")
    assert tracker.run is None
    assert wandb_processes_left() == []

    (wandb_run,) = offline_run_dirs(tmp_path)
    assert wandb_run.name.endswith("-explicit-id")
    assert read_offline_run_id(wandb_run) == tracker.run_id == "explicit-id"
    assert read_offline_exit_code(wandb_run) == 1
    assert [row["loss"] for row in read_offline_history(wandb_run)] == LOSSES[:2]


def test_resumed_run_keeps_its_id_and_continues_the_steps(tmp_path):
    run_dir = tmp_path / "run"
    with Tracker("offline", "video_sparse-test", run_dir, CONFIG) as first:
        log_steps(first, range(3))
    with Tracker("offline", "video_sparse-test", run_dir, CONFIG) as resumed:
        log_steps(resumed, range(3, 5))

    assert first.run_id == resumed.run_id == _run_id(run_dir) != _run_id(tmp_path / "other")
    runs = offline_run_dirs(run_dir)
    assert runs == [first.directory, resumed.directory]
    assert [read_offline_run_id(wandb_run) for wandb_run in runs] == [first.run_id] * 2
    history = [read_offline_history(wandb_run) for wandb_run in runs]
    assert [[row["_step"] for row in rows] for rows in history] == [[0, 1, 2], [3, 4]]
    assert [row["loss"] for rows in history for row in rows] == LOSSES


def test_disabled_tracker_loads_writes_and_starts_nothing(tmp_path):
    """In a fresh interpreter, so that ``wandb`` missing from ``sys.modules`` means no one imported it."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    image = tmp_path / "confusion.png"
    imsave(image, np.zeros((2, 2)))
    script = textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {str(ROOT / "tests")!r})
        from video_sparse.tracking import Tracker
        from wandb_offline import child_processes

        for tracker in (Tracker("disabled", "p", {str(run_dir)!r}, {{"seed": 7}}),
                        Tracker("offline", "p", {str(run_dir)!r}, {{"seed": 7}}, enabled=False)):
            with tracker:
                tracker.log({{"loss": 1.0}}, step=0)
                tracker.log_image("confusion_matrix", {str(image)!r}, step=0)
                tracker.log_table("predictions", ["video"], [["a.mp4"]])
                tracker.summary({{"final_top1": 0.5}})
            tracker.finish()
            assert (tracker.run, tracker.run_id, tracker.directory) == (None, None, None)
        print(json.dumps({{"wandb_modules": sorted(m for m in sys.modules if m.split(".")[0] == "wandb"),
                          "children": child_processes()}}))
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.splitlines()[-1])
    assert report == {"wandb_modules": [], "children": []}
    assert list(run_dir.iterdir()) == []
    assert not (tmp_path / "home").exists()


def test_unknown_mode_is_refused(tmp_path):
    with pytest.raises(ValueError, match="offlin"):
        Tracker("offlin", "video_sparse-test", tmp_path, CONFIG)
