"""Weight files are data, never code: what is downloaded or found in torch's hub cache is loaded
as tensors only, and a file that would run code is refused in one line."""
import os
from pathlib import Path

import pytest
import torch


class RunsCode:
    """Unpickling it runs a shell command (what a poisoned weights file does)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _poison_hub_cache(torch_home: Path, url: str, marker: Path) -> Path:
    cached = torch_home / "hub" / "checkpoints" / os.path.basename(url)
    cached.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model_state": {"w": torch.zeros(1)}, "extra": RunsCode(marker)}, cached)
    return cached


@pytest.mark.parametrize("source", ["pytorchvideo:slowfast_r50", "torchvision:ResNet50_Weights.IMAGENET1K_V1"])
def test_a_poisoned_hub_cache_file_runs_no_code(tmp_path, monkeypatch, source):
    import torchvision

    from video_sparse.models import build_model, load_pretrained
    from video_sparse.models.weights import WeightsError, pytorchvideo_zoo_urls

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    kind, name = source.split(":")
    url = pytorchvideo_zoo_urls()[name] if kind == "pytorchvideo" else torchvision.models.get_weight(name).url
    marker = tmp_path / "code_ran"
    cached = _poison_hub_cache(tmp_path / "torch", url, marker)
    model = build_model("slowfast_nano" if kind == "pytorchvideo" else "c2d_small", 10)
    with pytest.raises(WeightsError, match=rf"{cached}.*would run code: refused. Fix: delete that file"):
        load_pretrained(model, source)
    assert not marker.exists()


def test_a_pt2_program_is_not_opened_without_trust(tmp_path, monkeypatch):
    """torch.export.load unpickles parts of a .pt2: without trust_pt2 nothing reads the file (eval.py,
    the Recognizer, load_exported), so a crafted one runs no code; a .pt2 written by export loads with it."""
    from helpers import compose
    from video_sparse import Recognizer
    from video_sparse.engine.evaluator import evaluate_checkpoint
    from video_sparse.engine.export import UntrustedProgramError, load_exported

    marker = tmp_path / "code_ran"
    evil = tmp_path / "evil.pt2"
    torch.save({"constants": RunsCode(marker)}, evil)  # a zip holding a pickle that runs a command
    opened = []
    real_load = torch.export.load
    monkeypatch.setattr(torch.export, "load", lambda *a, **k: opened.append(a) or real_load(*a, **k))
    message = r"evil.pt2: loading a torch.export program \(.pt2\) unpickles parts of it.*Fix: trust_pt2=true"
    with pytest.raises(UntrustedProgramError, match=message):
        load_exported(evil)
    with pytest.raises(UntrustedProgramError, match=message):
        Recognizer.from_checkpoint(evil, device="cpu")
    (tmp_path / "run").mkdir()
    with pytest.raises(UntrustedProgramError, match=message):
        evaluate_checkpoint(compose("eval", [f"checkpoint={evil}", "logger.mode=disabled", "trainer.device=cpu"]),
                            tmp_path / "run")
    assert opened == [] and not marker.exists()


def test_a_weights_file_or_checkpoint_that_would_run_code_is_refused(tmp_path):
    from video_sparse.engine.checkpoint import CheckpointError, load_checkpoint
    from video_sparse.models import build_model, load_pretrained
    from video_sparse.models.weights import WeightsError

    marker = tmp_path / "code_ran"
    evil = tmp_path / "evil.pt"
    torch.save({"model": {"w": torch.zeros(1)}, "extra": RunsCode(marker)}, evil)
    with pytest.raises(WeightsError, match=r"evil.pt holds more than tensors, and loading it would run code: refused"):
        load_pretrained(build_model("c2d_small", 10), str(evil))
    with pytest.raises(CheckpointError, match=r"evil.pt: holds Python objects besides tensors"):
        load_checkpoint(evil)
    assert not marker.exists()
    noise = tmp_path / "noise.pt"
    noise.write_bytes(b"x" * 100)  # no Python object in it: not called one
    with pytest.raises(WeightsError, match=r"noise.pt is not a weights file torch can read\. Fix: re-save"):
        load_pretrained(build_model("c2d_small", 10), str(noise))


def test_a_second_live_process_in_a_run_directory_is_refused_in_one_line(tmp_path, tiny_overrides):
    """While a run holds its directory, a second train.py there stops with one line naming it, before
    writing anything; the first run's record (.hydra/) stays as it was."""
    from helpers import run_app
    from video_sparse.engine.run_lock import DirectoryLock

    run_dir = tmp_path / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "config.yaml").write_text("the live run's config\n")
    with DirectoryLock(run_dir, "hydra.run.dir"):  # this test process is the live run
        proc = run_app("train.py", [*tiny_overrides, "model=c2d_small", f"hydra.run.dir={run_dir}"], tmp_path,
                       check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: {run_dir}: another live process (pid {os.getpid()}) is writing into this directory. "
        "Fix: wait until it ends, or hydra.run.dir=<another directory>"]
    assert not (run_dir / "checkpoints").exists()
    assert (run_dir / ".hydra" / "config.yaml").read_text() == "the live run's config\n"
    assert not (run_dir / ".hydra" / "overrides.yaml").exists()


