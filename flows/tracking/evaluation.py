"""The pipeline's evaluate stage: a trained model's best checkpoint on the report split, recorded on the
model's own training run."""

from __future__ import annotations

from flows.tracking.client import client_for, metric_batch
from flows.tracking.names import BEST_EPOCH, GFLOPS, REPORT_SPLIT_TAG, RESOLUTION, VIDEOS_PER_S
from reskd_core.config import Config
from reskd_core.report import ResultRow

# what evaluate_checkpoint says about the checkpoint itself (not a result on the split), and its name here
DESCRIBED = {"resolution": RESOLUTION, "epoch": BEST_EPOCH}


def log_evaluation(
    run_id: str | None, tracking_uri: str, row: ResultRow, metrics: dict[str, float], prefix: str
) -> None:
    """Evaluation metrics of one model into its training run, at the checkpoint's (best) epoch: the
    results under ``prefix``, which names the split (``test_top1``, ...), the checkpoint's
    ``best_epoch`` and ``resolution_px``, the model's ``gflops_per_video`` and ``videos_per_s``, and the
    split as tag ``reskd.report_split``."""
    if run_id is None:
        return
    values = {f"{prefix}{k}": v for k, v in metrics.items() if k not in DESCRIBED}
    values |= {name: metrics[k] for k, name in DESCRIBED.items() if k in metrics}
    values[GFLOPS] = row.gflops
    if row.videos_per_s:
        values[VIDEOS_PER_S] = row.videos_per_s
    client = client_for(tracking_uri)
    client.log_batch(run_id, metrics=metric_batch(values, int(metrics.get("epoch", 0))))
    client.set_tag(run_id, REPORT_SPLIT_TAG, row.split)


def evaluate_and_log(cfg: Config, trained: dict, role: str, shards_uri: str) -> ResultRow:
    """Evaluate a trained model's best checkpoint (its epoch chosen on ``data.val_split``) on the report
    split (:func:`~reskd_core.evaluate.report_split`: ``data.test_split``, else the validation split) and
    record it on its run.

    Accuracy is top-1 (single-label) or mAP (multi-label); GFLOPs per video are counted at the model's
    resolution; throughput is the one measured after training (measured here when missing).
    """
    from reskd_core.data.shards import read_manifest
    from reskd_core.evaluate import (
        evaluate_checkpoint,
        primary_metric,
        report_prefix,
        report_split,
        scalar_metrics,
    )
    from reskd_core.flops import flops_table
    from reskd_core.throughput import measure_throughput

    split = report_split(cfg, read_manifest(shards_uri).get("splits", {}))
    metrics = evaluate_checkpoint(trained["best_checkpoint"], shards_uri, split, cfg)
    model = cfg.teacher if role == "teacher" else cfg.student
    resolution = int(metrics.get("resolution") or model.resolution)
    frames = cfg.data.num_segments
    gflops = flops_table(model.name, frames, [resolution], cfg.num_classes or 400, model.width)[0].gflops
    vps = trained.get("videos_per_s")
    if not vps:
        vps = measure_throughput(
            model.name,
            frames,
            [resolution],
            num_classes=cfg.num_classes or 400,
            width=model.width,
            iters=2,
            rounds=1,
        )[0]["videos_per_s"]
    accuracy = primary_metric(metrics, cfg.data.multi_label)
    row = ResultRow(
        role=role,
        model=model.name,
        resolution=resolution,
        kd="none" if role == "teacher" else cfg.kd.method,
        accuracy=accuracy,
        gflops=gflops,
        videos_per_s=vps,
        run_id=trained.get("mlflow_run_id"),
        checkpoint=trained["best_checkpoint"],
        extra={"model_uri": trained.get("model_uri"), "metrics": scalar_metrics(metrics)},
        split=split,
    )
    log_evaluation(row.run_id, cfg.tracking.uri, row, scalar_metrics(metrics), report_prefix(cfg, split))
    return row
