"""Runs in a real MLflow store: experiments marked as training experiments, training runs created and
reopened with their role's params, and every run ended FINISHED, or FAILED with the reason."""

from __future__ import annotations

import pytest

from flows import tracking
from flows.tracking import EXPERIMENT_KIND_TAG, TRAINING_EXPERIMENT, client_for, experiment_id
from tests.fixtures.mlflow import rest


def test_experiments_are_training_experiments(tracking_uri):
    client = client_for(tracking_uri)
    new = experiment_id(client, "fresh")
    assert client.get_experiment(new).tags[EXPERIMENT_KIND_TAG] == TRAINING_EXPERIMENT
    old = client.create_experiment("made-before")  # e.g. by an older reskd: marked on first use
    assert experiment_id(client, "made-before") == old
    assert client.get_experiment(old).tags[EXPERIMENT_KIND_TAG] == TRAINING_EXPERIMENT
    chosen = client.create_experiment("chosen", tags={EXPERIMENT_KIND_TAG: "genai_development"})
    experiment_id(client, "chosen")  # a kind someone picked in the UI stays
    assert client.get_experiment(chosen).tags[EXPERIMENT_KIND_TAG] == "genai_development"


def test_a_training_run_has_a_readable_name_its_roles_params_and_is_reopened(cfg):
    run_id, reopened = tracking.start_training_run(
        cfg, "teacher", "demo-teacher-abc", tags={"reskd.stage": "teacher"}, params={"reskd.role": "teacher"}
    )
    assert not reopened
    client = client_for(cfg.tracking.uri)
    run = client.get_run(run_id)
    assert run.info.run_name == "teacher 112px"
    assert run.data.tags[tracking.RUN_NAME_TAG] == "demo-teacher-abc"
    assert run.data.params["teacher.resolution"] == "112"
    assert not [k for k in run.data.params if k.startswith(("student.", "kd."))]
    assert "config.yaml" in {f.path for f in client.list_artifacts(run_id)}
    tracking.end_run(cfg.tracking.uri, run_id, tracking.FAILED, "RuntimeError: worker died")

    again, reopened = tracking.start_training_run(cfg, "teacher", "demo-teacher-abc")
    assert (again, reopened) == (run_id, True)
    assert client.get_run(run_id).info.status == "RUNNING"


def test_the_run_context_ends_a_run_finished(cfg):
    with tracking.training_run(cfg, "student", "demo-student-1") as run:
        tracking.log_metrics(cfg.tracking.uri, run.run_id, {tracking.GFLOPS: 0.5, "note": "x"}, step=3)
    stored = client_for(cfg.tracking.uri).get_run(run.run_id)
    assert stored.info.status == "FINISHED" and stored.info.run_name == "student 56px pixel_mse"
    assert stored.data.metrics == {"gflops_per_video": 0.5}
    assert stored.data.params["kd.weight"] == "100.0"


@pytest.mark.parametrize("error", [ValueError("bad shards"), KeyboardInterrupt()])
def test_the_run_context_ends_a_run_failed_with_the_reason(cfg, error):
    with pytest.raises(type(error)), tracking.parent_run(cfg, {"prefect.deployment": "local"}) as run_id:
        raise error
    client = client_for(cfg.tracking.uri)
    run = client.get_run(run_id)
    assert run.info.status == "FAILED" and run.info.run_name == f"{cfg.name} pipeline"
    assert run.data.tags[tracking.ERROR_TAG] == f"{type(error).__name__}: {error}"
    assert {"error.txt", "config.json"} <= {f.path for f in client.list_artifacts(run_id)}
    assert "pipeline.resolutions" in run.data.params and "kd.method" not in run.data.params


def test_over_http_the_experiment_opens_on_its_training_runs(mlflow_server):
    exp_id = experiment_id(client_for(mlflow_server), "reskd-http")
    tags = rest(mlflow_server, "experiments/get", {"experiment_id": exp_id})["experiment"]["tags"]
    assert {"key": EXPERIMENT_KIND_TAG, "value": TRAINING_EXPERIMENT} in tags
