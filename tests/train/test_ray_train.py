"""Training jobs on real Ray workers: a 2-node cluster from ``ray start`` (head + worker), an MLflow server
process checked through its REST API, demo shards made by the real extractor."""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from ray.train.v2._internal.constants import CHECKPOINT_MANAGER_SNAPSHOT_FILENAME

from flows.ray_train import train_on_ray
from reskd_core.checkpoint import load_checkpoint
from reskd_core.config import load_config
from tests.fixtures.mlflow import rest

pytestmark = pytest.mark.slow


def _cfg(shards: str, storage: Path, tracking: str, address: str | None, *extra: str):
    return load_config(
        None,
        [
            f"data.shards={shards}",
            "data.num_segments=2",
            "data.batch_size=4",
            "teacher.name=tsn_tiny",
            "teacher.resolution=64",
            "teacher.dropout=0",
            "student.name=tsn_tiny",
            "student.resolution=32",
            "student.dropout=0",
            "optim.lr=0.02",
            "optim.lr_batch=8",
            "schedule.warmup_epochs=0.5",
            "schedule.teacher_epochs=4",
            "schedule.student_epochs=3",
            "resources.workers=2",
            "resources.cpus_per_worker=1",
            "resources.max_failures=2",
            f"tracking.uri={tracking}",
            "tracking.experiment=reskd-tests",
            f"storage.root={storage}",
            f"resources.ray_address={address}",
            *extra,
        ],
    )


def _run(url: str, run_id: str) -> dict:
    return rest(url, "runs/get", {"run_id": run_id})["run"]


def _history(url: str, run_id: str, key: str) -> list[dict]:
    return rest(url, "metrics/get-history", {"run_id": run_id, "metric_key": key}).get("metrics", [])


def _artifacts(url: str, run_id: str, path: str = "") -> set[str]:
    files = rest(url, "artifacts/list", {"run_id": run_id, "path": path}).get("files", [])
    return {f["path"] for f in files}


def _latest_checkpoint(snapshot: Path) -> str | None:
    try:
        return (json.loads(snapshot.read_text()).get("latest_checkpoint_result") or {}).get(
            "checkpoint_dir_name"
        )
    except (OSError, ValueError):  # being written
        return None


@pytest.fixture(scope="module")
def teacher(ray_cluster, mlflow_server, demo_shards, tmp_path_factory):
    storage = tmp_path_factory.mktemp("ray-storage")
    cfg = _cfg(demo_shards, storage, mlflow_server, ray_cluster.address)
    result = train_on_ray(cfg, "teacher", "teacher-cluster", tags={"reskd.stage": "teacher"})
    return cfg, result


def test_teacher_on_two_ray_workers_is_tracked_in_the_mlflow_server(teacher, mlflow_server):
    cfg, result = teacher
    assert result.epochs_done == 4 and not result.resumed and result.role == "teacher"
    losses = [h["train_loss"] for h in result.history]
    # 4 epochs of 24 letter videos do not reliably lower the loss (learning is tested in
    # tests/data/test_demo.py); here: every epoch trained and reported a finite loss
    assert len(losses) == 4 and all(math.isfinite(x) and x > 0 for x in losses), losses
    state = load_checkpoint(result.best_checkpoint)
    assert state["role"] == "teacher" and state["mlflow_run_id"] == result.mlflow_run_id
    assert set(result.metrics) >= {"top1", "top5"} and result.gflops > 0 and result.videos_per_s > 0
    assert result.metrics["n"] == 8  # each rank evaluated half of the 8 val videos: gathered, none twice

    run = _run(mlflow_server, result.mlflow_run_id)
    assert run["info"]["status"] == "FINISHED"
    params = {p["key"]: p["value"] for p in run["data"]["params"]}
    assert params["teacher.name"] == "tsn_tiny" and params["resources.workers"] == "2"
    assert params["reskd.role"] == "teacher"
    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    assert tags["reskd.stage"] == "teacher" and tags["reskd.checkpoint"] == result.best_checkpoint
    metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
    logged = {"val_top1", "val_top5", "gflops_per_video", "videos_per_s", "train_loss", "best_val_top1"}
    assert logged <= set(metrics)
    assert metrics["train_kd_share"] == 0 and metrics["train_kd_weight"] == 0  # a teacher learns without KD
    best_epoch = load_checkpoint(result.best_checkpoint)["epoch"]
    assert metrics["best_epoch"] == best_epoch and metrics["best_val_top1"] == result.metrics["top1"]
    assert [m["step"] for m in _history(mlflow_server, result.mlflow_run_id, "train_loss")] == [1, 2, 3, 4]
    assert {"config.yaml", "checkpoint", "plots", "eval"} <= _artifacts(mlflow_server, result.mlflow_run_id)
    assert {"plots/confusion_matrix.png", "plots/learning_curves.png"} <= _artifacts(
        mlflow_server, result.mlflow_run_id, "plots"
    )

    import mlflow
    import numpy as np

    mlflow.set_tracking_uri(mlflow_server)
    model = mlflow.pyfunc.load_model(result.model_uri)
    assert model.metadata.signature is not None
    out = model.predict(np.zeros((3, 2, 3, 64, 64), np.float32))  # batch 3: the batch dimension is dynamic
    assert np.asarray(out).shape == (3, 4)


