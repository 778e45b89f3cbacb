"""The ``reskd/predict`` deployment: batch inference over a dataset, predictions as Parquet shards.

A dataset is a folder (local or ``s3://``) of videos and annotations (the layout ``reskd/full`` reads,
:mod:`reskd_core.data.layout`), or extracted shards. Every video goes through the test-input chain of
:mod:`reskd_core.data.preprocess`; the rows (:data:`reskd_core.predict.PREDICTION_SCHEMA` plus the model
version that made them) go to ``predictions-NNNNN.parquet`` files under ``out``, readable by DuckDB
(``SELECT * FROM 'out/*.parquet'``). An MLflow run records throughput, the decode share, unreadable
videos and, where labels exist, top-1 accuracy.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.runtime import flow_run

from flows import datasets, tracking
from flows.full import make_demo_data, resolve_config
from flows.run_config import updated
from flows.tracking import names, registry
from reskd_core.config import Config
from reskd_core.data import layout, storage


def dataset_items(cfg: Config, dataset_uri: str) -> tuple[Any, int]:
    """``(items, count)`` of a dataset folder: its shards' rows, or the videos its annotations list
    (labelled with class names when it has a labels file)."""
    from reskd_core.predict import collect_items, list_items

    if layout.is_shards(dataset_uri):
        return collect_items([dataset_uri])
    ex = layout.extract_config_for(cfg, dataset_uri)
    labels = ex.labels_file if ex.labels_file and storage.exists(ex.labels_file) else None
    items = list_items(ex.annotations, ex.format, ex.video_root, labels)
    return items, len(items)


def default_out(cfg: Config, dataset: str, version: str) -> str:
    """``<storage.root>/predictions/<dataset>/<model version>/<flow run>``: one folder per run."""
    name = version.removeprefix("runs:/") if "://" not in version else version.rsplit("/", 1)[-1]
    if name.endswith((".pt", ".pth", ".onnx")):  # a file: its name
        name = name.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    slug = "".join(c if c.isalnum() or c in "-_." else "-" for c in name).strip("-")[-60:] or "model"
    run = str(flow_run.id or f"local-{int(time.time())}")
    return storage.join(cfg.storage.root, "predictions", dataset, slug, run)


@task(name="predict")
def predict_stage(cfg: Config, dataset_uri: str, checkpoint: str, version: str, out: str) -> dict:
    """Predict every video of the dataset, one Parquet file per ``predict.rows_per_shard`` rows."""
    from reskd_core.predict import load_classifier, predict_items, prediction_row, write_rows

    p = cfg.predict
    clf = load_classifier(checkpoint, resolution=p.resolution, device=p.device)
    items, total = dataset_items(cfg, dataset_uri)
    log = get_run_logger()
    log.info("predicting %d videos of %s with %s -> %s", total, dataset_uri, version, out)
    rows: list[dict] = []
    files: list[str] = []
    seconds = {"input": 0.0, "model": 0.0}
    start = time.perf_counter()

    def write() -> None:
        files.append(write_rows(rows, storage.join(out, f"predictions-{len(files):05d}.parquet")))
        rows.clear()

    n = errors = labelled = hits = 0
    for pred in predict_items(clf, items, batch_size=p.batch_size, exact=p.exact):
        row = prediction_row(pred, clf.class_names, p.top_k, version)
        rows.append(row)
        n += 1
        errors += row["error"] is not None
        if row["error"] is None and row["true_label"] is not None:
            labelled += 1
            hits += row["label"] == row["true_label"]
        for k in seconds:
            seconds[k] += pred.seconds.get(k, 0.0)
        if len(rows) >= p.rows_per_shard:
            write()
    if rows or not files:
        write()
    wall = time.perf_counter() - start
    busy = sum(seconds.values()) or 1.0
    return {
        "out": out,
        "files": files,
        "videos": n,
        "errors": errors,
        "labelled": labelled,
        "top1": 100.0 * hits / labelled if labelled else None,
        "videos_per_s": (n - errors) / wall if wall > 0 else 0.0,
        "decode_share": seconds["input"] / busy,
        "seconds": wall,
    }


@flow(name="reskd")
def predict(
    dataset_uri: str | None = None,
    model: str | None = None,
    out: str | None = None,
    config: Config | None = None,
    tracking_uri: str | None = None,
    recipe: str = "demo_cpu",
    overrides: list[str] | None = None,
) -> dict:
    """Label every video of a dataset with a model and write the predictions as Parquet shards.

    Args:
        dataset_uri: a folder (local or s3://) of annotations + videos, or shards; None: the demo dataset.
        model: a checkpoint, an MLflow model URI or an .onnx file; None: ``predict.model``
            (``models:/reskd-demo@champion``).
        out: the folder (local or s3://) for ``predictions-*.parquet``; None: under
            ``<storage.root>/predictions/<dataset>/<model version>/<flow run id>``.
        config, tracking_uri, recipe, overrides: the run's config, built once, as ``reskd/full`` does.
    """
    log = get_run_logger()
    cfg = resolve_config(config, recipe, overrides, tracking_uri)
    if model:
        cfg = updated(cfg, {"predict.model": model})
    if dataset_uri is None:
        dataset_uri = make_demo_data(cfg)
    cfg = datasets.named(cfg, dataset_uri)
    checkpoint = tracking.local_model(cfg.predict.model, cfg.tracking.uri)  # fails before any decoding
    version = registry.model_version(cfg.predict.model, cfg.tracking.uri)
    out = out or default_out(cfg, str(cfg.pipeline.dataset), version)
    run_id = tracking.start_run(
        cfg.tracking.uri,
        cfg.tracking.experiment,
        f"predict {cfg.pipeline.dataset}",
        tags={
            names.KIND_TAG: "predict",
            names.MODEL_VERSION_TAG: version,
            names.PREDICTIONS_TAG: out,
            "reskd.dataset_uri": dataset_uri,
            "prefect.flow_run_id": str(flow_run.id or ""),
        },
        params={"predict.model": cfg.predict.model, "predict.exact": cfg.predict.exact},
    )
    with tracking.run_context(cfg.tracking.uri, run_id):
        result = predict_stage(cfg, dataset_uri, checkpoint, version, out)
        metrics = {
            names.PREDICTED: result["videos"],
            names.PREDICT_ERRORS: result["errors"],
            names.VIDEOS_PER_S: result["videos_per_s"],
            names.DECODE_SHARE: result["decode_share"],
        }
        if result["top1"] is not None:
            metrics[names.PREDICT_ACCURACY] = result["top1"]
        tracking.log_metrics(cfg.tracking.uri, run_id, metrics, step=0)
        rate = result["errors"] / max(result["videos"], 1)
        if rate > cfg.predict.max_error_rate:
            raise RuntimeError(
                f"{result['errors']} of {result['videos']} videos could not be read ({100 * rate:.1f}%, "
                f"limit {100 * cfg.predict.max_error_rate:.1f}%); predictions in {out}"
            )
    log.info(
        "%d videos (%d unreadable) at %.1f videos/s, top-1 %s -> %s",
        result["videos"],
        result["errors"],
        result["videos_per_s"],
        "n/a" if result["top1"] is None else f"{result['top1']:.2f}",
        out,
    )
    return {**result, "model_version": version, "mlflow_run_id": run_id}
