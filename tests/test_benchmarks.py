"""The benchmark scripts a GPU session runs: ``benchmarks/gpu.py`` plans commands the scripts
accept, keeps going past a step that overruns its share, and records every step."""
import importlib.util
import re
import subprocess
import sys

import pytest

from helpers import ROOT


def _gpu_runner():
    spec = importlib.util.spec_from_file_location("benchmark_gpu", ROOT / "benchmarks" / "gpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_gpu_plan_runs_existing_scripts_with_options_they_define():
    gpu = _gpu_runner()
    plan = gpu.commands("cuda")
    assert [args[0] for _, args, _ in plan] == ["sifa_op.py", "mixers.py", "models.py", "training.py"]
    assert sum(share for _, _, share in plan) == pytest.approx(1.0)
    for _, args, _ in plan:
        source = (ROOT / "benchmarks" / args[0]).read_text()
        defined = set(re.findall(r'add_argument\(\s*"(--[\w-]+)"', source))
        assert {a for a in args if a.startswith("--")} <= defined, args[0]
        assert "cuda" in args  # every step measures the GPU


@pytest.mark.slow
def test_the_gpu_runner_records_each_step_and_goes_past_one_that_overruns(tmp_path):
    """On the CPU with a 40 s budget: the heavy steps are stopped at their share, with every
    process they started; every step has its section in the file, and the exit status says so."""
    out = tmp_path / "gpu.md"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--device", "cpu", "--budget", "40",
                           "--out", str(out)], capture_output=True, text=True, timeout=300)
    text = out.read_text()
    assert text.startswith("# GPU benchmarks: cpu, torch ")
    assert text.count("\n## ") == 4 and "stopped after" in text
    assert proc.returncode == 1
    left = subprocess.run(["pgrep", "-f", f"{ROOT / 'benchmarks'}/(sifa_op|mixers|models|training).py"],
                          capture_output=True, text=True).stdout.split()
    assert not left, f"processes of stopped steps still run: {left}"
