"""The dataset scan's process pool: a probe that kills its process (a decoder segfault) is reported
as that video's failure, whatever the start method, and never hangs the scan."""
import multiprocessing
import os
import signal

import pytest

from video_sparse.data.scan import CRASHED, MAX_CRASHES_FIRST, ScanError, probe_all, scan_videos


def fake_probe(path):
    """Stands in for :func:`probe_video` (passed in, so that it reaches the workers under any start
    method, where monkeypatching would not under spawn or forkserver): ``exit*`` and ``kill*``
    end the process the way a crashing decoder does, ``raise*`` raises, ``<i>-<n>.mp4`` has n frames."""
    name = os.path.basename(path)
    if name.startswith("exit"):
        os._exit(139)
    if name.startswith("kill"):
        os.kill(os.getpid(), signal.SIGKILL)
    if name.startswith("raise"):
        raise RuntimeError("probe bug")
    return int(name.split("-")[1].split(".")[0]), ""


@pytest.mark.timeout(120)
@pytest.mark.parametrize("workers,start", [(1, None), (3, None), (2, "spawn")])
def test_a_crashing_probe_fails_only_its_video(workers, start, monkeypatch):
    from video_sparse.data import scan
    if start is not None:  # the default is fork on Linux before Python 3.14, forkserver after
        monkeypatch.setattr(scan, "get_context", lambda: multiprocessing.get_context(start))
    paths = [f"/v/{i}-16.mp4" for i in range(30)]
    crashes = {3: "exit", 11: "kill", 12: "kill", 28: "exit"}
    for i, kind in crashes.items():
        paths[i] = f"/v/{kind}{i}.mp4"
    paths[20] = "/v/raise20.mp4"
    paths[21] = "/v/21-3.mp4"
    results = probe_all(paths, workers, fake_probe, progress=False)
    assert [i for i, r in enumerate(results) if r == (0, CRASHED)] == sorted(crashes)
    assert results[20] == (0, "RuntimeError: probe bug") and results[21] == (3, "")
    assert all(r == (16, "") for i, r in enumerate(results) if i not in (*crashes, 20, 21))
    counts, rows = scan_videos({"train": paths[:15], "val": paths[15:]}, {"val": ["/v/gone.mp4"]}, 8, workers,
                               probe=fake_probe)
    assert counts == {"train": {"ok": 12, "needs_linear_decode": 0, "short": 0, "missing": 0, "unreadable": 3},
                      "val": {"ok": 12, "needs_linear_decode": 0, "short": 1, "missing": 1, "unreadable": 2}}
    assert len(rows) == 31 and sum(r[2] == "ok" for r in rows) == 24  # every video has a row
    rows = [r for r in rows if r[2] != "ok"]
    assert [(r[0], os.path.basename(r[1]), r[2]) for r in rows] == [
        ("val", "gone.mp4", "missing"), ("train", "exit3.mp4", "unreadable"), ("train", "kill11.mp4", "unreadable"),
        ("train", "kill12.mp4", "unreadable"), ("val", "raise20.mp4", "unreadable"), ("val", "21-3.mp4", "short"),
        ("val", "exit28.mp4", "unreadable")]
    assert rows[1][-1] == CRASHED


@pytest.mark.timeout(120)
def test_a_decoder_that_crashes_on_everything_is_one_clear_error():
    paths = [f"/v/kill{i}.mp4" for i in range(200)]
    with pytest.raises(ScanError, match=f"died on each of the first {MAX_CRASHES_FIRST} videos.*Fix:"):
        probe_all(paths, 2, fake_probe, progress=False)
