"""The training CLI and the checks that run before any work."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from flows.cli import app
from flows.ray_train import train_on_ray
from reskd_core.checkpoint import CheckpointError, load_checkpoint
from reskd_core.config import load_config
from reskd_core.data.dataset import ClipDataset
from reskd_core.evaluate import evaluate_checkpoint
from reskd_core.models import build_model
from reskd_core.train import fit

RESKD = str(Path(sys.executable).parent / "reskd")
runner = CliRunner()


def _overrides(shards: str, tmp: Path) -> list[str]:
    return [
        f"data.shards={shards}",
        "data.num_segments=2",
        "data.batch_size=4",
        "teacher.name=tsn_tiny",
        "teacher.resolution=64",
        "student.name=tsn_tiny",
        "student.resolution=32",
        f"tracking.uri=sqlite:///{tmp / 'mlflow.db'}",
        f"storage.root={tmp / 'runs'}",
    ]


def _drop_cli_log_handlers() -> None:
    """Each `reskd` run configures logging on CliRunner's stream, which is closed after the run."""
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if type(h) is not logging.StreamHandler]


@pytest.mark.parametrize(
    ("override", "field"),
    [
        (["kd.weight=-1"], "kd.weight"),
        (["kd.method=fancy"], "kd.method"),
        (["resources.workers=0", "resources.use_gpu=true"], "resources.workers"),
        (["optim.lr=0"], "optim.lr"),
    ],
)
def test_bad_config_values_fail_before_any_work_naming_the_field(override, field, tmp_path):
    import ray

    args = ["distill", "--set", f"tracking.uri=sqlite:///{tmp_path / 'm.db'}"]
    for o in override:
        args += ["--set", o]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert field in result.output and "invalid config" in result.output
    assert not ray.is_initialized() and not (tmp_path / "m.db").exists()


def test_train_on_ray_checks_inputs_before_starting_anything(demo_shards, tmp_path):
    import ray

    cfg = load_config(None, _overrides(demo_shards, tmp_path) + ["kd.method=pixel_mse"])
    with pytest.raises(ValueError, match="teacher.checkpoint"):
        train_on_ray(cfg, "student", "no-teacher")
    with pytest.raises(ValueError, match=r"data.shards: .*nowhere"):
        train_on_ray(load_config(None, _overrides(str(tmp_path / "nowhere"), tmp_path)), "teacher", "x")
    with pytest.raises(ValueError, match="resources.workers must be >= 1"):
        train_on_ray(
            load_config(None, _overrides(demo_shards, tmp_path) + ["resources.workers=0"]), "teacher", "x"
        )
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x80\x02not really")
    with pytest.raises(CheckpointError, match=r"junk\.pt is corrupt"):
        train_on_ray(cfg, "student", "bad-teacher", teacher_checkpoint=str(junk))
    with pytest.raises(ValueError, match="data: split 'holdout'"):
        train_on_ray(
            load_config(None, _overrides(demo_shards, tmp_path) + ["data.val_split=holdout"]), "teacher", "x"
        )
    assert not ray.is_initialized() and not (tmp_path / "mlflow.db").exists()


def test_evaluate_a_corrupt_checkpoint_gives_a_clear_error(demo_shards, tmp_path):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(os.urandom(256))
    result = runner.invoke(app, ["evaluate", str(bad), "--set", f"data.shards={demo_shards}"])
    assert result.exit_code == 2
    assert "broken.pt" in result.output and "corrupt" in result.output
    with pytest.raises(CheckpointError, match="broken.pt"):
        evaluate_checkpoint(str(bad), demo_shards, "val", load_config(None, []))


