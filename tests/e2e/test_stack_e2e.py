"""The production topology end to end (``make test-e2e``): the local stack up (PostgreSQL databases, S3 with
its journal, Prefect server + process worker, MLflow server on PostgreSQL with S3 artifacts, Ray head +
worker node), demo videos in the stack's bucket, ``reskd deploy``, ``prefect deployment run reskd/full``
twice: once undisturbed and once while the Ray worker node is killed under the teacher's running Ray Train
worker and the S3 server restarted during a student. Both complete, the killed teacher went on from its
checkpoint, and the disturbed run lost nothing: the same shards, checkpoints and registered versions."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.fixtures.mlflow import rest
from tests.flows.helpers import BIN, http_json, tiny_overrides, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(3600)]

# Enough epochs that a fault lands mid-training with checkpoints behind it; same for both runs.
TEACHER_EPOCHS = 8
EPOCHS = [
    f"schedule.teacher_epochs={TEACHER_EPOCHS}",
    "schedule.student_epochs=2",
    "resources.max_failures=3",
]
WATCH_TIMEOUT = 1500


@dataclass
class Run:
    name: str
    dataset_uri: str
    root: str  # s3://bucket/e2e-<name>: this run's storage
    flow_run_id: str = ""
    seconds: float = 0.0
    log: Path | None = None
    drills: list[str] = field(default_factory=list)


def start_run(env: dict, run: Run, cwd: Path) -> subprocess.Popen:
    """``prefect deployment run reskd/full --param ... --watch`` in the background, output to ``run.log``."""
    overrides = tiny_overrides(run.root, f"e2e-{run.name}", *EPOCHS)
    run.log = cwd / f"deployment-run-{run.name}.log"
    cmd = [
        str(BIN / "prefect"),
        "deployment",
        "run",
        "reskd/full",
        "--param",
        f"dataset_uri={run.dataset_uri}",
        "--param",
        f"overrides={json.dumps(overrides)}",
        "--watch",
        "--watch-timeout",
        str(WATCH_TIMEOUT),
    ]
    fh = open(run.log, "wb")  # noqa: SIM115 - the CLI's output, read by the test
    return subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=cwd)


def flow_run_id(run: Run) -> str:
    def read():
        m = re.search(r"UUID: ([0-9a-f-]{36})", run.log.read_text(errors="replace"))
        return m.group(1) if m else None

    return wait_for("the flow run's id in the CLI output", read, timeout=120)


def finish(proc: subprocess.Popen, run: Run, t0: float) -> None:
    rc = proc.wait(WATCH_TIMEOUT + 120)
    run.seconds = time.monotonic() - t0
    out = run.log.read_text(errors="replace")
    assert rc == 0 and "Flow run finished successfully in 'Completed'" in out, out[-4000:]


def running(proc: subprocess.Popen, run: Run) -> None:
    """Fail at once, with the CLI's output, when the watched flow run ended before the drill's next step."""
    if proc.poll() is not None:
        out = run.log.read_text(errors="replace")
        raise AssertionError(f"flow run {run.name} ended early (rc {proc.returncode}):\n{out[-4000:]}")


def keep_logs(stack, dest: Path) -> str:
    """Copy the stack's service logs and Ray's session logs to ``dest`` (the stack folder is purged at the
    end) and return the tails that tell a hang or a crash apart."""
    from reskd_stack.services import short_ray_temp

    shutil.copytree(stack.log_dir, dest / "services", dirs_exist_ok=True)
    ray_logs = short_ray_temp(stack.root, stack.stack_id) / "session_latest" / "logs"
    if ray_logs.is_dir():
        shutil.copytree(ray_logs, dest / "ray", dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.sock"))
    tails = []
    for name in ("prefect-worker", "ray-worker", "ray-head"):
        lines = (dest / "services" / f"{name}.log").read_text(errors="replace").splitlines()
        tails.append(f"--- {name}.log (last 60 of {len(lines)} lines)\n" + "\n".join(lines[-60:]))
    controllers = sorted((dest / "ray").glob("train/*controller*"), key=lambda f: f.stat().st_mtime)
    for path in controllers[-2:]:
        lines = path.read_text(errors="replace").splitlines()
        tails.append(f"--- ray {path.name} (last 40 lines)\n" + "\n".join(lines[-40:]))
    return f"logs kept in {dest}\n" + "\n".join(tails)


def task_states(api: str, flow_run_id: str) -> dict[str, list[str]]:
    runs = http_json(f"{api}/task_runs/filter", {"flow_runs": {"id": {"any_": [flow_run_id]}}, "limit": 200})
    out: dict[str, list[str]] = {}
    for r in runs:
        out.setdefault(r["name"].rsplit("-", 1)[0], []).append(r["state"]["name"] if r["state"] else "?")
    return out


def ray_train_workers(stack, service: str) -> list[int]:
    """pids of Ray Train worker processes started by Ray node ``service`` (ray-head or ray-worker)."""
    out = []
    for p in stack.members(service):
        try:
            cmd = Path(f"/proc/{p.pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        if cmd.startswith("ray::RayTrainWorker"):
            out.append(p.pid)
    return out


def checkpoints(fs, run: Run) -> dict[str, list[dict]]:
    """Ray Train checkpoints of a run's jobs: ``{job kind: [{"epoch":..}, ...]}``; jobs are named
    ``<config name>-<kind>-<key>``, kinds ``teacher``, ``student-pixel_mse-32``, ..."""
    from reskd_core.checkpoint import load_checkpoint

    out: dict[str, list[dict]] = {}
    base = run.root.removeprefix("s3://") + "/runs"
    for path in sorted(fs.glob(f"{base}/*/checkpoint_*/checkpoint.pt")):
        rel = path[len(base) + 1 :]
        kind = rel.split("/")[0].split("-", 1)[1].rsplit("-", 1)[0]
        state = load_checkpoint("s3://" + path)
        out.setdefault(kind, []).append({"epoch": state["epoch"], "path": rel})
    return out


def teacher_starts(url: str, run: Run) -> list[float]:
    """The epochs the run's teacher job (re)started from: one ``start_epoch`` value per worker start."""
    teacher = mlflow_record(url, run)["children"]["teacher"]["info"]["run_id"]
    history = rest(url, "metrics/get-history", {"run_id": teacher, "metric_key": "start_epoch"}).get(
        "metrics", []
    )
    return sorted(m["value"] for m in history)


