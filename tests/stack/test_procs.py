"""The stack's process handling: a service's strays that leave its process group are still found and
stopped; an unrelated process (or a reused pid) is never touched."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
import uuid

from reskd_stack import procs


def _tree(tmp_path, stack_id: str, service: str) -> subprocess.Popen:
    """A leader whose child moves to a session of its own (as Ray's workers do), both sleeping."""
    env = {**os.environ, procs.STACK_ID_VAR: stack_id, procs.SERVICE_VAR: service}
    return procs.spawn(["bash", "-c", "setsid sleep 300 & exec sleep 300"], tmp_path / "tree.log", env)


def _groups(members: list[procs.ProcInfo]) -> set[int]:
    out = set()
    for p in members:
        with contextlib.suppress(ProcessLookupError):  # gone between the scan and now
            out.add(os.getpgid(p.pid))
    return out


def _wait_for(cond, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def test_terminate_finds_strays_outside_the_group(tmp_path):
    stack_id = uuid.uuid4().hex
    leader = _tree(tmp_path, stack_id, "svc")
    other = _tree(tmp_path, stack_id, "other")  # same stack, another service: left alone
    try:
        # two processes in two groups: the stray has run setsid (before that, bash's fork is in the group)
        _wait_for(lambda: len(_groups(procs.marked(stack_id, "svc"))) == 2)
        members = procs.marked(stack_id, "svc")
        assert len(members) == 2 and len(_groups(members)) == 2
        info = procs.proc_info(leader.pid)
        procs.terminate(info, lambda: procs.marked(stack_id, "svc"), grace_s=5)
        leader.wait(5)
        assert not [p for p in members if procs.alive(p)]
        assert len(procs.marked(stack_id, "other")) == 2
    finally:
        procs.kill(procs.proc_info(other.pid), lambda: procs.marked(stack_id))
        other.wait(5)
    assert procs.marked(stack_id) == []


def test_a_reused_pid_is_not_the_recorded_process(tmp_path):
    proc = subprocess.Popen(["sleep", "60"])
    try:
        info = procs.proc_info(proc.pid)
        assert procs.alive(info)
        assert not procs.alive(procs.ProcInfo(proc.pid, info.start + 1))
        procs.kill(procs.ProcInfo(proc.pid, info.start + 1), lambda: [])  # wrong identity: no signal sent
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()
    assert not procs.alive(info)