def test_fit_on_demo_shards_then_evaluate_with_the_cli(demo_shards, tmp_path):
    """The real loader feeding fit directly (no Ray), then `reskd evaluate` on the checkpoint."""
    cfg = load_config(
        None, _overrides(demo_shards, tmp_path) + ["schedule.teacher_epochs=2", "optim.lr_batch=4"]
    )
    train = ClipDataset(demo_shards, "train", cfg.data, 64, train=True)
    val = ClipDataset(demo_shards, "val", cfg.data, 64, train=False)
    saved = {}

    def keep(epoch, metrics, ckpt_dir):
        (tmp_path / "ck.pt").write_bytes((Path(ckpt_dir) / "checkpoint.pt").read_bytes())
        saved[epoch] = metrics

    model = build_model("tsn_tiny", num_classes=train.num_classes, num_frames=2)
    fit(
        cfg,
        "teacher",
        model,
        torch.utils.data.DataLoader(train, batch_size=4),
        torch.utils.data.DataLoader(val, batch_size=4),
        num_classes=4,
        class_names=train.class_names,
        on_epoch_end=keep,
    )
    assert sorted(saved) == [1, 2] and saved[2]["val_n"] == 8
    result = runner.invoke(
        app, ["evaluate", str(tmp_path / "ck.pt"), "--json", "--set", f"data.shards={demo_shards}"]
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output.strip().splitlines()[-1])
    assert metrics["n"] == 8 and metrics["top1"] == pytest.approx(saved[2]["val_top1"])
    assert metrics["role"] == "teacher" and metrics["resolution"] == 64
    assert load_checkpoint(str(tmp_path / "ck.pt"))["class_names"] == train.class_names


@pytest.mark.slow
def test_cli_on_a_local_ray_with_checkpoints_on_s3(demo_shards, s3_bucket, s3_env, tmp_path):
    """`reskd train-teacher` (in-process local Ray, checkpoints on the moto S3 server, SQLite tracking),
    then `reskd evaluate` of the S3 checkpoint and `reskd export` of the MLflow model URI."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | s3_env | {"PYTHONUNBUFFERED": "1"}
    sets = []
    for o in _overrides(demo_shards, tmp_path) + [
        f"storage.root=s3://{s3_bucket}/runs",
        "resources.workers=1",
        "resources.ray_address=null",
        "schedule.teacher_epochs=2",
        "optim.lr_batch=4",
    ]:
        sets += ["--set", o]

    outputs = []

    def reskd(*args: str) -> dict:
        done = subprocess.run(
            [RESKD, *args], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=400
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
        outputs.append(done.stdout + done.stderr)
        return json.loads(done.stdout.strip().splitlines()[-1])

    teacher = reskd("train-teacher", *sets, "--json", "--run-name", "cli-teacher")
    # the worker's own epoch lines reach the console; Ray Train's per-report INFO lines and the placement
    # group cleaner's warnings (no state API without a dashboard) do not (flows/ray_logging.py)
    assert "teacher epoch 1/2" in outputs[0], outputs[0]
    for noise in ("Reporting training result", "State API may be temporarily unavailable"):
        assert noise not in outputs[0], outputs[0]
    assert teacher["best_checkpoint"].startswith(f"s3://{s3_bucket}/runs/cli-teacher/checkpoint_")
    assert teacher["epochs_done"] == 2 and teacher["resolution"] == 64 and "top1" in teacher["metrics"]

    def in_process(*args: str) -> dict:  # no Ray needed: save a process start
        _drop_cli_log_handlers()
        result = runner.invoke(app, list(args))
        assert result.exit_code == 0, result.output
        return json.loads(result.output.strip().splitlines()[-1])

    metrics = in_process("evaluate", teacher["best_checkpoint"], *sets, "--json")
    assert metrics["resolution"] == 64 and metrics["n"] == 8 and metrics["role"] == "teacher"
    assert metrics["top1"] == pytest.approx(teacher["metrics"]["top1"])
    out = str(tmp_path / "x")
    exported = in_process("export", f"runs:/{teacher['mlflow_run_id']}/model", *sets, "--out", out, "--json")
    assert exported["ok"] and exported["mlflow_run_id"] == teacher["mlflow_run_id"]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    names = {f.path for f in client.list_artifacts(teacher["mlflow_run_id"], "export")}
    assert {"export/teacher_64px.onnx", "export/teacher_64px.pt", "export/report.json"} <= names
