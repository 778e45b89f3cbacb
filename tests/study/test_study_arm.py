"""One study arm (``flows.study_arm.train_arm``, called as a plain function): the epoch is chosen on val,
that epoch's model is reported on test, and the arm's MLflow run records both. Real demo shards, MLflow
in a SQLite file."""

from __future__ import annotations

import pytest
import torch

from flows.study_arm import train_arm
from flows.tracking import REPORT_SPLIT_TAG, client_for
from reskd_core.data.dataset import ClipDataset
from reskd_core.evaluate import evaluate_model
from reskd_core.job import model_for
from reskd_core.study.arms import Arm, arm_config, check_arms
from reskd_core.study.batches import EpochBatches, loader_batches
from reskd_core.study.stats import ACCURACY
from tests.support.demo_config import LOAD, demo_shards_config, new_run


@pytest.fixture(scope="module")
def study(demo_shards, tmp_path_factory):
    """The config, a parent run and the batches of every split, as the flow makes them."""
    tmp = tmp_path_factory.mktemp("arm")
    cfg = demo_shards_config(
        demo_shards,
        tmp,
        "num_classes=4",
        "data.batch_size=8",
        "student.name=tsn_tiny",
        "schedule.teacher_epochs=3",
        "schedule.student_epochs=2",
        "schedule.warmup_epochs=0",
        "optim.lr_batch=8",
    )
    parent = new_run(cfg)

    def batches(split: str) -> list[dict]:
        return loader_batches(ClipDataset(demo_shards, split, cfg.data, LOAD, train=False), 8)(0)

    train = ClipDataset(demo_shards, "train", cfg.data, LOAD, train=True, seed=0)
    epochs = EpochBatches(loader_batches(train, 8), -(-len(train) // 8))
    return cfg, parent, epochs, batches("val"), batches("test")


def _run(cfg, arm, study, test_batches, split, teacher=None, teacher_state=None):
    _, parent, epochs, val, _ = study
    shape = check_arms([arm] + ([teacher] if teacher else []), 2, 4, LOAD)[arm.key]
    out = train_arm.fn(
        cfg, arm, 0, shape, epochs, val, test_batches, split, teacher, teacher_state, parent, LOAD
    )
    return out, client_for(cfg.tracking.uri).get_run(out["run_id"])


def _top1(cfg, arm, state, batches) -> float:
    model = model_for(arm_config(cfg, arm, 0, None), arm.role, 4)
    model.load_state_dict(state)
    metrics = evaluate_model(
        model, batches, device=torch.device("cpu"), resolution=arm.resolution, multi_label=False
    )
    return metrics["top1"]


def test_an_arm_is_reported_on_test_at_its_best_val_epoch(study):
    cfg, _, _, val, test = study
    teacher = Arm("tsn_tiny", LOAD, role="teacher")
    out, run = _run(cfg, teacher, study, test, "test")
    metrics = run.data.metrics
    assert {ACCURACY, "final_val_top1", "best_val_top1", "best_epoch", "test_n"} <= set(metrics)
    assert out["accuracy"] == metrics[ACCURACY] and metrics["test_n"] == 8
    assert run.data.tags[REPORT_SPLIT_TAG] == "test"
    # the weights handed on (and reported) are the best val epoch's, not the last epoch's
    assert _top1(cfg, teacher, out["state"], val) == pytest.approx(metrics["best_val_top1"])
    assert _top1(cfg, teacher, out["state"], test) == pytest.approx(metrics[ACCURACY])
    assert 1 <= metrics["best_epoch"] <= 3 and metrics["train_kd_share"] == 0

    student = Arm("tsn_tiny", 32, kd="pixel_mse", teacher=teacher.key)
    out, run = _run(cfg, student, study, test, "test", teacher, out["state"])
    assert run.data.params["kd.weight"] == "100.0"  # the lambda in use, not the config's null
    assert run.data.metrics["train_kd_weight"] == 100.0 and 0 < run.data.metrics["train_kd_share"] < 1
    assert out["accuracy"] == run.data.metrics[ACCURACY]


def test_without_a_test_split_an_arm_reports_its_best_val_score(study):
    cfg = study[0]
    out, run = _run(cfg, Arm("tsn_tiny", 32), study, None, "val")
    assert out["accuracy"] == run.data.metrics["best_val_top1"]
    assert ACCURACY not in run.data.metrics and run.data.tags[REPORT_SPLIT_TAG] == "val"
