"""infra/compose validated by Debian's `docker-compose config` (no engine needed), and wired by the
same environment variables as the local stack."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from reskd_stack import StackSettings, client_env

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "infra/compose/docker-compose.yml"
CONTRACT = list(client_env(StackSettings()))  # the env names of the local stack: one source of truth
SECRETS = {
    "POSTGRES_PASSWORD": "pg-secret-1",
    "AWS_ACCESS_KEY_ID": "key-2",
    "AWS_SECRET_ACCESS_KEY": "secret-3",
}
PIPELINE = ["mlflow", "ray-head", "ray-worker", "ray-worker-gpu", "prefect-worker"]


def compose_config(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.fail(
            "docker-compose not found: `make install` installs Debian's docker-compose when run as "
            "root with apt-get; otherwise `sudo apt-get install docker-compose`"
        )
    empty = tmp_path / "empty.env"  # ignore a developer's infra/compose/.env: only `env` counts
    empty.write_text("")
    return subprocess.run(
        [exe, "-f", str(COMPOSE), "--env-file", str(empty), "--profile", "gpu", "config"],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    done = compose_config(tmp_path_factory.mktemp("compose"), SECRETS)
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)


def test_every_service_of_the_topology(config):
    assert set(config["services"]) == {
        "postgres",
        "minio",
        "minio-init",
        "mlflow",
        "prefect-server",
        "prefect-worker",
        "ray-head",
        "ray-worker",
        "ray-worker-gpu",
    }


@pytest.mark.parametrize("service", PIPELINE)
def test_pipeline_services_get_the_env_contract(config, service):
    env = config["services"][service]["environment"]
    assert [k for k in CONTRACT if k not in env] == [], f"{service} misses env-contract variables"
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert env["PREFECT_API_URL"] == "http://prefect-server:4200/api"
    assert env["RAY_ADDRESS"] == "ray-head:6379"
    assert env["RESKD_STORAGE_ROOT"].startswith("s3://reskd/")
    assert env["AWS_ENDPOINT_URL"] == env["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    # credentials come from the caller's environment, interpolated, not from the file
    assert env["AWS_ACCESS_KEY_ID"] == SECRETS["AWS_ACCESS_KEY_ID"]
    assert env["AWS_SECRET_ACCESS_KEY"] == SECRETS["AWS_SECRET_ACCESS_KEY"]


def test_every_address_names_a_service_of_the_file(config):
    env = config["services"]["prefect-worker"]["environment"]
    for name in ("MLFLOW_TRACKING_URI", "PREFECT_API_URL", "AWS_ENDPOINT_URL"):
        assert urlsplit(env[name]).hostname in config["services"], name
    assert env["RAY_ADDRESS"].split(":")[0] in config["services"]
    assert "--port=6379" in config["services"]["ray-head"]["command"]
    mlflow_env = config["services"]["mlflow"]["environment"]
    assert mlflow_env["MLFLOW_BACKEND_STORE_URI"].endswith("@postgres:5432/reskd_mlflow")
    prefect_db = config["services"]["prefect-server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    assert prefect_db.startswith("postgresql+asyncpg://") and prefect_db.endswith(
        "@postgres:5432/reskd_prefect"
    )
    init = (REPO / "infra/compose/postgres-init.sql").read_text()
    assert "CREATE DATABASE reskd_prefect;" in init and "CREATE DATABASE reskd_mlflow;" in init


def test_workers_wait_for_what_they_use(config):
    deps = config["services"]["prefect-worker"]["depends_on"]
    assert deps["prefect-server"]["condition"] == "service_healthy"
    assert deps["ray-head"]["condition"] == "service_healthy"
    assert deps["minio-init"]["condition"] == "service_completed_successfully"
    command = str(config["services"]["prefect-worker"]["command"])
    assert "ray start --address=" in command and "--num-cpus=0" in command  # drivers attach to a raylet
    assert "prefect worker start --pool reskd-process --type process" in command


def test_images_are_pinned_and_builds_exist(config):
    for name, svc in config["services"].items():
        image = svc["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: image {image} is not pinned"
        if "build" in svc:
            assert (Path(svc["build"]["context"]) / svc["build"]["dockerfile"]).exists(), name


def test_secrets_are_never_written_in_the_file(tmp_path):
    raw = yaml.safe_load(COMPOSE.read_text())
    for name, svc in raw["services"].items():
        env = svc.get("environment") or {}
        for key in ("POSTGRES_PASSWORD", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MINIO_ROOT_PASSWORD"):
            if key in env:
                assert str(env[key]).startswith("${"), f"{name}: {key} must come from the environment"
    done = compose_config(tmp_path, {})
    assert done.returncode != 0 and "POSTGRES_PASSWORD" in done.stderr, done.stderr
