"""The ``reskd`` flow end to end in Prefect's test harness: generated demo videos, real extraction, Ray Train
jobs on a local Ray, MLflow in a SQLite file; then the cached rerun and failing stages."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from flows.full import full
from tests.flows.helpers import (
    alias_version,
    check_pipeline_run,
    child_runs,
    model_versions,
    pipeline_runs,
    tiny_overrides,
    wait_for,
)

MODEL = "reskd-tinyflow"


@dataclass
class FlowRun:
    state: object
    flow_run_id: str
    seconds: float

    @property
    def result(self) -> dict:
        return self.state.result()


@pytest.fixture(scope="module")
def harness(tmp_path_factory, local_ray_cleanup, restore_mlflow_uri):
    """Prefect's test harness (a temporary server on SQLite) with task results under a tmp folder."""
    from prefect.settings import PREFECT_RESULTS_LOCAL_STORAGE_PATH, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    results = tmp_path_factory.mktemp("prefect-results")
    with (
        prefect_test_harness(server_startup_timeout=180),
        temporary_settings({PREFECT_RESULTS_LOCAL_STORAGE_PATH: results}),
    ):
        yield


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("pipeline")


@pytest.fixture(scope="module")
def tracking(workdir) -> str:
    return f"sqlite:///{workdir}/mlflow.db"


def run_flow(tracking: str, overrides: list[str], dataset_uri: str | None = None) -> FlowRun:
    t0 = time.monotonic()
    state = full(dataset_uri=dataset_uri, tracking_uri=tracking, overrides=overrides, return_state=True)
    return FlowRun(state, str(state.state_details.flow_run_id), time.monotonic() - t0)


@pytest.fixture(scope="module")
def first_run(harness, workdir, tracking) -> FlowRun:
    run = run_flow(tracking, tiny_overrides(workdir, "tinyflow"))
    assert run.state.is_completed(), run.state.message
    return run


@pytest.fixture(scope="module")
def second_run(first_run, workdir, tracking) -> FlowRun:
    """The same data and config again, handed over as a built ``Config`` (what ``reskd run`` does): the
    stages' cache keys are the same as from the recipe and overrides."""
    from flows.run_config import build_config

    cfg = build_config("demo_cpu", tiny_overrides(workdir, "tinyflow"), {"tracking.uri": tracking})
    t0 = time.monotonic()
    state = full(config=cfg, return_state=True)
    run = FlowRun(state, str(state.state_details.flow_run_id), time.monotonic() - t0)
    assert run.state.is_completed(), run.state.message
    return run


