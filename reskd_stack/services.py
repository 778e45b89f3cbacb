"""What the local stack runs: each service's command line, health check, ports and environment.

The settings and the client environment are in :mod:`reskd_stack.settings`; the probes the health
checks use are in :mod:`reskd_stack.probes`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from reskd_stack.probes import http_ok, ray_node_alive, ray_node_released, worker_online
from reskd_stack.settings import StackSettings, db_url

REPO_ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SERVICES = ["s3", "prefect", "mlflow", "ray-head", "ray-worker", "prefect-worker"]
# Started together, wave by wave: enough overlap to hide start-up latency, little CPU contention on 2 cores.
WAVES = [["s3"], ["prefect", "mlflow", "ray-head"], ["ray-worker", "prefect-worker"]]


def worker_name(stack_id: str) -> str:
    """The local Prefect worker's name: one per stack, so two stacks' workers never mix up."""
    return f"reskd-local-{stack_id[:8]}"


def ray_ports(s: StackSettings, node: int) -> dict[str, int]:
    """Explicit ports of Ray node ``node`` (0 head, 1 worker), so two nodes (and stacks) never collide."""
    base, o = s.ray_port, 2 + 6 * node
    names = [
        "node-manager",
        "object-manager",
        "dashboard-agent-listen",
        "dashboard-agent-grpc",
        "runtime-env-agent",
        "metrics-export",
    ]
    ports = {n: base + o + i for i, n in enumerate(names)}
    ports |= {"min-worker": base + 20 + 40 * node, "max-worker": base + 59 + 40 * node}
    return ports


@dataclass
class Service:
    """One service of the stack: how to start it and how to tell that it serves."""

    name: str
    cmd: list[str]
    health: Callable[[], bool]
    ports: list[int]
    env: dict[str, str | None]  # None: remove the variable
    # before a start: the rest of the stack has let go of the previous instance (a Ray node's record)
    released: Callable[[], bool] = lambda: True


def short_ray_temp(root: Path, stack_id: str) -> Path:
    """Ray's unix sockets must fit in 107 bytes: long stack folders get a short temp dir in /tmp."""
    path = root / "ray"
    return path if len(str(path)) <= 40 else Path("/tmp") / f"reskd-ray-{stack_id[:8]}"


def services(
    s: StackSettings, root: Path, stack_id: str, started_ms: dict[str, float] | None = None
) -> dict[str, Service]:
    """Command line, health check, ports and extra environment of every service.

    ``started_ms``: when each running service was started (epoch ms), for the Ray nodes' checks.
    """
    since = started_ms or {}
    h = s.host
    ray_temp = str(short_ray_temp(root, stack_id))
    prefect_env = {"PREFECT_HOME": str(root / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    # Ray's auth mode, explicit: left unset, `ray start` turns token auth on whenever some earlier local
    # ray.init() on the machine wrote ~/.ray/auth_token, and clients without that token are refused.
    # Nodes and the worker's flow runs (Ray drivers) share it; nobody else's token leaks in.
    ray_auth: dict[str, str | None] = {
        "RAY_AUTH_MODE": "disabled",
        "RAY_AUTH_TOKEN": None,
        "RAY_AUTH_TOKEN_PATH": None,
    }
    # Ray nodes: no RAY_ADDRESS (a head must not look for a cluster); drain at once on SIGTERM.
    ray_env: dict[str, str | None] = ray_auth | {
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
        "RAY_ADDRESS": None,
    }

    def ray_start(node: int, cpus: int) -> list[str]:
        p = ray_ports(s, node)
        args = [
            str(BIN / "ray"),
            "start",
            "--block",
            "--node-ip-address",
            h,
            "--num-cpus",
            str(cpus),
            "--temp-dir",
            ray_temp,
            "--object-store-memory",
            str(s.ray_object_store_mb * 2**20),
            "--disable-usage-stats",
        ]
        args += [f"--{k}-port={v}" for k, v in p.items()]
        if node == 0:
            args += [
                "--head",
                "--port",
                str(s.ray_port),
                "--ray-client-server-port",
                str(s.ray_port + 1),
                "--include-dashboard",
                str(s.ray_dashboard).lower(),
                "--dashboard-host",
                h,
                "--dashboard-port",
                str(s.ray_dashboard_port),
            ]
        else:
            args += ["--address", f"{h}:{s.ray_port}"]
        return args

    def ray_head_ok() -> bool:
        if not ray_node_alive(s, ray_ports(s, 0)["node-manager"], since.get("ray-head", 0)):
            return False
        return (
            not s.ray_dashboard or http_ok(f"http://{h}:{s.ray_dashboard_port}/api/gcs_healthz") is not None
        )

    return {
        "s3": Service(
            "s3",
            [
                sys.executable,
                str(REPO_ROOT / "infra/local/s3_server.py"),
                "--host",
                h,
                "--port",
                str(s.s3_port),
                "--journal",
                str(root / "s3" / "journal.jsonl"),
            ],
            lambda: http_ok(f"http://{h}:{s.s3_port}/moto-api/") is not None,
            [s.s3_port],
            {},
        ),
        "prefect": Service(
            "prefect",
            [
                str(BIN / "prefect"),
                "server",
                "start",
                "--host",
                h,
                "--port",
                str(s.prefect_port),
                "--ui" if s.ui else "--no-ui",
            ],
            lambda: http_ok(f"http://{h}:{s.prefect_port}/api/health") == b"true",
            [s.prefect_port],
            prefect_env | {"PREFECT_API_DATABASE_CONNECTION_URL": db_url(s, s.prefect_db, "asyncpg")},
        ),
        "mlflow": Service(
            "mlflow",
            [
                str(BIN / "mlflow"),
                "server",
                "--host",
                h,
                "--port",
                str(s.mlflow_port),
                "--workers",
                "1",
                "--backend-store-uri",
                db_url(s, s.mlflow_db, "psycopg2"),
                "--artifacts-destination",
                f"s3://{s.bucket}/mlflow",
            ],
            lambda: http_ok(f"http://{h}:{s.mlflow_port}/health") is not None,
            [s.mlflow_port],
            # The server's job runner (GenAI jobs) would add eight idle processes.
            {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        ),
        "ray-head": Service(
            "ray-head",
            ray_start(0, s.ray_head_cpus),
            ray_head_ok,
            [s.ray_port, s.ray_port + 1, *ray_ports(s, 0).values()]
            + ([s.ray_dashboard_port] if s.ray_dashboard else []),
            ray_env,
        ),
        "ray-worker": Service(
            "ray-worker",
            ray_start(1, s.ray_worker_cpus),
            lambda: ray_node_alive(s, ray_ports(s, 1)["node-manager"], since.get("ray-worker", 0)),
            list(ray_ports(s, 1).values()),
            ray_env,
            released=lambda: ray_node_released(s, ray_ports(s, 1)["node-manager"]),
        ),
        "prefect-worker": Service(
            "prefect-worker",
            [
                str(BIN / "prefect"),
                "worker",
                "start",
                "--pool",
                s.pool,
                "--type",
                "process",
                "--name",
                worker_name(stack_id),
                "--with-healthcheck",
            ],
            lambda: (
                http_ok(f"http://{h}:{s.worker_port}/health") is not None
                and worker_online(s, worker_name(stack_id))
            ),
            [s.worker_port],
            prefect_env
            | ray_auth
            | {"PREFECT_WORKER_WEBSERVER_HOST": h, "PREFECT_WORKER_WEBSERVER_PORT": str(s.worker_port)},
        ),
    }
