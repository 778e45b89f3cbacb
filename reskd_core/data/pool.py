"""A process pool that survives its workers: a crash or a hang costs one task, not the run.

``concurrent.futures.ProcessPoolExecutor`` marks the whole pool broken when one worker dies (decord can
segfault on a broken stream), and cannot stop a hung task. Here each worker gets one task at a time
over its own pipe; a worker that dies or passes the per-task timeout is killed and replaced, and its
task is reported as failed.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import time
from collections.abc import Callable, Hashable, Iterable, Iterator
from multiprocessing.connection import Connection, wait
from typing import Any

log = logging.getLogger(__name__)


def _worker_main(conn: Connection, fn: Callable[..., Any]) -> None:
    conn.send("ready")
    while True:
        try:
            task = conn.recv()
        except (EOFError, KeyboardInterrupt):
            return
        if task is None:
            return
        key, args = task
        try:
            result = fn(*args)
        except Exception as e:  # the pool reports it instead of dying
            result = {"error": f"{type(e).__name__}: {e}"}
        conn.send((key, result))


class _Worker:
    def __init__(self, ctx, fn: Callable[..., Any]) -> None:
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, fn), daemon=True)
        self.proc.start()
        child.close()
        self.key: Hashable | None = None
        self.deadline = 0.0
        self.ready = False

    def wait_ready(self, timeout: float = 120.0) -> None:
        """A worker that cannot start (a broken environment) fails the run, not one video."""
        if self.ready:
            return
        try:
            if self.conn.poll(timeout) and self.conn.recv() == "ready":
                self.ready = True
                return
        except (EOFError, OSError):
            pass
        self.proc.join(1)
        raise RuntimeError(f"a decoder worker process failed to start (exit code {self.proc.exitcode})")

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(5)
        self.conn.close()


class CrashSafePool:
    """``with CrashSafePool(fn, workers, timeout_s) as pool: for key, result in pool.run(tasks): ...``

    ``fn(*args)`` runs in a spawned process; a failed task yields ``{"error": reason}``.
    """

    def __init__(self, fn: Callable[..., Any], workers: int, timeout_s: float) -> None:
        self.fn, self.size, self.timeout_s = fn, max(1, workers), timeout_s
        self.ctx = mp.get_context("spawn")  # no fork: the parent may hold threads (torch, s3fs)
        self.workers: list[_Worker] = []

    def __enter__(self) -> CrashSafePool:
        self.workers = [_Worker(self.ctx, self.fn) for _ in range(self.size)]
        return self

    def __exit__(self, *exc) -> None:
        for w in self.workers:
            try:
                if w.key is None and w.proc.is_alive():
                    w.conn.send(None)
            except OSError:
                pass
        for w in self.workers:
            w.proc.join(2)
            w.kill()
        self.workers = []

    def _replace(self, w: _Worker) -> None:
        w.kill()
        self.workers[self.workers.index(w)] = _Worker(self.ctx, self.fn)

    def run(self, tasks: Iterable[tuple[Hashable, tuple]]) -> Iterator[tuple[Hashable, Any]]:
        """Yield ``(key, result)`` as tasks finish (not in order); tasks are pulled only for idle workers."""
        pending = iter(tasks)
        exhausted = False
        while True:
            for w in self.workers:
                if w.key is None and not exhausted:
                    task = next(pending, None)
                    if task is None:
                        exhausted = True
                        break
                    w.wait_ready()
                    w.key, w.deadline = task[0], time.monotonic() + self.timeout_s
                    w.conn.send(task)
            busy = [w for w in self.workers if w.key is not None]
            if not busy:
                return
            timeout = max(0.0, min(w.deadline for w in busy) - time.monotonic())
            ready = set(wait([w.conn for w in busy] + [w.proc.sentinel for w in busy], timeout))
            for w in busy:
                key = w.key
                if w.conn in ready:
                    try:
                        got_key, result = w.conn.recv()
                    except (EOFError, OSError):
                        got_key, result = key, None
                    if result is not None:
                        w.key = None
                        yield got_key, result
                        continue
                if w.conn in ready or w.proc.sentinel in ready:
                    w.proc.join(1)
                    code = w.proc.exitcode
                    reason = (
                        f"decoder process died (signal {-code})"
                        if code and code < 0
                        else (f"decoder process exited with status {code}")
                    )
                    log.warning("task %s: %s; starting a new worker", key, reason)
                    self._replace(w)
                    yield key, {"error": reason}
                elif time.monotonic() >= w.deadline:
                    log.warning("task %s: no result after %.0f s; killing its worker", key, self.timeout_s)
                    self._replace(w)
                    yield key, {"error": f"timed out after {self.timeout_s:g} s"}