def test_a_refused_command_leaves_the_runs_record_alone(tmp_path, tiny_overrides):
    """A refused resume and a config error in an existing run directory: its .hydra/ files are the
    run's own, not the refused command's."""
    from helpers import run_app

    run_dir = tmp_path / "run"
    args = [*tiny_overrides, "model=c2d_small", f"hydra.run.dir={run_dir}"]
    run_app("train.py", args, tmp_path)
    record = {p.name: p.read_bytes() for p in (run_dir / ".hydra").iterdir()}
    for refused, message in ((["optim.lr=0.01"], "cannot continue that run with other settings"),
                             (["data.random_erase=2"], "data.random_erase must be a number")):
        proc = run_app("train.py", args + refused, tmp_path, check=False)
        assert proc.returncode == 2 and message in proc.stderr
        assert {p.name: p.read_bytes() for p in (run_dir / ".hydra").iterdir()} == record


def test_the_default_run_directory_is_made_unique(tmp_path):
    """The default hydra.run.dir of every app is ``${unique_dir:outputs/<date>/<time>}``, which
    creates the directory, or ``-2``, ``-3`` ... when a job of the same second has it."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from helpers import ROOT
    from video_sparse.apps.config import unique_dir

    assert [unique_dir(str(tmp_path / "same")) for _ in range(3)] == [str(tmp_path / n) for n in
                                                                      ("same", "same-2", "same-3")]
    for app in ("train", "eval", "export", "scan"):
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            cfg = compose(config_name=app, return_hydra_config=True)
        assert OmegaConf.to_container(cfg.hydra.run, resolve=False)["dir"].startswith("${unique_dir:outputs/"), app


@pytest.mark.slow  # 10 s; the resolver and every app's default are tested above by default
def test_two_runs_started_together_without_a_run_dir_get_one_directory_each(tmp_path, tiny_overrides):
    """Two trainings started at once without hydra.run.dir both run, each in its own directory."""
    import subprocess
    import sys

    from helpers import ROOT

    procs = [subprocess.Popen([sys.executable, str(ROOT / "train.py"), *tiny_overrides, "model=c2d_small"],
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs[1][1][-3000:]
    runs = sorted((tmp_path / "outputs").glob("*/*"))
    assert len(runs) == 2 and all((r / "checkpoints" / "last.pt").is_file() for r in runs), runs


# ---------------------------------------------------------------- one line, exit 2, for every failure
def _enospc(*args, **kwargs):
    import errno
    raise OSError(errno.ENOSPC, "No space left on device")


def test_unwritable_places_are_one_line_before_any_work(tmp_path, trained_run):
    """A run directory, a features_dir or an export output under a file (or an output that is a
    directory): one line naming the key (exit 2 from the commands), before anything is traced or
    extracted, no file left."""
    import subprocess
    import sys

    from helpers import ROOT, compose
    from video_sparse.apps.export import export_command
    from video_sparse.engine.evaluator import evaluate_checkpoint
    from video_sparse.errors import WriteError

    ckpt = trained_run / "checkpoints" / "best.pt"
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory\n")
    (tmp_path / "a_dir.onnx").mkdir()
    commands = [  # Hydra creates the run directory: the commands themselves
        ([str(ROOT / "eval.py"), f"checkpoint={ckpt}", f"hydra.run.dir={blocker}/run"],
         f"error: cannot write the run directory ({blocker}/run): Not a directory. Fix: hydra.run.dir=<a writable "
         "directory>"),
        (["-m", "video_sparse.export", f"checkpoint={ckpt}", f"output={blocker}/sub/m.onnx",
          f"hydra.run.dir={tmp_path / 'x'}"],
         f"error: cannot write into the folder of output={blocker}/sub/m.onnx: Not a directory. Fix: output=<a path "
         "in a writable directory>")]
    for args, message in commands:
        proc = subprocess.run([sys.executable, *args], cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [message], proc.stderr[-2000:]
    (tmp_path / "e").mkdir()
    with pytest.raises(WriteError, match=f"^cannot write into features_dir={blocker}: {blocker} is a file, not a "
                                         "directory. Fix: features_dir=<a writable directory>$"):
        evaluate_checkpoint(compose("eval", [f"checkpoint={ckpt}", "features=true", f"features_dir={blocker}",
                                             "trainer.device=cpu"]), tmp_path / "e")
    with pytest.raises(WriteError, match=f"^cannot write the export to output={tmp_path / 'a_dir.onnx'}: it is a "
                                         f"directory. Fix: output={tmp_path / 'a_dir.onnx' / 'model'}.onnx$"):
        export_command(compose("export", [f"checkpoint={ckpt}", f"output={tmp_path / 'a_dir.onnx'}"]), tmp_path / "y")
    assert not list(tmp_path.glob("**/*.tmp")) and not list(tmp_path.glob("**/features.*"))


def test_a_full_disk_while_exporting_names_the_file_not_the_model(tmp_path, monkeypatch):
    from video_sparse import build_model
    from video_sparse.engine.export import export_model
    from video_sparse.errors import WriteError

    monkeypatch.setattr(torch.export, "save", _enospc)
    with pytest.raises(WriteError) as e:
        export_model(build_model("c2d_small", 4), tmp_path / "m.pt2", "pt2", 4, 32, model_name="c2d_small")
    assert str(e.value) == (f"cannot write the export {tmp_path / 'm.pt2'}: No space left on device. Fix: free space "
                            "there, or output=<a writable path>")
    assert list(tmp_path.iterdir()) == []  # no temporary file left


@pytest.mark.parametrize("suffix", ["onnx", "pt2"])
def test_a_truncated_export_is_one_line(tmp_path, suffix):
    from video_sparse import build_model
    from video_sparse.engine.export import ExportError, export_model, load_exported

    good = tmp_path / f"good.{suffix}"
    export_model(build_model("c2d_small", 4), good, suffix, 4, 32, model_name="c2d_small")
    for name, data in (("cut", good.read_bytes()[: good.stat().st_size // 2]), ("noise", bytes(range(256)) * 40)):
        bad = tmp_path / f"{name}.{suffix}"
        bad.write_bytes(data)
        with pytest.raises(ExportError, match=rf"{name}\.{suffix}: not a readable \.{suffix} export, truncated or "
                                              r"damaged \(.*\)\. Fix: export it again"):
            load_exported(bad, trust_pt2=True)


def test_a_full_disk_while_saving_a_checkpoint_names_the_last_good_one(tmp_path, tiny_overrides, monkeypatch):
    from helpers import train_in_process
    from video_sparse.engine import checkpoint, trainer
    from video_sparse.errors import WriteError

    real, saves = trainer.save_checkpoint, []

    def full_at_epoch_2(state, path):
        saves.append(path)
        if state["epoch"] == 2:
            _enospc()
        real(state, path)
    monkeypatch.setattr(trainer, "save_checkpoint", full_at_epoch_2)
    with pytest.raises(WriteError) as e:
        train_in_process(tiny_overrides + ["model=c2d_small", "trainer.epochs=3"], tmp_path)
    ckpt_dir = tmp_path / "checkpoints"
    import re
    assert re.fullmatch(rf"cannot write the checkpoint {ckpt_dir}/(best|last)\.pt: No space left on device\. Fix: free "
                        rf"space in {ckpt_dir} \(the last good checkpoint is {ckpt_dir}/last\.pt: epoch 1, batch 0, "
                        r"step 5\), then run the same command to continue from it", str(e.value)), str(e.value)
    assert checkpoint.load_checkpoint(ckpt_dir / "last.pt")["epoch"] == 1


def test_a_full_disk_while_writing_features_is_one_line_not_sigbus(tmp_path, trained_run, monkeypatch):
    import os

    from helpers import compose
    from video_sparse.engine.evaluator import evaluate_checkpoint
    from video_sparse.errors import WriteError

    monkeypatch.setattr(os, "posix_fallocate", _enospc)
    cfg = compose("eval", [f"checkpoint={trained_run}/checkpoints/best.pt", "features=true",
                           f"features_dir={tmp_path / 'f'}", "logger.mode=disabled", "trainer.device=cpu"])
    (tmp_path / "run").mkdir()
    with pytest.raises(WriteError, match=r"cannot write 0\.0 MiB of features into features_dir=.*: No space left on "
                                         r"device\. Fix: free space there"):
        evaluate_checkpoint(cfg, tmp_path / "run")
    assert not list((tmp_path / "f").glob("features.part*"))


def test_data_root_on_the_motion_benchmark_is_refused_not_ignored(tmp_path, trained_run):
    from helpers import compose
    from video_sparse.apps.checks import check_train
    from video_sparse.engine.loading import load_for_inference
    from video_sparse.options import ConfigError

    message = r"data\.root: the motion benchmark is generated, into a folder video_sparse chooses"
    with pytest.raises(ConfigError, match=message):
        check_train(compose("train", [f"data.root={tmp_path}"]))
    with pytest.raises(ConfigError, match=message):
        load_for_inference(f"{trained_run}/checkpoints/best.pt", data=compose("eval", [f"data.root={tmp_path}"]).data)


@pytest.fixture
def small_disk(tmp_path):
    """``make(size)``: a real file system of ``size`` bytes (tmpfs) under ``tmp_path``, unmounted
    after the test; skipped where mounting is not allowed (not root, no CAP_SYS_ADMIN)."""
    import subprocess

    mounted = []

    def make(size: int):
        disk = tmp_path / f"disk{len(mounted)}"
        disk.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(disk)], capture_output=True)
        if proc.returncode != 0:
            pytest.skip("cannot mount a small tmpfs here (needs root); the monkeypatched ENOSPC tests stand in")
        mounted.append(disk)
        return disk
    yield make
    for disk in mounted:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_full_disks_for_real(tmp_path, tiny_overrides, trained_run, small_disk):
    """The same failures on file systems that really fill up: a run directory with room for two
    checkpoints, a motion cache of 64 KiB, a features_dir with a few KiB left."""
    from helpers import compose, train_in_process
    from video_sparse.data.motion import MotionSetError, MotionSetSpec, prepare_motion_dataset
    from video_sparse.engine.checkpoint import load_checkpoint
    from video_sparse.engine.evaluator import evaluate_checkpoint
    from video_sparse.errors import WriteError

    run_disk = small_disk(10 * 2**20)  # c2d_small checkpoints are 3.9 MB: best.pt and last.pt of epoch 1 fit
    with pytest.raises(WriteError, match=r"cannot write the checkpoint .*: No space left on device\. Fix: free space in "
                                         r".* \(the last good checkpoint is .*last\.pt: epoch 1, batch 0, step 5\)"):
        train_in_process(tiny_overrides + ["model=c2d_small", "trainer.epochs=3"], run_disk)
    assert load_checkpoint(run_disk / "checkpoints" / "last.pt")["epoch"] == 1
    assert not list((run_disk / "checkpoints").glob(".*.tmp"))

    cache = small_disk(64 * 2**10)
    spec = MotionSetSpec(train_size=40, val_size=10, frames=8, height=64, width=64)
    with pytest.raises(MotionSetError, match=rf"data\.cache_dir: cannot write the motion set into {cache} \(No space"):
        prepare_motion_dataset(spec, cache, workers=1, progress=False)
    assert [p.name for p in cache.iterdir()] == [f"{spec.key()}.lock"]

    features = small_disk(64 * 2**10)
    (features / "filler").write_bytes(b"\0" * (64 * 2**10 - 16 * 2**10))  # room for features.json and .lock
    cfg = compose("eval", [f"checkpoint={trained_run}/checkpoints/best.pt", "features=true", "test.clips=8",
                           f"features_dir={features / 'f'}", "logger.mode=disabled", "trainer.device=cpu"])
    (tmp_path / "run").mkdir()
    with pytest.raises(WriteError, match=r"MiB of features into features_dir=.*: No space left on device"):
        evaluate_checkpoint(cfg, tmp_path / "run")
