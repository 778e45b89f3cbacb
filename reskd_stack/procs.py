"""Processes of the local stack: start in a new process group, find by environment marker, stop for sure.

A pid alone is not an identity (pids are reused), so a service is recorded as (pid, start time) and
every process it spawns carries ``RESKD_STACK_ID`` / ``RESKD_STACK_SERVICE`` in its environment, which
also finds the descendants that leave the process group (Ray starts its workers in their own groups).
Linux only: it reads ``/proc``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

STACK_ID_VAR, SERVICE_VAR = "RESKD_STACK_ID", "RESKD_STACK_SERVICE"


@dataclass(frozen=True)
class ProcInfo:
    pid: int
    start: int  # clock ticks after boot (field 22 of /proc/PID/stat): with the pid, an identity


Finder = Callable[[], "list[ProcInfo]"]


def stat_fields(pid: int) -> list[str] | None:
    """Fields of ``/proc/PID/stat`` after the command name (state first), or None when gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()


def proc_info(pid: int) -> ProcInfo | None:
    f = stat_fields(pid)
    return None if f is None else ProcInfo(pid, int(f[19]))


def alive(p: ProcInfo) -> bool:
    """Running (not a zombie) and still the same process that was recorded."""
    f = stat_fields(p.pid)
    return f is not None and f[0] not in ("Z", "X") and int(f[19]) == p.start


def ancestors() -> set[int]:
    """This process and its ancestors: never signalled, even if they carry a marker."""
    out, pid = set(), os.getpid()
    while pid > 1:
        out.add(pid)
        f = stat_fields(pid)
        if f is None:
            break
        pid = int(f[1])
    return out


def marked(stack_id: str, service: str | None = None) -> list[ProcInfo]:
    """Live processes whose environment carries this stack's id (and service name, when given)."""
    want = {f"{STACK_ID_VAR}={stack_id}".encode()}
    if service is not None:
        want.add(f"{SERVICE_VAR}={service}".encode())
    skip, out = ancestors(), []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) in skip:
            continue
        try:
            env = set(Path(entry.path, "environ").read_bytes().split(b"\0"))
        except OSError:
            continue
        if want <= env and (info := proc_info(int(entry.name))) and alive(info):
            out.append(info)
    return out


def spawn(cmd: list[str], log: Path, env: dict[str, str], cwd: str | Path | None = None) -> subprocess.Popen:
    """Start ``cmd`` as the leader of a new session (and process group), output appended to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as fh:
        fh.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n".encode())
        fh.flush()
        return subprocess.Popen(
            cmd,
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )


def signal_all(procs: list[ProcInfo], sig: int) -> None:
    for p in procs:
        if alive(p):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(p.pid, sig)


def terminate(leader: ProcInfo | None, find: Finder, grace_s: float = 10.0) -> None:
    """SIGTERM ``leader``'s process group, wait up to ``grace_s``, then SIGKILL what ``find()`` still lists.

    ``find`` returns the service's live processes (its group and the strays found by marker).
    """
    if leader is not None and alive(leader):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(leader.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        left = find()
        if not left and (leader is None or not alive(leader)):
            return
        signal_all(left, signal.SIGTERM)
        time.sleep(0.3)
    kill(leader, find)


def kill(leader: ProcInfo | None, find: Finder, wait_s: float = 10.0) -> None:
    """SIGKILL the group of ``leader`` and every process ``find()`` lists, until none is left."""
    if leader is not None and alive(leader):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(leader.pid, signal.SIGKILL)
    deadline = time.monotonic() + wait_s
    while True:
        left = find() + ([leader] if leader is not None and alive(leader) else [])
        if not left:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes survived SIGKILL: {[p.pid for p in left]}")
        signal_all(left, signal.SIGKILL)
        time.sleep(0.2)
