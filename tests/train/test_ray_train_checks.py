"""The Ray driver checks the job before any work: a bad input fails in one line, no Ray is started and no
MLflow run is created (checked through the REST API of a real MLflow server)."""

from __future__ import annotations

import time
import urllib.error
import uuid

import pytest

from flows.ray_train import train_on_ray
from reskd_core.checkpoint import build_state, save_checkpoint
from reskd_core.config import load_config
from reskd_core.job import model_for
from tests.fixtures.mlflow import rest


def _cfg(shards: str, tracking: str, experiment: str, tmp, *extra: str):
    return load_config(
        None,
        [
            f"data.shards={shards}",
            "data.num_segments=2",
            "teacher.name=tsn_tiny",
            "teacher.resolution=64",
            "student.name=tsn_tiny",
            "student.resolution=32",
            f"tracking.uri={tracking}",
            f"tracking.experiment={experiment}",
            f"storage.root={tmp / 'runs'}",
            "resources.ray_address=null",
            *extra,
        ],
    )


def _wide_teacher(path, cfg, num_classes: int) -> str:
    """A teacher checkpoint with 256 feature channels (width 32), where tsn_tiny students have 128."""
    cfg = cfg.model_copy(update={"teacher": cfg.teacher.model_copy(update={"width": 32})})
    state = build_state(
        role="teacher",
        model=model_for(cfg, "teacher", num_classes),
        config=cfg,
        epoch=1,
        num_classes=num_classes,
    )
    return save_checkpoint(state, str(path))


def _runs_named(url: str, run_name: str) -> list[dict]:
    experiments = rest(url, "experiments/search", body={"max_results": 1000}).get("experiments", [])
    if not experiments:
        return []
    found = rest(
        url,
        "runs/search",
        body={
            "experiment_ids": [e["experiment_id"] for e in experiments],
            "filter": f"tags.`reskd.run_name` = '{run_name}'",
        },
    )
    return found.get("runs", [])


def _experiment_exists(url: str, name: str) -> bool:
    try:
        rest(url, "experiments/get-by-name", {"experiment_name": name})
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return False
        raise
    return True


def _wide_teacher_for(tmp, cfg) -> list[str]:
    return ["kd.method=pixel_mse", f"teacher.checkpoint={_wide_teacher(tmp / 'wide.pt', cfg, 4)}"]


@pytest.mark.parametrize(
    ("role", "extra", "field"),
    [
        ("teacher", lambda tmp, cfg: ["teacher.resolution=16"], "teacher.resolution 16 is too small"),
        (
            "student",
            lambda tmp, cfg: ["kd.method=none", "student.resolution=16"],
            "student.resolution 16 is too small",
        ),
        ("student", _wide_teacher_for, "kd.method=pixel_mse needs equal feature channels"),
        ("teacher", lambda tmp, cfg: [f"data.shards={tmp / 'nowhere'}"], "data.shards: "),
        ("student", lambda tmp, cfg: ["kd.method=pixel_mse"], "teacher.checkpoint"),
    ],
)
def test_a_bad_job_fails_before_ray_or_mlflow_start(demo_shards, mlflow_server, tmp_path, role, extra, field):
    import ray

    experiment = f"checks-{uuid.uuid4().hex[:8]}"
    base = _cfg(demo_shards, mlflow_server, experiment, tmp_path)
    cfg = _cfg(demo_shards, mlflow_server, experiment, tmp_path, *extra(tmp_path, base))
    ray_before = ray.is_initialized()
    start = time.monotonic()
    with pytest.raises(ValueError) as e:
        train_on_ray(cfg, role, f"{experiment}-run")
    assert field in str(e.value) and "\n" not in str(e.value), str(e.value)
    assert time.monotonic() - start < 15  # no Ray start, no run: seconds, not the ~20 s of a job start
    assert ray.is_initialized() == ray_before
    assert not _experiment_exists(mlflow_server, experiment)
    assert _runs_named(mlflow_server, f"{experiment}-run") == []
    assert not (tmp_path / "runs").exists()
