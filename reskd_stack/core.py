"""One local stack rooted at a folder: ``up`` (idempotent), ``down``, ``status``, and fault drills.

The state file ``<root>/state.json`` holds the settings, the stack id and each service's (pid, start
time), so any later command (or another process) stops exactly what ``up`` started.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from reskd_stack import procs
from reskd_stack.databases import drop_databases, ensure_databases
from reskd_stack.probes import http_ok, port_free
from reskd_stack.services import BIN, SERVICES, WAVES, services, short_ray_temp
from reskd_stack.settings import (
    LOCAL_S3_KEY,
    LOCAL_S3_SECRET,
    StackSettings,
    client_env,
    endpoints,
    env_file_text,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    state: str  # up | unhealthy | down
    pid: int | None
    endpoint: str
    log: str


class Stack:
    """The local production stack under ``settings.root``."""

    def __init__(self, settings: StackSettings):
        self.root = Path(settings.root).resolve()
        self.settings = replace(settings, root=str(self.root), workdir=str(Path(settings.workdir).resolve()))
        self.state_file = self.root / "state.json"
        state = json.loads(self.state_file.read_text()) if self.state_file.exists() else {}
        self.stack_id: str = state.get("stack_id") or uuid.uuid4().hex
        self.procs: dict[str, dict] = state.get("services", {})
        self._children: dict[str, subprocess.Popen] = {}

    @classmethod
    def open(cls, root: str | Path | None = None, **overrides) -> Stack:
        """The stack at ``root`` with its saved settings, changed by the non-None ``overrides``.

        Raises ValueError when the stack runs and an override would change it (run ``down`` first).
        """
        root = Path(root or os.environ.get("RESKD_STACK_DIR") or StackSettings.root).resolve()
        state_file = root / "state.json"
        saved = json.loads(state_file.read_text()).get("settings", {}) if state_file.exists() else {}
        known = {f.name for f in fields(StackSettings)}
        base = StackSettings(**{k: v for k, v in saved.items() if k in known} | {"root": str(root)})
        changes = {k: v for k, v in overrides.items() if v is not None and getattr(base, k) != v}
        stack = cls(replace(base, **changes))
        running = [n for n in SERVICES if stack.running(n)]
        if changes and running:
            raise ValueError(
                f"the stack in {root} runs ({', '.join(running)}) with other settings "
                f"({', '.join(sorted(changes))}); run `reskd stack down` first"
            )
        return stack

    # ------------------------------------------------------------ queries

    @property
    def env(self) -> dict[str, str]:
        """The client environment (the env contract: tracking URI, Prefect API, Ray address, S3...)."""
        return client_env(self.settings)

    @property
    def endpoints(self) -> dict[str, str]:
        return endpoints(self.settings)

    @property
    def log_dir(self) -> Path:
        return self.root / "logs"

    def leader(self, name: str) -> procs.ProcInfo | None:
        rec = self.procs.get(name)
        return procs.ProcInfo(rec["pid"], rec["start"]) if rec else None

    def members(self, name: str) -> list[procs.ProcInfo]:
        """Every live process of service ``name``: its leader and whatever carries its marker."""
        found = procs.marked(self.stack_id, name)
        lead = self.leader(name)
        if lead is not None and procs.alive(lead) and lead not in found:
            found.append(lead)
        return found

    def pids(self) -> list[int]:
        """All live processes of this stack (any service)."""
        return sorted(
            {p.pid for n in SERVICES for p in self.members(n)} | {p.pid for p in procs.marked(self.stack_id)}
        )

    def running(self, name: str) -> bool:
        lead = self.leader(name)
        return lead is not None and procs.alive(lead)

    def healthy(self, name: str) -> bool:
        return self.running(name) and self._services()[name].health()

    def status(self) -> list[ServiceStatus]:
        eps = self.endpoints | {"ray-head": self.endpoints["ray"], "ray-worker": self.endpoints["ray"]}
        out = []
        for n in SERVICES:
            lead = self.leader(n)
            state = ("up" if self.healthy(n) else "unhealthy") if self.running(n) else "down"
            out.append(
                ServiceStatus(
                    n,
                    state,
                    lead.pid if lead and state != "down" else None,
                    eps.get(n, ""),
                    str(self.log_dir / f"{n}.log"),
                )
            )
        return out

    # ------------------------------------------------------------ lifecycle

    def up(self) -> dict[str, str]:
        """Start whatever is not running (wave by wave), wait until all are healthy; returns :attr:`env`."""
        with self._lock():
            t0 = time.monotonic()
            self.root.mkdir(parents=True, exist_ok=True)
            self._save()
            ensure_databases(self.settings)
            for wave in WAVES:
                if "prefect-worker" in wave:
                    self._ensure_pool()
                for name in wave:
                    if not self.running(name):
                        self._start(name)
                for name in wave:
                    self._wait(name)
                if "s3" in wave:
                    self._ensure_bucket()
            (self.root / "stack.env").write_text(env_file_text(self.settings))
            log.info("stack up in %.1fs (%s)", time.monotonic() - t0, self.root)
        return self.env

    def down(self, purge: bool = False) -> None:
        """Stop every service (reverse order), then anything still carrying the stack id; free the ports.

        ``purge`` also drops the two databases and deletes the stack folder (S3 journal included).
        """
        if not self.state_file.exists() and not purge:
            return  # never started here: nothing to stop, and no folder to create
        with self._lock():
            started = [n for n in SERVICES if n in self.procs]
            for name in reversed(SERVICES):
                self.stop(name)
            procs.kill(None, lambda: procs.marked(self.stack_id))
            self._wait_ports_free(started)
        if purge:
            drop_databases(self.settings)
            ray_temp = short_ray_temp(self.root, self.stack_id)
            if not ray_temp.is_relative_to(self.root):
                shutil.rmtree(ray_temp, ignore_errors=True)
            shutil.rmtree(self.root, ignore_errors=True)

    def stop(self, name: str, grace_s: float = 15.0) -> None:
        """SIGTERM service ``name`` (its group and marked strays), SIGKILL after ``grace_s``."""
        procs.terminate(self.leader(name), lambda: procs.marked(self.stack_id, name), grace_s)
        self._forget(name)

    def kill(self, name: str) -> None:
        """SIGKILL service ``name`` and all its processes at once (a crash, for fault drills)."""
        procs.kill(self.leader(name), lambda: procs.marked(self.stack_id, name))
        self._forget(name)

    def start(self, name: str) -> None:
        """Start service ``name`` unless it runs (after :meth:`kill` in a fault drill); wait until healthy."""
        with self._lock():
            if not self.running(name):
                self._wait_ports_free([name])
                self._start(name)
            self._wait(name)

    def restart(self, name: str, hard: bool = True) -> None:
        """Kill (``hard``) or stop service ``name``, start it again and wait until it is healthy."""
        with self._lock():
            self.kill(name) if hard else self.stop(name)
            self._wait_ports_free([name])
            self._start(name)
            self._wait(name)

    # ------------------------------------------------------------ internals

    def _services(self):
        started = {n: rec.get("started_ms", 0) for n, rec in self.procs.items()}
        return services(self.settings, self.root, self.stack_id, started)

    def _start(self, name: str) -> None:
        svc = self._services()[name]
        # A crashed leader can leave members behind (raylet without `ray start`): clear them first.
        procs.kill(None, lambda: procs.marked(self.stack_id, name))
        self._wait_released(name, svc)
        busy = [p for p in svc.ports if not port_free(self.settings.host, p)]
        if busy:
            raise RuntimeError(
                f"stack service {name}: port(s) {busy} on {self.settings.host} are in use by "
                "another process; choose other ports (see `reskd stack up --help`)"
            )
        env = {**os.environ, **self.env, procs.STACK_ID_VAR: self.stack_id, procs.SERVICE_VAR: name}
        for k, v in svc.env.items():
            env.pop(k, None) if v is None else env.__setitem__(k, v)
        cwd = self.settings.workdir if name == "prefect-worker" else self.root
        started_ms = time.time() * 1000
        child = procs.spawn(svc.cmd, self.log_dir / f"{name}.log", env, cwd)
        self._children[name] = child
        info = procs.proc_info(child.pid)
        self.procs[name] = {
            "pid": child.pid,
            "start": info.start if info else 0,
            "started_ms": started_ms,
            "cmd": svc.cmd,
        }
        self._save()
        log.info("started %s (pid %d)", name, child.pid)

    def _wait(self, name: str) -> None:
        svc, timeout = self._services()[name], self.settings.timeout_s  # after _start: knows started_ms
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running(name):
                raise RuntimeError(f"stack service {name} exited during start-up:\n{self._tail(name)}")
            if svc.health():
                return
            time.sleep(0.5)
        raise TimeoutError(f"stack service {name} not healthy within {timeout:.0f}s:\n{self._tail(name)}")

    def _wait_released(self, name: str, svc, timeout: float = 120.0) -> None:
        """Wait until the stack no longer counts the previous instance of ``name`` (after a kill)."""
        deadline = time.monotonic() + timeout
        if svc.released():
            return
        log.info("%s: waiting until the cluster lets go of the previous instance", name)
        while not svc.released():
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"stack service {name}: the cluster still counts its previous instance as alive "
                    f"after {timeout:.0f}s; not starting a second one on the same address"
                )
            time.sleep(0.5)

    def _ensure_bucket(self) -> None:
        s = self.settings
        url = f"http://{s.host}:{s.s3_port}"
        if http_ok(f"{url}/{s.bucket}", "HEAD") is not None:
            return
        import boto3

        boto3.client(
            "s3",
            endpoint_url=url,
            aws_access_key_id=LOCAL_S3_KEY,
            aws_secret_access_key=LOCAL_S3_SECRET,
            region_name="us-east-1",
        ).create_bucket(Bucket=s.bucket)

    def _ensure_pool(self) -> None:
        s = self.settings
        if http_ok(f"http://{s.host}:{s.prefect_port}/api/work_pools/{s.pool}") is not None:
            return
        env = {**os.environ, **self.env, "PREFECT_HOME": str(self.root / "prefect")}
        done = subprocess.run(
            [str(BIN / "prefect"), "work-pool", "create", s.pool, "--type", "process"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if (
            done.returncode != 0
            and http_ok(f"http://{s.host}:{s.prefect_port}/api/work_pools/{s.pool}") is None
        ):
            raise RuntimeError(f"could not create work pool {s.pool}: {done.stdout}{done.stderr}")

    def _wait_ports_free(self, names: list[str], timeout: float = 20.0) -> None:
        svcs = self._services()
        ports = [p for n in names for p in svcs[n].ports]
        deadline = time.monotonic() + timeout
        while busy := [p for p in ports if not port_free(self.settings.host, p)]:
            if time.monotonic() > deadline:
                raise RuntimeError(f"ports {busy} still in use after stopping the stack")
            time.sleep(0.3)

    def _forget(self, name: str) -> None:
        child = self._children.pop(name, None)
        if child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(5)  # reap: a zombie would still hold a pid
        if self.procs.pop(name, None) is not None and self.root.exists():
            self._save()

    def _save(self) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(
            json.dumps(
                {"stack_id": self.stack_id, "settings": asdict(self.settings), "services": self.procs},
                indent=1,
            )
        )
        tmp.replace(self.state_file)

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            yield

    def _tail(self, name: str, n: int = 3000) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace")[-n:] if path.exists() else "(no log)"
