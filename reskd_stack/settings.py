"""Where and how the local stack runs, and the environment its clients get.

Every name a client needs is in :func:`client_env` (the env contract shared with Compose and Kubernetes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

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
    """Each service's address, as ``reskd stack status`` shows it (empty: that endpoint is off)."""
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