def test_rerun_of_a_finished_run_name_resumes_instead_of_training_again(teacher, mlflow_server):
    cfg, first = teacher
    run_dir = Path(cfg.storage.root) / "teacher-cluster"
    registered = sorted(p.name for p in run_dir.glob("checkpoint_*") if p.is_dir())
    assert registered
    # what a worker killed between its upload and its report leaves: a checkpoint Ray never registered
    stray = run_dir / "checkpoint_2000-01-01_00-00-00.000000"
    stray.mkdir()
    (stray / "checkpoint.pt").write_bytes(b"partial")
    again = train_on_ray(cfg, "teacher", "teacher-cluster")
    assert not stray.exists()
    assert sorted(p.name for p in run_dir.glob("checkpoint_*") if p.is_dir()) == registered
    assert again.resumed and again.epochs_done == 4
    assert again.mlflow_run_id == first.mlflow_run_id and again.best_checkpoint == first.best_checkpoint
    # nothing was trained again: still one value per epoch, and the second start began after epoch 4
    assert len(_history(mlflow_server, first.mlflow_run_id, "train_loss")) == 4
    assert sorted(m["value"] for m in _history(mlflow_server, first.mlflow_run_id, "start_epoch")) == [0, 4]


def test_student_distils_from_the_teacher_and_records_it(teacher, mlflow_server):
    cfg, t = teacher
    cfg = cfg.model_copy(update={"kd": cfg.kd.model_copy(update={"method": "pixel_mse"})})
    s = train_on_ray(cfg, "student", "student-cluster", teacher_checkpoint=t.best_checkpoint)
    assert s.epochs_done == 3 and s.resolution == 32 and s.teacher_run_id == t.mlflow_run_id
    assert s.history[-1]["train_loss"] < s.history[0]["train_loss"]
    assert all(h["train_kd"] > 0 for h in s.history)
    run = _run(mlflow_server, s.mlflow_run_id)
    tags = {x["key"]: x["value"] for x in run["data"]["tags"]}
    params = {x["key"]: x["value"] for x in run["data"]["params"]}
    assert tags["reskd.teacher_run_id"] == t.mlflow_run_id == params["reskd.teacher_run_id"]
    assert tags["reskd.kd"] == "pixel_mse" and params["student.resolution"] == "32"
    # lambda is the method's default (kd.weight null in the config): the run logs the value in use
    assert params["kd.weight"] == "100.0"  # the lambda in use, not the config's null
    metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
    assert metrics["train_kd_weight"] == 100.0 and 0 < metrics["train_kd_share"] < 1
    assert [m["step"] for m in _history(mlflow_server, s.mlflow_run_id, "train_kd_share")] == [1, 2, 3]
    assert load_checkpoint(s.best_checkpoint)["teacher_checkpoint"] == t.best_checkpoint


def test_a_killed_worker_is_replaced_and_the_run_finishes_from_its_checkpoint(
    ray_cluster, mlflow_server, demo_shards, tmp_path
):
    cfg = _cfg(demo_shards, tmp_path, mlflow_server, ray_cluster.address, "schedule.teacher_epochs=6")
    out: dict = {}

    def run():
        try:
            out["result"] = train_on_ray(cfg, "teacher", "teacher-killed")
        except BaseException as e:  # reported by the main thread
            out["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    # wait until Ray's controller has registered a checkpoint (its snapshot names one), then kill a worker
    snapshot = tmp_path / "teacher-killed" / CHECKPOINT_MANAGER_SNAPSHOT_FILENAME
    deadline = time.monotonic() + 240
    while not (snapshot.exists() and _latest_checkpoint(snapshot)):
        assert thread.is_alive(), out
        assert time.monotonic() < deadline, "no checkpoint was registered"
        time.sleep(0.1)
    workers = ray_cluster.worker_pids()
    assert len(workers) == 2, workers
    os.kill(workers[0], signal.SIGKILL)
    thread.join(timeout=400)
    assert not thread.is_alive() and "error" not in out, out
    result = out["result"]
    assert result.epochs_done == 6
    starts = sorted(m["value"] for m in _history(mlflow_server, result.mlflow_run_id, "start_epoch"))
    assert len(starts) == 2 and starts[0] == 0 and 1 <= starts[1] < 6, starts  # restarted mid-run, not at 0
    epochs = [m["step"] for m in _history(mlflow_server, result.mlflow_run_id, "epoch")]
    assert max(epochs) == 6 and workers[0] not in ray_cluster.worker_pids()
    # storage holds exactly the checkpoints Ray registered: none left over from the killed attempt
    tracked = {c["checkpoint_dir_name"] for c in json.loads(snapshot.read_text())["checkpoint_results"]}
    assert {p.name for p in snapshot.parent.glob("checkpoint_*") if p.is_dir()} == tracked
    found = rest(
        mlflow_server,
        "runs/search",
        body={
            "experiment_ids": [_run(mlflow_server, result.mlflow_run_id)["info"]["experiment_id"]],
            "filter": "tags.`reskd.run_name` = 'teacher-killed'",
        },
    )
    assert len(found["runs"]) == 1  # one MLflow run across the failure
