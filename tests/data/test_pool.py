"""The crash-safe decoder pool: a worker that segfaults or hangs costs its task only (real processes)."""

from __future__ import annotations

import os
import signal
import time

import pytest

from reskd_core.data.pool import CrashSafePool


def task(kind: str, value: int) -> dict:
    if kind == "segfault":
        os.kill(os.getpid(), signal.SIGSEGV)
    if kind == "hang":
        time.sleep(600)
    if kind == "raise":
        raise RuntimeError("broken stream")
    if kind == "exit":
        os._exit(3)
    return {"value": value * 2, "pid": os.getpid()}


def test_crashes_and_hangs_lose_one_task_each():
    kinds = ["ok", "segfault", "ok", "hang", "raise", "exit", "ok", "ok"]
    tasks = [(i, (k, i)) for i, k in enumerate(kinds)]
    t0 = time.monotonic()
    with CrashSafePool(task, workers=2, timeout_s=3) as pool:
        results = dict(pool.run(tasks))
        pids = [w.proc.pid for w in pool.workers]
    assert time.monotonic() - t0 < 60
    assert sorted(results) == list(range(len(kinds)))
    for i, k in enumerate(kinds):
        if k == "ok":
            assert results[i]["value"] == 2 * i
    assert results[1]["error"] == "decoder process died (signal 11)"
    assert results[3]["error"] == "timed out after 3 s"
    assert results[4]["error"] == "RuntimeError: broken stream"
    assert results[5]["error"] == "decoder process exited with status 3"
    for pid in pids:  # the pool leaves no process behind
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


BROKEN_MODULE = """
import pathlib
if (pathlib.Path(__file__).parent / "broken").exists():
    raise ImportError("this environment cannot import the decoder")

def work(kind, value):
    return value
"""


def test_a_worker_that_cannot_start_fails_the_run(tmp_path, monkeypatch):
    (tmp_path / "broken_decoder.py").write_text(BROKEN_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    from broken_decoder import work

    (tmp_path / "broken").touch()  # from now on the module fails to import, as in the workers
    with pytest.raises(RuntimeError, match="failed to start"), CrashSafePool(work, 1, 5) as pool:
        list(pool.run([(0, ("ok", 1))]))