def shards(fs, run: Run) -> dict:
    base = run.root.removeprefix("s3://") + "/runs/shards"
    [folder] = fs.ls(base)
    manifest = json.loads(fs.cat(f"{folder}/manifest.json"))
    files = [p for p in fs.find(folder) if p.endswith(".parquet")]
    # contents, not names: a shard's name digests its videos' modification times too, and the two runs'
    # copies of the dataset were uploaded at different moments
    listed = sorted((split, sh["sha256"]) for split, v in manifest["splits"].items() for sh in v["shards"])
    return {
        "shard_files": len(files),
        "shards": listed,
        "splits": {k: v["videos"] for k, v in manifest["splits"].items()},
    }


def mlflow_record(url: str, run: Run) -> dict:
    """The run's MLflow parent and children through the REST API."""
    exp = rest(url, "experiments/get-by-name", {"experiment_name": "reskd"})["experiment"]
    body = {
        "experiment_ids": [exp["experiment_id"]],
        "filter": f"tags.`prefect.flow_run_id` = '{run.flow_run_id}'",
    }
    [parent] = rest(url, "runs/search", body=body)["runs"]
    pid = parent["info"]["run_id"]
    body = {"experiment_ids": [exp["experiment_id"]], "filter": f"tags.`mlflow.parentRunId` = '{pid}'"}
    children = rest(url, "runs/search", body=body).get("runs", [])
    tags = {t["key"]: t["value"] for t in parent["data"]["tags"]}

    def label(child: dict) -> str:
        t = {x["key"]: x["value"] for x in child["data"]["tags"]}
        return (
            t["reskd.stage"] if t["reskd.stage"] != "student" else f"{t['reskd.kd']}@{t['reskd.resolution']}"
        )

    return {
        "experiment_id": exp["experiment_id"],
        "parent": parent,
        "tags": tags,
        "children": {label(c): c for c in children},
    }


