"""Helpers for the pipeline-service tests: the tiny pipeline settings, a real ``prefect server start``
process, its REST API and the ``prefect`` CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.processes import free_port, stop, wait_http

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]
# Variables that would point a client somewhere else than the test says (a developer's shell, the CI).
FOREIGN = ("PREFECT_API_URL", "PREFECT_PROFILE", "MLFLOW_TRACKING_URI", "RAY_ADDRESS", "RESKD_STORAGE_ROOT")


def tiny_overrides(root: str | Path, dataset: str = "demo", *extra: str) -> list[str]:
    """``key=value`` overrides of the demo recipe that make one pipeline run take a minute or two on 2 cores:
    4 classes x 6 videos of 64 px and 8 frames, a 64 px teacher, one 32 px student resolution with KD plus
    its baseline, one epoch each. Local paths under ``root``; ``root`` may be an ``s3://`` prefix for the
    storage root (then the demo folder is not used)."""
    root = str(root)
    return [
        "demo.classes=4",
        "demo.videos_per_class=6",
        "demo.size=64",
        "demo.frames=8",
        f"demo.root={root}/demo",
        "extract.short_side=64",
        "extract.workers=1",
        "data.num_segments=4",
        "data.batch_size=8",
        "data.loader_workers=0",
        "teacher.name=tsn_tiny",
        "teacher.resolution=64",
        "student.name=tsn_tiny",
        "schedule.teacher_epochs=1",
        "schedule.student_epochs=1",
        "schedule.warmup_epochs=0",
        "resources.workers=1",
        "resources.cpus_per_worker=1",
        "pipeline.resolutions=[32]",
        "pipeline.kd_methods=[pixel_mse]",
        "pipeline.baseline=true",
        f"pipeline.dataset={dataset}",
        f"storage.root={root}/runs",
        *extra,
    ]


def client_env(**extra: str) -> dict[str, str]:
    """os.environ without the variables that would point clients elsewhere, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN}
    return env | {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PYTHONUNBUFFERED": "1"} | extra


def wait_for(what: str, fn: Callable[[], Any], timeout: float = 60.0, every: float = 0.5) -> Any:
    """Poll ``fn`` until it returns something truthy; ``TimeoutError`` naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what} (last: {value!r})")
        time.sleep(every)


def http_json(url: str, body: dict | None = None, method: str | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        url,
        data=data,
        method=method or ("POST" if data else "GET"),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        raw = r.read()
    return json.loads(raw) if raw else None


@dataclass
class PrefectServer:
    """A ``prefect server start`` process (SQLite under ``root``) and how clients reach it."""

    api_url: str
    root: Path
    proc: subprocess.Popen

    def env(self, **extra: str) -> dict[str, str]:
        """A client environment: this server's API, a private PREFECT_HOME (never ~/.prefect)."""
        return client_env(PREFECT_API_URL=self.api_url, PREFECT_HOME=str(self.root / "client"), **extra)

    def cli(self, *args: str, timeout: float = 180, cwd: str | Path | None = None, **env: str):
        """Run ``prefect <args>`` against this server; returns the CompletedProcess (text)."""
        return subprocess.run(
            [str(BIN / "prefect"), *args],
            env=self.env(**env),
            cwd=cwd or self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def api(self, path: str, body: dict | None = None, method: str | None = None) -> Any:
        return http_json(f"{self.api_url}/{path.lstrip('/')}", body, method)

    def deployment(self, name: str) -> dict | None:
        try:
            return self.api(f"deployments/name/{name}")
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            raise

    def flow_runs(self, deployment_id: str | None = None) -> list[dict]:
        body: dict = {"limit": 200}
        if deployment_id:
            body["deployments"] = {"id": {"any_": [deployment_id]}}
        return self.api("flow_runs/filter", body)

    def task_runs(self, flow_run_id: str) -> list[dict]:
        return self.api("task_runs/filter", {"flow_runs": {"id": {"any_": [flow_run_id]}}, "limit": 200})

    def final_task_states(self, flow_run_id: str, timeout: float = 60) -> dict[str, list[str]]:
        """``{task name: [state names]}`` of a finished flow run's task runs, once all are final
        (task states reach the server as events, a moment after the flow run ends)."""

        def read():
            runs = self.task_runs(flow_run_id)
            if runs and all(r["state"] and r["state"]["type"] in FINAL for r in runs):
                return runs
            return None

        runs = wait_for(f"final task states of flow run {flow_run_id}", read, timeout)
        out: dict[str, list[str]] = {}
        for r in runs:
            out.setdefault(r["name"].rsplit("-", 1)[0], []).append(r["state"]["name"])
        return out


FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def spawn(cmd: list[str], log: Path, env: dict[str, str], cwd: str | Path) -> subprocess.Popen:
    """Start ``cmd`` with exactly ``env`` in its own process group (``stop`` ends it), output to ``log``."""
    fh = open(log, "ab")  # noqa: SIM115 - the child's output
    return subprocess.Popen(
        cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True
    )


def start_prefect_server(root: Path, timeout: float = 180) -> PrefectServer:
    """``prefect server start`` on a free port of 127.0.0.1 with its SQLite database under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = client_env(
        PREFECT_HOME=str(root / "server"),
        PREFECT_API_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{root / 'prefect.db'}",
        # plan scheduled runs every few seconds rather than every minute: a schedule switched on in a test
        PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="5",
    )
    log = root / "server.log"
    proc = spawn(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui"],
        log,
        env,
        root,
    )
    api = f"http://127.0.0.1:{port}/api"
    try:
        wait_http(api + "/health", timeout=timeout, proc=proc, log=log)
    except BaseException:
        stop(proc)
        raise
    return PrefectServer(api, root, proc)


@dataclass
class Served:
    root: Path
    landing: Path
    full_id: str
    watch_id: str


@contextmanager
def serving(server: PrefectServer, root: Path, **env: str) -> Iterator[Served]:
    """``reskd serve`` (a subprocess, working directory ``root``, landing folder ``root/landing``) until
    the block ends; its log must hold no traceback."""
    landing = root / "landing"
    landing.mkdir(exist_ok=True)
    cmd = [str(BIN / "reskd"), "serve", "--landing-uri", str(landing), "--watch-interval", "3600"]
    proc = spawn(cmd, root / "serve.log", server.env(**env), root)
    try:

        def ready():
            if proc.poll() is not None:
                raise RuntimeError(f"reskd serve exited:\n{(root / 'serve.log').read_text()[-3000:]}")
            full, watch = server.deployment("reskd/full"), server.deployment("reskd-landing/watch")
            return (full, watch) if full and watch else None

        full, watch = wait_for("reskd serve to register its deployments", ready, timeout=180)
        yield Served(root, landing, full["id"], watch["id"])
    finally:
        stop(proc, timeout=30)
    log = (root / "serve.log").read_text(errors="replace")
    # Ray Train's placement-group cleaner thread fails when other Ray instances run on the machine (a
    # shared test host): its traceback is Ray's, not the service's
    ours = [ln for ln in log.splitlines() if "Traceback" in ln and "(PlacementGroupCleaner" not in ln]
    assert not ours, log[-3000:]


# ---------------------------------------------------------------- what a pipeline run left in MLflow


def pipeline_runs(client, experiment: str = "reskd") -> list:
    """The parent runs (``reskd.kind=pipeline``) of ``experiment``, newest first."""
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    return client.search_runs(
        [exp.experiment_id], "tags.`reskd.kind` = 'pipeline'", order_by=["attributes.start_time DESC"]
    )


def child_runs(client, parent) -> list:
    """The runs nested under ``parent`` (``mlflow.parentRunId``)."""
    return client.search_runs(
        [parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'", max_results=200
    )


def check_pipeline_run(client, parent, flow_run_id: str, deployment: str, dataset_uri: str | None = None):
    """Assert the MLflow record of one completed tiny pipeline run; returns its child runs by label.

    Parent: FINISHED, tagged with the flow run and deployment, the config as params, the summary
    (table, JSON, plot). Children: extract, teacher, one student per KD variant at 32 px, each FINISHED
    with its evaluation metrics; the students name their teacher's run.
    """
    tags = parent.data.tags
    assert parent.info.status == "FINISHED", tags.get("reskd.error")
    assert tags["prefect.flow_run_id"] == flow_run_id
    assert tags["prefect.deployment"] == deployment
    if dataset_uri is not None:
        assert tags["reskd.dataset_uri"] == dataset_uri
    assert parent.data.params["pipeline.resolutions"] == "[32]"
    assert parent.data.params["schedule.teacher_epochs"] == "1"
    files = {f.path for f in client.list_artifacts(parent.info.run_id)}
    assert {"summary.md", "summary.json", "accuracy_vs_gflops.png", "config.json"} <= files, files

    kids = child_runs(client, parent)
    by_label: dict[str, object] = {}
    for run in kids:
        t = run.data.tags
        label = (
            t["reskd.stage"] if t["reskd.stage"] != "student" else f"{t['reskd.kd']}@{t['reskd.resolution']}"
        )
        assert label not in by_label, f"two child runs for {label}"
        by_label[label] = run
        assert run.info.status == "FINISHED", (label, t.get("reskd.error"))
    assert set(by_label) == {"extract", "teacher", "pixel_mse@32", "none@32"}, sorted(by_label)
    for label in ("teacher", "pixel_mse@32", "none@32"):
        metrics = by_label[label].data.metrics
        # the demo recipe holds out a test split: the best-val checkpoint is reported on it
        assert {"test_top1", "gflops_per_video", "best_val_top1", "best_epoch"} <= set(metrics), (
            label,
            sorted(metrics),
        )
        assert 0.0 <= metrics["test_top1"] <= 100.0
        assert by_label[label].data.tags["reskd.report_split"] == "test"
    from reskd_core.config import load_config, recipe_path
    from reskd_core.losses import kd_weight

    recipe_lambda = kd_weight("pixel_mse", load_config(recipe_path("demo_cpu")).kd.weight)
    assert by_label["pixel_mse@32"].data.params["kd.weight"] == str(recipe_lambda)
    assert by_label["none@32"].data.metrics["train_kd_share"] == 0
    assert 0 < by_label["pixel_mse@32"].data.metrics["train_kd_share"] < 1
    assert by_label["extract"].data.metrics["videos"] == 24
    teacher_id = by_label["teacher"].info.run_id
    for label in ("pixel_mse@32", "none@32"):
        assert by_label[label].data.tags["reskd.teacher_run_id"] == teacher_id
    # fewer pixels, fewer FLOPs: the students cost less than the teacher
    assert (
        by_label["pixel_mse@32"].data.metrics["gflops_per_video"]
        < by_label["teacher"].data.metrics["gflops_per_video"]
    )
    return by_label


def model_versions(client, name: str) -> list:
    """Versions of registered model ``name`` (none when it is not registered), oldest first."""
    return sorted(client.search_model_versions(f"name = '{name}'"), key=lambda v: int(v.version))


def alias_version(client, name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None
