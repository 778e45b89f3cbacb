"""MLflow runs shaped like one ``make demo`` pipeline run, logged through reskd's own tracking code.

For the runs-table screenshot (``docs/screenshots.py runs``) where no real demo database is at hand: a
parent run with the config's params, a teacher and four students as its child runs (each named, tagged
and given its role's params by :func:`flows.tracking.start_training_run`), per-epoch ``train_*``/``val_*``
curves, and the evaluate stage's metrics (:func:`flows.tracking.log_evaluation`). The numbers are the
README's demo table (test top-1, GFLOPs per video, videos/s); the curves are made up to end near them.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

from flows import tracking
from reskd_core.config import Config, load_config, recipe_path
from reskd_core.report import ResultRow, markdown_table, plot_accuracy_vs_gflops, summarize

EPOCHS = 30
# (role, resolution, kd, test top-1, GFLOPs per video, videos/s): README.md, "What make demo shows"
DEMO = [
    ("teacher", 112, "none", 80.42, 0.041, 336.2),
    ("student", 56, "none", 86.88, 0.011, 500.4),
    ("student", 56, "pixel_mse", 86.67, 0.011, 517.4),
    ("student", 40, "none", 82.92, 0.006, 465.1),
    ("student", 40, "pixel_mse", 91.04, 0.006, 547.4),
]


def model_config(cfg: Config, role: str, resolution: int, kd: str) -> Config:
    """``cfg`` as the pipeline hands it to one training stage."""
    if role == "teacher":
        return cfg.model_copy(update={"teacher": cfg.teacher.model_copy(update={"resolution": resolution})})
    return cfg.model_copy(
        update={
            "student": cfg.student.model_copy(update={"resolution": resolution}),
            "kd": cfg.kd.model_copy(update={"method": kd}),
        }
    )


def log_demo_runs(tracking_uri: str, experiment: str = "reskd") -> str:
    """Log the demo pipeline's runs into ``tracking_uri``; returns the parent run's id."""
    cfg = load_config(
        recipe_path("demo_cpu"),
        [f"tracking.uri={tracking_uri}", f"tracking.experiment={experiment}", "pipeline.dataset=demo"],
    )
    rows = []
    parent_tags = {"prefect.deployment": "local", "reskd.dataset_uri": "demo/data"}
    with tracking.parent_run(cfg, parent_tags) as parent:
        for i, (role, res, kd, top1, gflops, vps) in enumerate(DEMO):
            mcfg = model_config(cfg, role, res, kd)
            spec = mcfg.teacher if role == "teacher" else mcfg.student
            tags = {
                "reskd.stage": role,
                "reskd.model": spec.name,
                "reskd.resolution": str(res),
                "reskd.kd": kd,
            }
            job = f"{cfg.name}-{role}-{kd}-{res}-demo{i}"
            with tracking.training_run(mcfg, role, job, parent_run_id=parent, tags=tags) as run:
                best = log_curves(tracking_uri, run.run_id, top1, phase=i)
                row = ResultRow(role, spec.name, res, kd, top1, gflops, vps, run.run_id, split="test")
                metrics = {"top1": top1, "top5": 100.0, "n": 480.0, "resolution": res, "epoch": best}
                tracking.log_evaluation(run.run_id, tracking_uri, row, metrics, "test_")
            rows.append(row)
        summary = summarize(rows)
        with tempfile.TemporaryDirectory() as tmp:
            plot = plot_accuracy_vs_gflops(rows, Path(tmp) / "accuracy_vs_gflops.png", "test top-1")
            tracking.log_summary(parent, tracking_uri, summary, markdown_table(summary), plot)
    return parent


def log_curves(tracking_uri: str, run_id: str, final: float, phase: int = 0) -> int:
    """Per-epoch ``train_*``/``val_*`` metrics rising towards ``final``; returns the best epoch."""
    best, best_epoch = -1.0, 0
    for epoch in range(1, EPOCHS + 1):
        val = final * (1 - math.exp(-epoch / 6)) + 1.5 * math.sin(epoch + 2 * phase)
        tracking.log_metrics(
            tracking_uri,
            run_id,
            {"epoch": epoch, "train_loss": 2.1 * math.exp(-epoch / 8), "val_top1": val, "val_score": val},
            step=epoch,
        )
        if val > best:
            best, best_epoch = val, epoch
    tracking.log_metrics(tracking_uri, run_id, {"best_val_top1": best, "best_epoch": best_epoch}, best_epoch)
    return best_epoch
