"""The pipeline's evaluate stage: the best checkpoint (its epoch chosen on val) is evaluated on the test
split when the shards have one, else on val with a warning, and its MLflow run says which. Real shards,
a real checkpoint from ``fit``, MLflow in a SQLite file."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch

from flows.tracking import REPORT_SPLIT_TAG, client_for, evaluate_and_log
from reskd_core.data.dataset import ClipDataset
from reskd_core.evaluate import evaluate_checkpoint
from reskd_core.models import build_model
from reskd_core.train import fit
from tests.support.demo_config import demo_shards_config, new_run


@pytest.fixture(scope="module")
def trained(demo_shards, tmp_path_factory):
    """``(cfg, checkpoint, val metrics)``: a teacher trained for one epoch on the demo shards."""
    tmp = tmp_path_factory.mktemp("report-split")
    cfg = demo_shards_config(
        demo_shards, tmp, "data.batch_size=4", "schedule.teacher_epochs=1", "optim.lr_batch=4"
    )
    train = ClipDataset(demo_shards, "train", cfg.data, 64, train=True)
    val = ClipDataset(demo_shards, "val", cfg.data, 64, train=False)
    saved: dict = {}

    def keep(epoch, metrics, ckpt_dir):
        shutil.copy(Path(ckpt_dir) / "checkpoint.pt", tmp / "checkpoint.pt")
        saved.update(metrics)

    fit(
        cfg,
        "teacher",
        build_model("tsn_tiny", num_classes=train.num_classes, num_frames=2),
        torch.utils.data.DataLoader(train, batch_size=4),
        torch.utils.data.DataLoader(val, batch_size=4),
        num_classes=train.num_classes,
        class_names=train.class_names,
        on_epoch_end=keep,
    )
    return cfg, str(tmp / "checkpoint.pt"), saved


def _evaluate(cfg, checkpoint: str, shards: str):
    """``evaluate_and_log`` into a fresh MLflow run; returns the row and the run as stored."""
    run_id = new_run(cfg)
    trained = {"best_checkpoint": checkpoint, "mlflow_run_id": run_id, "videos_per_s": 1.0}
    row = evaluate_and_log(cfg, trained, "teacher", shards)
    return row, client_for(cfg.tracking.uri).get_run(run_id)


def test_the_best_checkpoint_is_reported_on_the_test_split(trained, demo_shards):
    cfg, checkpoint, _ = trained
    row, run = _evaluate(cfg, checkpoint, demo_shards)
    assert row.split == "test" and row.extra["metrics"]["n"] == 8
    on_test = evaluate_checkpoint(checkpoint, demo_shards, "test", cfg)
    assert row.accuracy == pytest.approx(on_test["top1"])
    metrics = run.data.metrics
    assert metrics["test_top1"] == pytest.approx(row.accuracy) and metrics["test_n"] == 8
    assert {"test_top5", "gflops_per_video", "resolution_px", "best_epoch"} <= set(metrics)
    assert not any(k.startswith("val_") or k == "eval_top1" for k in metrics)  # named by the split
    assert run.data.tags[REPORT_SPLIT_TAG] == "test"


def test_shards_without_a_test_split_report_on_val_with_a_warning(trained, demo_shards, tmp_path, caplog):
    cfg, checkpoint, at_best_epoch = trained
    shards = tmp_path / "shards"
    shutil.copytree(demo_shards, shards)
    manifest = json.loads((shards / "manifest.json").read_text())
    del manifest["splits"]["test"]
    (shards / "manifest.json").write_text(json.dumps(manifest))
    with caplog.at_level(logging.WARNING, logger="reskd_core.evaluate"):
        row, run = _evaluate(cfg, checkpoint, str(shards))
    assert "no split 'test'" in caplog.text
    assert row.split == "val" and row.accuracy == pytest.approx(at_best_epoch["val_top1"])
    # the best epoch's model on the split that chose it: best_val_*, never the per-epoch val_* curves
    assert run.data.metrics["best_val_top1"] == pytest.approx(row.accuracy)
    assert not any(k.startswith(("test_", "val_")) for k in run.data.metrics)
    assert run.data.tags[REPORT_SPLIT_TAG] == "val"
