"""``reskd/full`` as users run it: a real ``prefect server start`` process, the deployments served by
``reskd serve`` (a subprocess), runs driven with the ``prefect`` CLI, tracked on a real MLflow server over
HTTP, and the registry's champion/challenger aliases read back through the MLflow client."""

from __future__ import annotations

import json
import re

import pytest
from mlflow.tracking import MlflowClient

from tests.flows.helpers import (
    PrefectServer,
    Served,
    alias_version,
    check_pipeline_run,
    model_versions,
    pipeline_runs,
    serving,
    tiny_overrides,
    wait_for,
)

pytestmark = pytest.mark.slow

DATASET = "tinydeploy"
MODEL = f"reskd-{DATASET}"


@pytest.fixture(scope="module")
def served(prefect_server: PrefectServer, tmp_path_factory) -> Served:
    """``reskd serve`` running against the server (from its own working directory)."""
    with serving(prefect_server, tmp_path_factory.mktemp("served")) as s:
        yield s


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
    # are the demo dataset (dataset_uri None) with the tiny CPU recipe (recipe None: the dataset's, or
    # demo_cpu); no schedule: the cron retrains the registered datasets (reskd-retrain/registered)
    assert full["parameters"] == {}
    props = full["parameter_openapi_schema"]["properties"]
    assert props["recipe"]["default"] is None
    assert props["dataset_uri"]["default"] is None and props["overrides"]["default"] is None
    assert "Config" in full["parameter_openapi_schema"]["definitions"]  # the config model, validated
    assert full["schedules"] == []
    retrain = prefect_server.deployment("reskd-retrain/registered")
    assert retrain["parameters"] == {}
    [schedule] = retrain["schedules"]
    assert schedule["schedule"]["cron"] == "0 3 * * 1" and schedule["active"] is False

    watch = prefect_server.deployment("reskd-landing/watch")
    assert watch["parameters"] == {"landing_uri": str(served.landing)}
    assert watch["schedules"][0]["schedule"]["interval"] == 3600

    [automation] = prefect_server.api("automations/filter", {})
    assert automation["name"] == "reskd-retrain-on-dataset-arrival" and automation["enabled"]
    assert automation["trigger"]["expect"] == ["reskd.dataset.arrived"]
    [action] = automation["actions"]
    assert action["type"] == "run-deployment" and action["deployment_id"] == served.full_id
    assert action["parameters"] == {
        "dataset_uri": "{{ event.payload.dataset_uri }}",
        "dataset_name": "{{ event.payload.name }}",
        "dataset_version": "{{ event.payload.version }}",
    }


def test_cron_schedule_can_be_switched_on(prefect_server, served):
    """The documented commands: list the schedule, resume it; the server then plans retraining runs."""
    name = "reskd-retrain/registered"
    retrain_id = prefect_server.deployment(name)["id"]
    listed = prefect_server.cli("deployment", "schedule", "ls", name)
    assert listed.returncode == 0, listed.stderr
    [schedule] = prefect_server.deployment(name)["schedules"]
    assert schedule["id"][:8] in listed.stdout
    resumed = prefect_server.cli("deployment", "schedule", "resume", name, schedule["id"])
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    try:
        assert prefect_server.deployment(name)["schedules"][0]["active"] is True

        def planned():
            runs = prefect_server.flow_runs(retrain_id)
            return [r for r in runs if r["state"]["type"] == "SCHEDULED" and r["auto_scheduled"]]

        runs = wait_for("the scheduler to plan cron runs", planned, timeout=90, every=2)
        for r in runs:  # Mondays at 03:00 UTC
            assert r["expected_start_time"][11:16] == "03:00", r["expected_start_time"]
    finally:
        paused = prefect_server.cli("deployment", "schedule", "pause", name, schedule["id"])
        assert paused.returncode == 0, paused.stdout + paused.stderr
    assert prefect_server.deployment(name)["schedules"][0]["active"] is False
    # the cron plans the retraining flow, never a bare (demo) run of reskd/full
    assert not any(r["auto_scheduled"] for r in prefect_server.flow_runs(served.full_id))


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


def test_second_registration_is_challenger_unless_it_wins(second, prefect_server, mlflow_server):
    """The rerun hits the cache and registers the same student again: evaluated beside the champion on
    the pinned test set in the same run it ties, so it is ``challenger``."""
    states = prefect_server.final_task_states(second["id"])
    assert states["extract"] == ["Cached"] and states["teacher"] == ["Cached"]
    assert states["student"] == ["Cached", "Cached"]
    client = MlflowClient(mlflow_server)
    assert [str(v.version) for v in model_versions(client, MODEL)] == ["1", "2"]
    assert alias_version(client, MODEL, "champion") == "1"
    assert alias_version(client, MODEL, "challenger") == "2"
    v1, v2 = model_versions(client, MODEL)
    assert v1.tags["reskd.test_set"] == v2.tags["reskd.test_set"]  # pinned by the first version
    assert v1.tags["reskd.test_set"].endswith("#test")
    assert client.get_registered_model(MODEL).tags["reskd.test_split"] == "test"
    [parent] = [p for p in pipeline_runs(client) if p.data.tags["prefect.flow_run_id"] == second["id"]]
    assert parent.data.tags["reskd.promotion"] == "kept"
    metrics = parent.data.metrics
    assert metrics["promotion_challenger_accuracy"] == metrics["promotion_champion_accuracy"]


def test_landing_watch_runs_on_demand(served, prefect_server, first):
    """The landing watcher served by the same process, run by hand: it scans and completes."""
    done = prefect_server.cli(
        "deployment", "run", "reskd-landing/watch", "--watch", "--watch-timeout", "300", timeout=360
    )
    assert done.returncode == 0, done.stdout + done.stderr
    [run] = [r for r in prefect_server.flow_runs(served.watch_id) if r["state"]["type"] == "COMPLETED"]
    assert run["parameters"] == {"landing_uri": str(served.landing)}
