"""``reskd/full`` as users run it: a real ``prefect server start`` process, the deployments served by
``reskd serve`` (a subprocess), runs driven with the ``prefect`` CLI, tracked on a real MLflow server over
HTTP, and the registry's champion/challenger aliases read back through the MLflow client."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.flows.helpers import (
    BIN,
    PrefectServer,
    alias_version,
    check_pipeline_run,
    model_versions,
    pipeline_runs,
    spawn,
    tiny_overrides,
    wait_for,
)
from tests.support.processes import stop

pytestmark = pytest.mark.slow

DATASET = "tinydeploy"
MODEL = f"reskd-{DATASET}"


@dataclass
class Served:
    root: Path
    landing: Path
    full_id: str
    watch_id: str


@pytest.fixture(scope="module")
def served(prefect_server: PrefectServer, tmp_path_factory):
    """``reskd serve`` running against the server (from its own working directory)."""
    root = tmp_path_factory.mktemp("served")
    landing = root / "landing"
    landing.mkdir()
    cmd = [str(BIN / "reskd"), "serve", "--landing-uri", str(landing), "--watch-interval", "3600"]
    proc = spawn(cmd, root / "serve.log", prefect_server.env(), root)
    try:

        def ready():
            if proc.poll() is not None:
                raise RuntimeError(f"reskd serve exited:\n{(root / 'serve.log').read_text()[-3000:]}")
            full, watch = (
                prefect_server.deployment("reskd/full"),
                prefect_server.deployment("reskd-landing/watch"),
            )
            return (full, watch) if full and watch else None

        full, watch = wait_for("reskd serve to register its deployments", ready, timeout=180)
        yield Served(root, landing, full["id"], watch["id"])
    finally:
        stop(proc, timeout=30)
    log = (root / "serve.log").read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]


def deployment_run(server: PrefectServer, served: Served, *params: str, timeout: int = 900) -> dict:
    """``prefect deployment run reskd/full --param ... --watch``; the flow run as the API returns it."""
    args = ["deployment", "run", "reskd/full", "--watch", "--watch-timeout", str(timeout)]
    for p in params:
        args += ["--param", p]
    done = server.cli(*args, timeout=timeout + 60, cwd=served.root)
    match = re.search(r"UUID: ([0-9a-f-]{36})", done.stdout)
    assert match, done.stdout + done.stderr
    run = server.api(f"flow_runs/{match.group(1)}")
    assert done.returncode == 0, (run["state"], done.stdout[-3000:], done.stderr[-3000:])
    assert "Flow run finished successfully in 'Completed'" in done.stdout
    return run


@pytest.fixture(scope="module")
def first(prefect_server, served, mlflow_server) -> dict:
    return deployment_run(
        prefect_server,
        served,
        f"overrides={json.dumps(tiny_overrides(served.root, DATASET))}",
        f"tracking_uri={mlflow_server}",
    )


@pytest.fixture(scope="module")
def second(first, prefect_server, served, mlflow_server) -> dict:
    """The same data and parameters again."""
    return deployment_run(
        prefect_server,
        served,
        f"overrides={json.dumps(tiny_overrides(served.root, DATASET))}",
        f"tracking_uri={mlflow_server}",
    )


def test_deployments_are_declared(prefect_server, served):
    full = prefect_server.deployment("reskd/full")
    # no parameters stored: a bare `prefect deployment run reskd/full` takes the flow's defaults, which
    # are the demo dataset (dataset_uri None) with the tiny CPU recipe
    assert full["parameters"] == {}
    props = full["parameter_openapi_schema"]["properties"]
    assert props["recipe"]["default"] == "demo_cpu"
    assert props["dataset_uri"]["default"] is None and props["overrides"]["default"] is None
    assert "Config" in full["parameter_openapi_schema"]["definitions"]  # the config model, validated
    [schedule] = full["schedules"]
    assert schedule["schedule"]["cron"] == "0 3 * * 1" and schedule["active"] is False

    watch = prefect_server.deployment("reskd-landing/watch")
    assert watch["parameters"] == {"landing_uri": str(served.landing)}
    assert watch["schedules"][0]["schedule"]["interval"] == 3600

    [automation] = prefect_server.api("automations/filter", {})
    assert automation["name"] == "reskd-retrain-on-dataset-arrival" and automation["enabled"]
    assert automation["trigger"]["expect"] == ["reskd.dataset.arrived"]
    [action] = automation["actions"]
    assert action["type"] == "run-deployment" and action["deployment_id"] == served.full_id
    assert action["parameters"] == {"dataset_uri": "{{ event.payload.dataset_uri }}"}


def test_cron_schedule_can_be_switched_on(prefect_server, served):
    """The documented commands: list the schedule, resume it; the server then plans retraining runs."""
    listed = prefect_server.cli("deployment", "schedule", "ls", "reskd/full")
    assert listed.returncode == 0, listed.stderr
    [schedule] = prefect_server.deployment("reskd/full")["schedules"]
    assert schedule["id"][:8] in listed.stdout
    resumed = prefect_server.cli("deployment", "schedule", "resume", "reskd/full", schedule["id"])
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    try:
        assert prefect_server.deployment("reskd/full")["schedules"][0]["active"] is True

        def planned():
            runs = prefect_server.flow_runs(served.full_id)
            return [r for r in runs if r["state"]["type"] == "SCHEDULED" and r["auto_scheduled"]]

        runs = wait_for("the scheduler to plan cron runs", planned, timeout=90, every=2)
        for r in runs:  # Mondays at 03:00 UTC
            assert r["expected_start_time"][11:16] == "03:00", r["expected_start_time"]
    finally:
        paused = prefect_server.cli("deployment", "schedule", "pause", "reskd/full", schedule["id"])
        assert paused.returncode == 0, paused.stdout + paused.stderr
    assert prefect_server.deployment("reskd/full")["schedules"][0]["active"] is False


def test_deployment_run_completes(first, served, prefect_server, mlflow_server):
    assert first["state"]["type"] == "COMPLETED"
    assert first["deployment_id"] == served.full_id
    assert first["parameters"]["tracking_uri"] == mlflow_server
    states = prefect_server.final_task_states(first["id"])
    assert states["extract"] == ["Completed"] and states["teacher"] == ["Completed"]
    assert states["student"] == ["Completed", "Completed"]
    assert states["summary"] == ["Completed"]


def test_mlflow_server_has_parent_child_runs_and_champion(first, served, mlflow_server):
    client = MlflowClient(mlflow_server)
    [parent] = [p for p in pipeline_runs(client) if p.data.tags["prefect.flow_run_id"] == first["id"]]
    assert parent.data.tags["reskd.dataset"] == DATASET
    check_pipeline_run(client, parent, first["id"], "full", str(served.root / "demo"))
    versions = model_versions(client, MODEL)
    assert [str(v.version) for v in versions] == ["1"]
    assert alias_version(client, MODEL, "champion") == "1"
    selected = parent.data.tags["reskd.selected"]
    assert versions[0].tags["reskd.kd"] + "@" + versions[0].tags["reskd.resolution"] == selected


def test_second_registration_is_challenger_unless_it_wins(
    second, prefect_server, mlflow_server, served, restore_mlflow_uri
):
    """The rerun hits the cache, registers the same student again: not better, so ``challenger``. A
    student that beats the champion on the same split takes ``champion``; a worse one stays challenger."""
    from flows.full import resolve_config
    from flows.tracking.registry import register_student
    from reskd_core.report import ResultRow

    states = prefect_server.final_task_states(second["id"])
    assert states["extract"] == ["Cached"] and states["teacher"] == ["Cached"]
    assert states["student"] == ["Cached", "Cached"]
    client = MlflowClient(mlflow_server)
    assert [str(v.version) for v in model_versions(client, MODEL)] == ["1", "2"]
    assert alias_version(client, MODEL, "champion") == "1"
    assert alias_version(client, MODEL, "challenger") == "2"

    v2 = client.get_model_version(MODEL, "2")
    cfg = resolve_config(None, "demo_cpu", tiny_overrides(served.root, DATASET), mlflow_server)
    fingerprint, split = v2.tags["reskd.eval_key"].rsplit(":", 1)
    assert split == cfg.data.test_split  # the split the accuracy is reported on, not the one choosing epochs
    champion_acc = float(client.get_model_version(MODEL, "1").tags["reskd.accuracy"])

    def row(accuracy: float) -> ResultRow:
        return ResultRow(
            role="student",
            model="tsn_tiny",
            resolution=int(v2.tags["reskd.resolution"]),
            kd=v2.tags["reskd.kd"],
            accuracy=accuracy,
            gflops=float(v2.tags["reskd.gflops"]),
            run_id=v2.run_id,
            checkpoint=v2.tags["reskd.checkpoint"],
            extra={"model_uri": v2.source},
            split=split,
        )

    worse = register_student(cfg, row(champion_acc - 1.0), fingerprint, "unused: the champion's tag is used")
    assert worse["alias"] == "challenger" and worse["version"] == "3"
    better = register_student(cfg, row(champion_acc + 1.0), fingerprint, "unused")
    assert better["alias"] == "champion" and better["version"] == "4"
    assert f"vs champion v1 {champion_acc:.2f}" in better["reason"]
    assert alias_version(client, MODEL, "champion") == "4"
    assert alias_version(client, MODEL, "challenger") == "3"


def test_landing_watch_runs_on_demand(served, prefect_server, first):
    """The landing watcher served by the same process, run by hand: it scans and completes."""
    done = prefect_server.cli(
        "deployment", "run", "reskd-landing/watch", "--watch", "--watch-timeout", "300", timeout=360
    )
    assert done.returncode == 0, done.stdout + done.stderr
    [run] = [r for r in prefect_server.flow_runs(served.watch_id) if r["state"]["type"] == "COMPLETED"]
    assert run["parameters"] == {"landing_uri": str(served.landing)}
