"""The local production stack, for real: six services up on free ports, used, restarted, and stopped
with nothing left behind."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from reskd_stack import SERVICES, Stack, StackSettings, env_file_text, procs
from reskd_stack.probes import port_free, ray_nodes
from reskd_stack.services import ray_ports
from tests.fixtures.stack import test_settings

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.status == 200, url
        return r.read()


def databases() -> set[str]:
    import psycopg2

    conn = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="postgres")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT datname FROM pg_database")
            return {r[0] for r in cur.fetchall()}
    finally:
        conn.close()


def test_checked_in_env_file_matches_the_defaults():
    """infra/local/stack.env is what `reskd stack status --env` prints for the default settings."""
    assert (REPO / "infra/local/stack.env").read_text() == env_file_text(StackSettings())
    names = [
        line.split("=")[0].removeprefix("export ") for line in env_file_text(StackSettings()).splitlines()[1:]
    ]
    assert names == [
        "PREFECT_API_URL",
        "MLFLOW_TRACKING_URI",
        "RAY_ADDRESS",
        "RESKD_STORAGE_ROOT",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_DEFAULT_REGION",
        "AWS_ENDPOINT_URL",
        "MLFLOW_S3_ENDPOINT_URL",
    ]


def test_bad_settings_name_the_setting():
    with pytest.raises(ValueError, match="prefect_db"):
        StackSettings(prefect_db="drop table; --")
    with pytest.raises(ValueError, match="bucket"):
        StackSettings(bucket="Not_A_Bucket")
    with pytest.raises(ValueError, match="PGPASSWORD"):
        StackSettings(postgres_url="postgresql://postgres:hunter2@db:5432")


def test_port_in_use_is_a_clear_error_and_nothing_keeps_running(tmp_path):
    import socket

    settings = test_settings(tmp_path / "stack")
    stack = Stack(settings)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", settings.s3_port))
        squatter.listen()
        try:
            with pytest.raises(RuntimeError, match=rf"s3: port\(s\) \[{settings.s3_port}\].*in use"):
                stack.up()
        finally:
            stack.down(purge=True)
    assert stack.pids() == []
    assert settings.prefect_db not in databases()


@pytest.mark.slow
def test_stack_up_use_restart_down(tmp_path, monkeypatch):
    settings = test_settings(tmp_path / "stack")
    stack = Stack(settings)
    try:
        try:
            t0 = time.monotonic()
            env = stack.up()
            up_s = time.monotonic() - t0
            assert {s.name: s.state for s in stack.status()} == dict.fromkeys(SERVICES, "up"), up_s
            assert {settings.prefect_db, settings.mlflow_db} <= databases()
            for k, v in env.items():
                monkeypatch.setenv(k, v)

            # idempotent: a second `up` (from the saved state, like a second CLI call) starts nothing
            before = {s.name: s.pid for s in stack.status()}
            again = Stack.open(settings.root)
            again.up()
            assert {s.name: s.pid for s in again.status()} == before
            with pytest.raises(ValueError, match="run `reskd stack down` first"):
                Stack.open(settings.root, mlflow_port=settings.mlflow_port + 1)

            # every health endpoint answers
            assert get(env["PREFECT_API_URL"] + "/health") == b"true"
            assert get(env["MLFLOW_TRACKING_URI"] + "/health") == b"OK"
            import boto3

            s3 = boto3.client("s3")
            assert settings.bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]
            # `ray status` reads the autoscaler's view, refreshed every few seconds
            deadline = time.monotonic() + 60
            while True:
                ray = subprocess.run(
                    [str(BIN / "ray"), "status", "--address", env["RAY_ADDRESS"]],
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
                active = ray.stdout.split("Active:")[-1].split("Pending:")[0]
                if ray.returncode == 0 and active.count("node_") == 2 or time.monotonic() > deadline:
                    break
                time.sleep(3)
            assert ray.returncode == 0, ray.stderr
            assert active.count("node_") == 2, ray.stdout  # head + worker node
            assert get(stack.endpoints["ray-dashboard"] + "/api/gcs_healthz").strip() == b"success"

            # the Prefect worker polls the pool: registered, heartbeating, the pool READY
            api = env["PREFECT_API_URL"]
            pool = json.loads(get(f"{api}/work_pools/{settings.pool}"))
            assert pool["type"] == "process" and pool["status"] == "READY"
            req = urllib.request.Request(
                f"{api}/work_pools/{settings.pool}/workers/filter",
                data=b"{}",
                headers={"Content-Type": "application/json"},
                method="POST",
            )
            workers = json.loads(urllib.request.urlopen(req, timeout=10).read())
            assert [w["status"] for w in workers] == ["ONLINE"]

            # MLflow stores an artifact through its proxy: it lands in the S3 bucket
            import s3fs
            from mlflow import MlflowClient

            client = MlflowClient(env["MLFLOW_TRACKING_URI"])  # no global tracking URI left behind
            run_id = client.create_run(client.create_experiment("stack-test")).info.run_id
            client.log_text(run_id, "ResKD artifact", "probe/hello.txt")
            client.set_terminated(run_id)
            fs = s3fs.S3FileSystem(skip_instance_cache=True)  # the env names this test's S3 server
            found = [p for p in fs.find(f"{settings.bucket}/mlflow") if p.endswith("probe/hello.txt")]
            assert len(found) == 1 and run_id in found[0]
            assert fs.cat(found[0]) == b"ResKD artifact"
            fs.pipe(f"{settings.bucket}/runs/kept.bin", b"\x00" * 1000)

            # S3 crashes (kill -9) and comes back with every object; MLflow still serves the artifact
            s3_pid = stack.leader("s3").pid
            stack.restart("s3")
            assert stack.leader("s3").pid != s3_pid
            fs.invalidate_cache()
            assert fs.cat(f"{settings.bucket}/runs/kept.bin") == b"\x00" * 1000
            local = client.download_artifacts(run_id, "probe/hello.txt", str(tmp_path))
            assert Path(local).read_text() == "ResKD artifact"

            # the Ray worker node crashes: all its processes go (raylet, workers); it rejoins as a new node
            worker_procs = stack.members("ray-worker")
            assert len(worker_procs) >= 2  # `ray start --block`, raylet, ...
            stack.kill("ray-worker")
            assert not stack.running("ray-worker") and stack.members("ray-worker") == []
            assert not [p for p in worker_procs if procs.alive(p)]
            stack.start("ray-worker")
            assert stack.healthy("ray-worker") and stack.healthy("ray-head")
            # the new node took the address only once the GCS had declared the killed one dead
            port = ray_ports(settings, 1)["node-manager"]
            on_port = [n for n in ray_nodes(settings) or [] if n.node_manager_port == port]
            dead, alive = [n for n in on_port if n.state != 0], [n for n in on_port if n.state == 0]
            seen = [(n.state, n.start_time_ms, n.end_time_ms) for n in on_port]
            assert len(dead) == 1 and len(alive) == 1, seen
            assert alive[0].start_time_ms >= dead[0].end_time_ms > 0

            # the CLI sees the same stack (from another process) and prints the env to source
            cli = subprocess.run(
                [str(BIN / "reskd"), "stack", "status", "--json", "--root", settings.root],
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert cli.returncode == 0, cli.stdout + cli.stderr
            assert {s["name"]: s["state"] for s in json.loads(cli.stdout)["services"]} == dict.fromkeys(
                SERVICES, "up"
            )
            cli_env = subprocess.run(
                [str(BIN / "reskd"), "stack", "status", "--env", "--root", settings.root],
                capture_output=True,
                text=True,
                timeout=120,
            ).stdout
            assert f"export MLFLOW_TRACKING_URI={env['MLFLOW_TRACKING_URI']}" in cli_env.splitlines()

            infos = [procs.proc_info(p) for p in stack.pids()]
            infos = [i for i in infos if i is not None]
            assert len(infos) >= len(SERVICES)
        finally:
            stack.down()

        # nothing of the stack is left: recorded processes gone, no process carries its id, ports free
        assert not [i.pid for i in infos if procs.alive(i)]
        assert procs.marked(stack.stack_id) == []
        ports = [
            getattr(settings, f)
            for f in ("s3_port", "prefect_port", "worker_port", "mlflow_port", "ray_dashboard_port")
        ] + list(range(settings.ray_port, settings.ray_port + 100))
        assert [p for p in ports if not port_free("127.0.0.1", p)] == []
        assert {s.state for s in Stack.open(settings.root).status()} == {"down"}
        # down keeps the data (databases, S3 journal) for the next `up`; --purge removes it
        assert (Path(settings.root) / "s3" / "journal.jsonl").stat().st_size > 0
        stack.down(purge=True)
        assert not {settings.prefect_db, settings.mlflow_db} & databases()
        assert not Path(settings.root).exists()
    finally:
        stack.down(purge=True)  # also after a failure: no databases or folders left