def task_states(flow_run_id: str, allow_none: bool = False) -> dict[str, list[str]]:
    """``{task name: [state names]}`` read back from the Prefect API once every task run is final
    (task states reach the API as events, a moment after the flow returns). ``allow_none``: a flow run
    that may have run no task; its (empty) answer is read after a short grace period."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    def read():
        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )
        if runs and all(r.state is not None and r.state.is_final() for r in runs):
            return runs
        return None

    if allow_none:
        time.sleep(3)
        with get_client(sync_client=True) as client:
            if not client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            ):
                return {}

    out: dict[str, list[str]] = {}
    for r in wait_for("final task states", read, timeout=60):
        out.setdefault(r.name.rsplit("-", 1)[0], []).append(r.state.name)
    return out


def read_flow_run(flow_run_id: str):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id)


@pytest.mark.slow
def test_flow_completes_on_demo_data(first_run, workdir):
    states = task_states(first_run.flow_run_id)
    assert states == {
        "demo-data": ["Completed"],
        "extract": ["Completed"],
        "teacher": ["Completed"],
        "student": ["Completed", "Completed"],
        "evaluate": ["Completed"] * 3,
        "summary": ["Completed"],
    }
    # the demo dataset was generated where the config said, with the tiny settings
    assert len((workdir / "demo" / "annotations.txt").read_text().split()) == 2 * 4 * 6
    result = first_run.result
    rows = result["summary"]["rows"]
    assert [(r["role"], r["resolution"], r["kd"]) for r in rows] == [
        ("teacher", 64, "none"),
        ("student", 32, "pixel_mse"),
        ("student", 32, "none"),
    ]
    assert result["summary"]["selected"]["role"] == "student"
    assert "| tsn_tiny | teacher | 64 |" in result["table"]


@pytest.mark.slow
def test_mlflow_parent_and_child_runs(first_run, workdir, tracking):
    client = MlflowClient(tracking)
    parents = pipeline_runs(client)
    assert len(parents) == 1
    children = check_pipeline_run(
        client, parents[0], first_run.flow_run_id, "local", str((workdir / "demo").resolve())
    )
    summary = json.loads(
        Path(client.download_artifacts(parents[0].info.run_id, "summary.json", str(workdir))).read_text()
    )
    selected = summary["selected"]
    assert parents[0].data.tags["reskd.selected"] == f"{selected['kd']}@{selected['resolution']}"
    assert selected["run_id"] == children[parents[0].data.tags["reskd.selected"]].info.run_id
    png = Path(client.download_artifacts(parents[0].info.run_id, "accuracy_vs_gflops.png", str(workdir)))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


@pytest.mark.slow
def test_summary_artifact_in_prefect(first_run):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[first_run.flow_run_id]))
        )
    by_key = {a.key: a for a in artifacts}
    assert sorted(by_key) == ["reskd-promotion-tinyflow", "reskd-summary-tinyflow"]
    assert {a.type for a in artifacts} == {"markdown"}
    assert first_run.result["table"] in by_key["reskd-summary-tinyflow"].data
    assert "no champion yet" in by_key["reskd-promotion-tinyflow"].data  # the first version


@pytest.mark.slow
def test_best_student_registered_as_champion(first_run, tracking):
    client = MlflowClient(tracking)
    versions = model_versions(client, MODEL)
    assert [str(v.version) for v in versions] == ["1"]
    assert alias_version(client, MODEL, "champion") == "1"
    assert alias_version(client, MODEL, "challenger") is None
    selected = first_run.result["summary"]["selected"]
    assert versions[0].run_id == selected["run_id"]
    assert versions[0].tags["reskd.accuracy"] == f"{selected['accuracy']:.4f}"
    registered = dict(first_run.result["registered"])
    # the first version pins its test split as the dataset's fixed test set
    assert registered.pop("test_set").endswith("#test"), first_run.result["registered"]
    assert registered == {"name": MODEL, "version": "1", "alias": "champion", "reason": "no champion yet"}


def test_registered_champion_labels_videos(first_run, workdir, tracking, monkeypatch):
    """The registered version is the video model: MLflow loads it and it labels an mp4; ``reskd predict``
    with the ``models:/`` URI prints the labels."""
    import mlflow
    import pandas as pd
    from typer.testing import CliRunner

    from flows.cli import app

    video = sorted((workdir / "demo" / "videos").glob("*.mp4"))[0]
    mlflow.set_tracking_uri(tracking)
    model = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion")
    [row] = model.predict(pd.DataFrame({"uri": [str(video)]})).to_dict("records")
    assert row["label"].startswith("letter-") and len(row["labels"]) == 4 and row["error"] is None
    monkeypatch.chdir(video.parent)  # a short name: the table is as wide as the terminal
    args = ["--model", f"models:/{MODEL}@champion", "--top-k", "1", "--set", f"tracking.uri={tracking}"]
    result = CliRunner().invoke(app, ["predict", video.name, *args])
    assert result.exit_code == 0, result.output
    assert video.name in result.output and f"{row['label']} {row['score']:.3f}" in result.output


@pytest.mark.slow
def test_rerun_skips_extraction_and_training(first_run, second_run, tracking):
    states = task_states(second_run.flow_run_id)
    assert states["extract"] == ["Cached"]
    assert states["teacher"] == ["Cached"]
    assert states["student"] == ["Cached", "Cached"]
    assert states["evaluate"] == ["Completed"] * 3  # evaluation is not cached: it is cheap
    client = MlflowClient(tracking)
    parents = pipeline_runs(client)
    assert len(parents) == 2 and parents[0].data.tags["prefect.flow_run_id"] == second_run.flow_run_id
    # no new training or extraction runs: only the first pipeline run has children
    assert child_runs(client, parents[0]) == []
    exp = parents[0].info.experiment_id
    assert len(client.search_runs([exp], "tags.`reskd.stage` = 'teacher'")) == 1
    assert len(client.search_runs([exp], "tags.`reskd.stage` = 'extract'")) == 1
    # the same model, evaluated the same: registered again, but it does not beat the champion
    assert second_run.result["summary"]["rows"] == first_run.result["summary"]["rows"]
    assert second_run.result["registered"]["alias"] == "challenger"
    assert alias_version(client, MODEL, "champion") == "1"
    assert alias_version(client, MODEL, "challenger") == "2"
    assert second_run.seconds < first_run.seconds / 2, (second_run.seconds, first_run.seconds)


@pytest.mark.slow
def test_reskd_run_builds_the_config_once_and_hits_the_cache(second_run, workdir, tracking):
    """``reskd run`` builds the config (recipe, ``--set``, ``--tracking-uri``) and passes it to the flow:
    the same settings as the runs before, so every stage is cached."""
    import logging

    from typer.testing import CliRunner

    from flows.cli import app

    args = ["run", "--tracking-uri", tracking]
    for o in tiny_overrides(workdir, "tinyflow"):
        args += ["--set", o]
    before = len(pipeline_runs(MlflowClient(tracking)))
    out = CliRunner().invoke(app, args)
    root = logging.getLogger()  # the command configured logging on CliRunner's stream, closed by now
    root.handlers[:] = [h for h in root.handlers if type(h) is not logging.StreamHandler]
    assert out.exit_code == 0, out.output
    assert "| tsn_tiny | teacher | 64 |" in out.output
    parents = pipeline_runs(MlflowClient(tracking))
    assert len(parents) == before + 1
    newest = parents[0]
    states = task_states(newest.data.tags["prefect.flow_run_id"])
    assert states["extract"] == ["Cached"] and states["teacher"] == ["Cached"]
    assert states["student"] == ["Cached", "Cached"]


@pytest.mark.slow
def test_a_cached_stage_whose_checkpoint_is_gone_runs_again(first_run, second_run, workdir, tracking):
    """A deleted runs folder must not break the next run: the cached teacher names a checkpoint that is
    gone, so the teacher trains again (and the students after it), and the flow completes."""
    import shutil

    teacher_dirs = [d for d in workdir.rglob("*-teacher-*") if d.is_dir() and any(d.glob("checkpoint_*"))]
    assert teacher_dirs
    for d in teacher_dirs:
        shutil.rmtree(d)
    run = run_flow(tracking, tiny_overrides(workdir, "tinyflow"))
    assert run.state.is_completed(), run.state.message
    states = task_states(run.flow_run_id)
    assert states["extract"] == ["Cached"]  # its shards are still there
    assert sorted(states["teacher"]) == ["Cached", "Completed"]  # the cached answer, then the rerun
    assert "Completed" in states["student"]
    for d in teacher_dirs:
        assert any(d.glob("checkpoint_*/checkpoint.pt")), d


def _failed_run_checks(run: FlowRun, tracking: str, dataset_uri: str, reason: str) -> None:
    """Failed in Prefect with ``reason`` in the state message; the MLflow parent run FAILED with the
    reason as its ``reskd.error`` tag; no model version registered."""
    assert run.state.is_failed(), run.state
    assert reason in run.state.message
    stored = read_flow_run(run.flow_run_id)
    assert stored.state.type.value == "FAILED" and reason in stored.state.message
    client = MlflowClient(tracking)
    parent = next(p for p in pipeline_runs(client) if p.data.tags["prefect.flow_run_id"] == run.flow_run_id)
    assert parent.info.status == "FAILED"
    assert reason in parent.data.tags["reskd.error"]
    assert parent.data.tags["reskd.dataset_uri"] == dataset_uri
    assert model_versions(client, MODEL) == []


@pytest.fixture(scope="module")
def failing_tracking(workdir) -> str:
    """Its own MLflow store: no version of the model may appear in it."""
    return f"sqlite:///{workdir}/mlflow-failures.db"


def test_bad_dataset_uri_fails_with_the_reason(harness, workdir, failing_tracking):
    missing = str(workdir / "no-such-dataset")
    run = run_flow(failing_tracking, tiny_overrides(workdir, "tinyflow"), dataset_uri=missing)
    _failed_run_checks(run, failing_tracking, missing, f"dataset {missing} does not exist")
    assert task_states(run.flow_run_id, allow_none=True) == {}  # it failed before any stage ran


def test_dataset_of_corrupt_videos_fails_extraction(harness, workdir, failing_tracking):
    from reskd_core.data.demo import make_demo_dataset

    data = make_demo_dataset(workdir / "corrupt", classes=2, videos_per_class=2, size=32, frames=4)
    for video in (data / "videos").iterdir():
        video.write_bytes(b"this is not an mp4 file" * 50)
    run = run_flow(failing_tracking, tiny_overrides(workdir, "tinyflow"), dataset_uri=str(data))
    _failed_run_checks(run, failing_tracking, str(data), "skipped 4 of 4 videos")
    states = task_states(run.flow_run_id)
    assert states["extract"] == ["Failed"]  # a data error is not retried
    assert "teacher" not in states
    client = MlflowClient(failing_tracking)
    extract_runs = client.search_runs(
        [client.get_experiment_by_name("reskd").experiment_id], "tags.`reskd.stage` = 'extract'"
    )
    assert [r.info.status for r in extract_runs] == ["FAILED"]
    files = {f.path for f in client.list_artifacts(extract_runs[0].info.run_id)}
    assert "errors.json" in files