def test_stack_end_to_end_with_faults(local_stack, stack_env, tmp_path):
    import s3fs

    from reskd_core.data.demo import make_demo_dataset

    stack = local_stack
    bucket = stack.settings.bucket
    api, mlflow_url = stack_env["PREFECT_API_URL"], stack_env["MLFLOW_TRACKING_URI"]
    env = {**__import__("os").environ, "PYTHONUNBUFFERED": "1"}
    fs = s3fs.S3FileSystem(skip_instance_cache=True)  # the env names this test's S3 server

    # demo videos stored in the stack's bucket, one copy per run (a rerun of one dataset would be cached)
    data = make_demo_dataset(tmp_path / "demo", classes=4, videos_per_class=6, size=64, frames=8)
    runs = [
        Run(name, f"s3://{bucket}/datasets/{name}", f"s3://{bucket}/e2e-{name}")
        for name in ("calm", "faults")
    ]
    for run in runs:
        fs.put(str(data) + "/", run.dataset_uri.removeprefix("s3://") + "/", recursive=True)
        assert len(fs.ls(run.dataset_uri + "/videos")) == 24

    deployed = subprocess.run(
        [
            str(BIN / "reskd"),
            "deploy",
            "--pool",
            stack.settings.pool,
            "--landing-uri",
            f"s3://{bucket}/landing",
            "--watch-interval",
            "3600",
        ],
        env=env,
        cwd=stack.settings.workdir,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    assert http_json(f"{api}/deployments/name/reskd/full")["work_pool_name"] == stack.settings.pool

    # 1. undisturbed
    calm, faults = runs
    t0 = time.monotonic()
    proc = start_run(env, calm, tmp_path)
    calm.flow_run_id = flow_run_id(calm)
    finish(proc, calm, t0)

    # 2. the same pipeline on the copy, with a Ray node crash during training and an S3 crash later
    t0 = time.monotonic()
    proc = start_run(env, faults, tmp_path)
    try:
        faults.flow_run_id = flow_run_id(faults)
        teacher_dir = faults.root.removeprefix("s3://") + "/runs"

        def teacher_checkpoint_registered():
            """Ray's controller names a checkpoint in its snapshot (an uploaded one may not be registered
            yet, and a restart goes on from the last registered one)."""
            running(proc, faults)
            fs.invalidate_cache()
            try:
                snaps = fs.glob(f"{teacher_dir}/*-teacher-*/checkpoint_manager_snapshot.json")
                return snaps and json.loads(fs.cat(snaps[0])).get("latest_checkpoint_result")
            except (OSError, ValueError):  # being written
                return None

        wait_for("the teacher's first registered checkpoint", teacher_checkpoint_registered, 900, every=0.3)
        on_worker = ray_train_workers(stack, "ray-worker")
        on_head = ray_train_workers(stack, "ray-head")
        assert "Running" in task_states(api, faults.flow_run_id).get("teacher", []), "teacher not running"
        # the head schedules no work (local_stack), so the drill takes the training worker down with it
        assert len(on_worker) == 1 and not on_head, (on_worker, on_head)
        faults.drills.append("ray-worker node killed under the teacher's Ray Train worker")
        stack.kill("ray-worker")
        time.sleep(3)
        stack.start("ray-worker")

        def student_running():
            running(proc, faults)
            return "Running" in task_states(api, faults.flow_run_id).get("student", [])

        wait_for("a student task running", student_running, timeout=900, every=1)
        time.sleep(5)  # into the student's training: shard reads, checkpoint uploads, MLflow artifacts
        stack.restart("s3")
        faults.drills.append("s3 restarted (kill -9) during a student stage")
        finish(proc, faults, t0)
    except Exception as e:
        raise AssertionError(f"faulted run: {e}\n{keep_logs(stack, tmp_path / 'stack-logs')}") from e
    finally:
        if proc.poll() is None:
            proc.kill()
    print(f"e2e: calm run {calm.seconds:.0f}s, faulted run {faults.seconds:.0f}s; drills: {faults.drills}")

    # both runs in MLflow (REST): parent FINISHED with its children; artifacts in the S3 bucket
    fs.invalidate_cache()
    artifacts = fs.find(f"{bucket}/mlflow")
    for run in runs:
        rec = mlflow_record(mlflow_url, run)
        assert rec["parent"]["info"]["status"] == "FINISHED", rec["tags"].get("reskd.error")
        assert rec["tags"]["prefect.deployment"] == "full"
        assert rec["tags"]["reskd.dataset_uri"] == run.dataset_uri
        assert set(rec["children"]) == {"extract", "teacher", "pixel_mse@32", "none@32"}, sorted(
            rec["children"]
        )
        assert {c["info"]["status"] for c in rec["children"].values()} == {"FINISHED"}
        pid = rec["parent"]["info"]["run_id"]
        for name in ("summary.md", "summary.json", "accuracy_vs_gflops.png"):
            assert f"{bucket}/mlflow/{rec['experiment_id']}/{pid}/artifacts/{name}" in artifacts, name
        teacher_id = rec["children"]["teacher"]["info"]["run_id"]
        assert any(
            p.startswith(f"{bucket}/mlflow/{rec['experiment_id']}/{teacher_id}/artifacts/checkpoint/")
            for p in artifacts
        )
        model = f"reskd-e2e-{run.name}"
        alias = rest(mlflow_url, "registered-models/alias", {"name": model, "alias": "champion"})
        assert alias["model_version"]["version"] == "1"

    # nothing lost: the faulted run has what the undisturbed one has
    assert shards(fs, faults) == shards(fs, calm)
    calm_ckpts, fault_ckpts = checkpoints(fs, calm), checkpoints(fs, faults)
    assert set(calm_ckpts) == {"teacher", "student-pixel_mse-32", "student-none-32"}, calm_ckpts
    assert {k: len(v) for k, v in fault_ckpts.items()} == {k: len(v) for k, v in calm_ckpts.items()}, (
        fault_ckpts,
        calm_ckpts,
    )
    for kind, ckpts in fault_ckpts.items():  # each job trained to its last epoch
        assert max(c["epoch"] for c in ckpts) == max(c["epoch"] for c in calm_ckpts[kind]), kind
    # the faulted teacher restarted once, from a checkpoint mid-run (not from scratch); the calm one did not
    assert teacher_starts(mlflow_url, calm) == [0]
    starts = teacher_starts(mlflow_url, faults)
    assert len(starts) == 2 and starts[0] == 0 and 1 <= starts[1] < TEACHER_EPOCHS, starts
    for run in runs:
        versions = rest(mlflow_url, "model-versions/search", {"filter": f"name = 'reskd-e2e-{run.name}'"})
        assert [v["version"] for v in versions["model_versions"]] == ["1"]
    states = task_states(api, faults.flow_run_id)
    assert Counter(s for v in states.values() for s in v)["Completed"] >= 8, states

    # the stack goes down and leaves nothing running
    pids = stack.pids()
    assert pids
    stack.down()
    assert stack.pids() == []
    assert {s.state for s in stack.status()} == {"down"}
