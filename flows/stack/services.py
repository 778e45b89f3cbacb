"""What the local stack runs: its settings, the client environment, and each service's command and health.

Every name a client needs is in :func:`client_env` (the env contract shared with Compose and Kubernetes).
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SERVICES = ["s3", "prefect", "mlflow", "ray-head", "ray-worker", "prefect-worker"]
# Started together, wave by wave: enough overlap to hide start-up latency, little CPU contention on 2 cores.
WAVES = [["s3"], ["prefect", "mlflow", "ray-head"], ["ray-worker", "prefect-worker"]]
# moto accepts any credentials; these only name the local stack's dummy identity.
LOCAL_S3_KEY, LOCAL_S3_SECRET = "reskd-local", "reskd-local-secret"


@dataclass(frozen=True)
class StackSettings:
    """Where and how the local stack runs. Ray uses the ports ``ray_port`` .. ``ray_port + 99``."""

    root: str = ".stack"
    host: str = "127.0.0.1"
    postgres_url: str = "postgresql://postgres@127.0.0.1:5432"
    prefect_db: str = "reskd_prefect"
    mlflow_db: str = "reskd_mlflow"
    bucket: str = "reskd"
    s3_port: int = 9000
    prefect_port: int = 4200
    worker_port: int = 4201
    mlflow_port: int = 5000
    ray_port: int = 6380
    ray_dashboard_port: int = 8265
    ray_head_cpus: int = 1
    ray_worker_cpus: int = 1
    ray_object_store_mb: int = 256
    pool: str = "reskd-process"
    ui: bool = True
    ray_dashboard: bool = True
    workdir: str = "."
    timeout_s: float = 180.0

    def __post_init__(self) -> None:
        for field in ("prefect_db", "mlflow_db"):
            if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", getattr(self, field)):
                raise ValueError(
                    f"stack setting {field}={getattr(self, field)!r}: use lowercase letters, "
                    "digits and _ (a PostgreSQL database name)"
                )
        if urlsplit(self.postgres_url).password:
            # it would show in `ps` (service command lines) and in state.json
            raise ValueError("stack setting postgres_url must not hold a password: set PGPASSWORD instead")
        if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", self.bucket):
            raise ValueError(f"stack setting bucket={self.bucket!r} is not a valid S3 bucket name")


def client_env(s: StackSettings) -> dict[str, str]:
    """The environment a client (or a flow run) needs to use the stack: the names of the env contract."""
    s3 = f"http://{s.host}:{s.s3_port}"
    return {
        "PREFECT_API_URL": f"http://{s.host}:{s.prefect_port}/api",
        "MLFLOW_TRACKING_URI": f"http://{s.host}:{s.mlflow_port}",
        "RAY_ADDRESS": f"{s.host}:{s.ray_port}",
        "RESKD_STORAGE_ROOT": f"s3://{s.bucket}/runs",
        "AWS_ACCESS_KEY_ID": LOCAL_S3_KEY,
        "AWS_SECRET_ACCESS_KEY": LOCAL_S3_SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": s3,
        "MLFLOW_S3_ENDPOINT_URL": s3,
    }


def env_file_text(s: StackSettings) -> str:
    """``export NAME=value`` lines to ``source`` before ``prefect deployment run reskd/full``."""
    lines = ["# reskd local stack: source this file, then run `prefect deployment run reskd/full`."]
    return "\n".join(lines + [f"export {k}={v}" for k, v in client_env(s).items()]) + "\n"


def endpoints(s: StackSettings) -> dict[str, str]:
    h = s.host
    return {
        "s3": f"http://{h}:{s.s3_port}",
        "prefect": f"http://{h}:{s.prefect_port}/api",
        "mlflow": f"http://{h}:{s.mlflow_port}",
        "ray": f"{h}:{s.ray_port}",
        "ray-dashboard": f"http://{h}:{s.ray_dashboard_port}" if s.ray_dashboard else "",
        "prefect-worker": f"http://{h}:{s.worker_port}/health",
    }


def db_url(s: StackSettings, db: str, driver: str) -> str:
    """``postgresql+<driver>://user@host:port/<db>``; passwords come from ``PGPASSWORD``, never the URL."""
    u = urlsplit(s.postgres_url)
    return f"postgresql+{driver}://{u.netloc}/{db}"


