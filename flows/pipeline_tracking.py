"""MLflow records of a pipeline run: the parent run, evaluation results per model, the summary."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import mlflow

from flows.tracking import REPORT_SPLIT_TAG, client_for, experiment_id, log_params
from reskd_core.config import Config, flatten
from reskd_core.report import ResultRow, Summary, report_splits

log = logging.getLogger(__name__)


def start_parent_run(cfg: Config, tags: dict[str, str], kind: str = "pipeline") -> str:
    """Create the parent MLflow run of a ``kind`` flow run (``pipeline`` or ``study``) with the whole config
    as params; returns its id."""
    client = client_for(cfg.tracking.uri)
    run = client.create_run(
        experiment_id(client, cfg.tracking.experiment),
        run_name=f"{cfg.name}-{kind}",
        tags={"reskd.kind": kind, "reskd.dataset": cfg.pipeline.dataset, **tags},
    )
    log_params(client, run.info.run_id, flatten(cfg))
    client.log_text(run.info.run_id, json.dumps(cfg.model_dump(mode="json"), indent=1), "config.json")
    log.info("MLflow parent run %s at %s", run.info.run_id, cfg.tracking.uri)
    return run.info.run_id


def end_parent_run(
    run_id: str | None, status: str, cfg_uri: str | None = None, error: str | None = None
) -> None:
    """Close the parent run as FINISHED or FAILED; a failure's reason is kept as a tag and a text file."""
    if run_id is None:
        return
    client = client_for(cfg_uri or mlflow.get_tracking_uri())
    if error:
        client.set_tag(run_id, "reskd.error", error[:5000])
        client.log_text(run_id, error, "error.txt")
    client.set_terminated(run_id, status)


def log_summary(run_id: str | None, tracking_uri: str, summary: Summary, table: str, plot: Path) -> None:
    """The summary table (Markdown and JSON) and the accuracy-vs-GFLOPs plot on the parent run."""
    if run_id is None:
        return
    client = client_for(tracking_uri)
    if split := report_splits(summary.rows):
        client.set_tag(run_id, REPORT_SPLIT_TAG, split)
    client.log_text(run_id, table, "summary.md")
    client.log_text(run_id, json.dumps(summary.as_dict(), indent=1), "summary.json")
    client.log_artifact(run_id, str(plot))
    if summary.selected is not None:
        client.set_tag(run_id, "reskd.selected", summary.selected.label)
        client.log_metric(run_id, "selected_accuracy", summary.selected.accuracy)
        client.log_metric(run_id, "selected_gflops", summary.selected.gflops)


def log_evaluation(
    run_id: str | None, tracking_uri: str, row: ResultRow, metrics: dict[str, float], prefix: str
) -> None:
    """Evaluation metrics of one model, into that model's own training run at the checkpoint's epoch: the
    results under ``prefix`` (which names the split: ``test_top1``, ...), what was evaluated under ``eval_``
    (``eval_resolution``, ``eval_epoch``, ``eval_gflops``, ``eval_videos_per_s``), the split as a tag."""
    if run_id is None:
        return
    described = {"resolution", "epoch"}  # properties of the checkpoint, not results on the split
    values = {f"{prefix}{k}": v for k, v in metrics.items() if k not in described}
    values |= {f"eval_{k}": metrics[k] for k in described & set(metrics)}
    values["eval_gflops"] = row.gflops
    if row.videos_per_s:
        values["eval_videos_per_s"] = row.videos_per_s
    client = client_for(tracking_uri)
    step = int(metrics.get("epoch", 0))
    for k, v in values.items():
        client.log_metric(run_id, k, float(v), step=step)
    client.set_tag(run_id, REPORT_SPLIT_TAG, row.split)


def evaluate_and_log(cfg: Config, trained: dict, role: str, shards_uri: str) -> ResultRow:
    """Evaluate a trained model's best checkpoint (its epoch chosen on ``data.val_split``) on the report
    split (:func:`~reskd_core.evaluate.report_split`: ``data.test_split``, else the validation split) and
    record it on its run.

    Accuracy is top-1 (single-label) or mAP (multi-label); GFLOPs per video are counted at the model's
    resolution; throughput is the one measured after training (measured here when missing).
    """
    from reskd_core.data.shards import read_manifest
    from reskd_core.evaluate import evaluate_checkpoint, report_prefix, report_split, scalar_metrics
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
    accuracy = float(metrics["mAP"] if cfg.data.multi_label else metrics["top1"])
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
