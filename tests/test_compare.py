"""benchmarks/compare.py: every registered video model is compared, a motion run directory is
recorded, the table and plot are written (timings are printed, never asserted)."""
import csv
import sys

import pytest

import video_sparse
from video_sparse.models.registry import variants

from helpers import ROOT, run_app

sys.path.insert(0, str(ROOT / "benchmarks"))
import compare  # noqa: E402


def test_every_video_model_is_compared_at_a_clip_it_takes():
    names = compare.video_models()
    image_backbones = {n for n in variants() if n not in names}
    assert image_backbones and all(n.split("_")[0] in ("biformer", "dilateformer", "cswin", "slide", "dat", "dpt")
                                   for n in image_backbones)
    assert {"x3d_s", "slowfast_r50", "mvit_base_16x4", "c2d_sifa_r50", "sifa_cswin_nano", "sifa_small"} <= set(names)
    assert compare.standard_clip("slowfast_r50") == (32, 224) and compare.standard_clip("x3d_xs") == (4, 160)
    assert compare.standard_clip("sifa_small") == compare.MOTION_CLIP == compare.standard_clip("mvit_nano")
    assert compare.throughput_clip("mvit_base_16x4") == ((16, 224), True)
    assert compare.throughput_clip("csn_r101") == (compare.COMMON_CLIP, False)
    assert set(compare.SCALING_MODELS) <= set(names)
    results = compare.read_results()  # the recorded motion results name registered 10-class models
    assert results and all(variants()[m].num_classes == 10 for m in results)


@pytest.mark.slow  # 13 s: the benchmark's own recorder (the default suite keeps under 10 minutes)
def test_compare_records_a_run_and_writes_table_and_plot(tiny_overrides, tmp_path, monkeypatch):
    run_app("train.py", [*tiny_overrides, "model=ptv_c2d_nano", f"hydra.run.dir={tmp_path}/run"], tmp_path)
    results = tmp_path / "results.csv"
    proc = run_app("benchmarks/compare.py", ["--models", "ptv_c2d_nano,mvit_nano", "--skip-scaling", "--repeats", "1",
                                             "--runs", str(tmp_path / "run"), "--results", str(results),
                                             "--out", str(tmp_path / "out")], tmp_path)
    assert "recorded ptv_c2d_nano" in proc.stdout
    (row,) = list(csv.DictReader(open(results)))
    assert row["model"] == "ptv_c2d_nano" and row["epochs"] == "1" and "model=ptv_c2d_nano" in row["command"]
    assert "hydra.run.dir" not in row["command"] and row["source"].startswith("run of ")
    table = (tmp_path / "out/compare.md").read_text()
    params = sum(p.numel() for p in video_sparse.build_model("ptv_c2d_nano", 10).parameters()) / 1e6
    assert f"| `ptv_c2d_nano` | {params:.2f} | 4x64² |" in table and f"| {row['top1']} | {row['pair_acc']} |" in table
    assert "| `mvit_nano` |" in table and "*" in table.split("`mvit_nano`")[1].splitlines()[0]
    assert (tmp_path / "out/compare.png").stat().st_size > 10_000

    # --reuse-costs renders the kept costs with the current results, measuring nothing
    results.write_text(results.read_text().replace(row["top1"], "0.123"))
    proc = run_app("benchmarks/compare.py", ["--models", "mvit_nano,ptv_c2d_nano", "--reuse-costs", "--results",
                                             str(results), "--out", str(tmp_path / "out")], tmp_path)
    again = (tmp_path / "out/compare.md").read_text()
    assert "GFLOPs at" not in proc.stdout and "| 0.123 |" in again
    assert again.split("`mvit_nano`")[1].splitlines()[0] == table.split("`mvit_nano`")[1].splitlines()[0]

    for args, message in [(["--models", "nope_nano"], "nope_nano is not a registered video model"),
                          (["--models", "x3d_nano", "--reuse-costs", "--out", str(tmp_path / "out")],
                           "has no costs of x3d_nano")]:  # in this process: the script ends in SystemExit(message)
        monkeypatch.setattr(sys, "argv", ["compare.py", *args])
        with pytest.raises(SystemExit, match=message):
            compare.main()