def _admin_sql(s: StackSettings, statements: list[tuple[str, str]]) -> None:
    """Run ``(check, statement)`` pairs on the server's ``postgres`` database, outside a transaction
    (CREATE/DROP DATABASE need that); a statement runs only when its check query returns no row."""
    import psycopg2

    u = urlsplit(s.postgres_url)
    try:
        conn = psycopg2.connect(
            host=u.hostname,
            port=u.port or 5432,
            user=u.username or "postgres",
            dbname="postgres",
            connect_timeout=10,
        )
    except psycopg2.OperationalError as e:
        raise RuntimeError(f"cannot reach PostgreSQL at {s.postgres_url}: {e}") from None
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for check, statement in statements:
                cur.execute(check)
                if cur.fetchone() is None:
                    cur.execute(statement)
    finally:
        conn.close()


def _check_db(db: str) -> str:
    return f"SELECT 1 FROM pg_database WHERE datname = '{db}'"


def ensure_databases(s: StackSettings) -> None:
    """Create the Prefect and MLflow databases unless they exist."""
    _admin_sql(s, [(_check_db(db), f'CREATE DATABASE "{db}"') for db in (s.prefect_db, s.mlflow_db)])


def drop_databases(s: StackSettings) -> None:
    _admin_sql(
        s,
        [
            ("SELECT WHERE false", f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
            for db in (s.prefect_db, s.mlflow_db)
        ],
    )


# ---------------------------------------------------------------- health checks


def http_ok(url: str, method: str = "GET", body: bytes | None = None) -> bytes | None:
    """The body when ``url`` answers 2xx within 3 s, else None."""
    req = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=3) as r:
            return r.read() if 200 <= r.status < 300 else None
    except (OSError, urllib.error.URLError):
        return None


def tcp_ok(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=2):
        return True
    return False


def port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def worker_online(s: StackSettings, name: str) -> bool:
    """Prefect worker ``name`` is registered on the pool and heartbeating (status ONLINE)."""
    body = http_ok(f"http://{s.host}:{s.prefect_port}/api/work_pools/{s.pool}/workers/filter", "POST", b"{}")
    return body is not None and any(
        w["name"] == name and w.get("status") == "ONLINE" for w in json.loads(body)
    )


def worker_name(stack_id: str) -> str:
    return f"reskd-local-{stack_id[:8]}"


def ray_nodes(s: StackSettings) -> list | None:
    """The GCS's node table (Ray's ``GcsNodeInfo`` records), or None when the GCS does not answer."""
    if not tcp_ok(s.host, s.ray_port):
        return None
    try:
        from ray._raylet import GcsClient  # Ray's own GCS client; imported here, it costs a second

        return list(GcsClient(address=f"{s.host}:{s.ray_port}").get_all_node_info(timeout=3).values())
    except Exception:  # noqa: BLE001 - GCS not ready (or gone): the callers treat it as unknown
        return None


def ray_node_alive(s: StackSettings, node_manager_port: int, since_ms: float = 0) -> bool:
    """The GCS lists an ALIVE node on ``node_manager_port`` started after ``since_ms`` (epoch ms).

    The start time tells a restarted node from the killed one the GCS still lists until it notices.
    """
    if not tcp_ok(s.host, node_manager_port):
        return False
    return any(
        n.node_manager_port == node_manager_port and n.state == 0 and n.start_time_ms >= since_ms  # 0: ALIVE
        for n in ray_nodes(s) or []
    )


def ray_node_released(s: StackSettings, node_manager_port: int) -> bool:
    """No node the GCS still counts ALIVE sits on ``node_manager_port`` (or there is no GCS to ask).

    A killed node stays ALIVE in the GCS until its health checks fail (about 15 s). A new node started on
    the same address before that shares it with a ghost: calls meant for the dead node's actors reach the
    new node's processes, which take the same ports, and Ray Train's restart can wait on them.
    """
    nodes = ray_nodes(s)
    return nodes is None or not any(n.node_manager_port == node_manager_port and n.state == 0 for n in nodes)


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


# ---------------------------------------------------------------- services


@dataclass
class Service:
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
