"""The ``reskd/full`` pipeline: extract -> teacher -> students -> evaluate -> summary and registry.

Each stage is a Prefect task wrapping a library function. Stages are cached by their inputs (dataset
fingerprint + the config sections they read + code version), so a rerun with the same data and config
skips extraction and teacher training, and a failed run retried from the UI resumes at the failed stage.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.context import TaskRunContext
from prefect.runtime import deployment, flow_run

from flows import datasets, tracking
from flows.caching import retry_on_transient, stage_key
from flows.run_config import build_config, updated
from flows.tracking import catalog, promotion, registry
from reskd_core.config import Config, ExtractConfig
from reskd_core.data import layout, storage
from reskd_core.dataset_spec import DEFAULT_RECIPE
from reskd_core.report import (
    ResultRow,
    Summary,
    markdown_table,
    plot_accuracy_vs_gflops,
    report_splits,
    summarize,
)

STORAGE_RETRIES = dict(retries=3, retry_delay_seconds=[5, 20, 60], retry_condition_fn=retry_on_transient)


def _key(stage: str, *fields: str):
    """A ``cache_key_fn`` hashing the named task parameters (plus code version) under ``stage``."""

    def fn(_ctx: TaskRunContext, params: dict[str, Any]) -> str:
        return stage_key(stage, *[params[f] for f in fields])

    return fn


@task(name="demo-data", **STORAGE_RETRIES)
def make_demo_data(cfg: Config) -> str:
    """Generate the demo dataset unless it is already there."""
    return datasets.ensure_demo_dataset(cfg)


@task(
    name="extract",
    cache_key_fn=_key("extract", "fingerprint", "extract_cfg", "shards_uri"),
    persist_result=True,
    **STORAGE_RETRIES,
)
def extract_stage(
    cfg: Config,
    dataset_uri: str,
    fingerprint: str,
    extract_cfg: ExtractConfig,
    shards_uri: str,
    parent_run_id: str | None,
) -> dict:
    """Decode the dataset's videos into Parquet shards (or accept ready shards as they are)."""
    return datasets.prepare_shards(
        dataset_uri,
        fingerprint,
        extract_cfg,
        shards_uri,
        cfg.tracking.uri,
        cfg.tracking.experiment,
        parent_run_id,
    )


@task(
    name="teacher",
    cache_key_fn=_key("teacher", "fingerprint", "stage_cfg"),
    persist_result=True,
    **STORAGE_RETRIES,
)
def teacher_stage(cfg: Config, fingerprint: str, stage_cfg: dict, parent_run_id: str | None) -> dict:
    """Pretrain the teacher at high resolution on Ray Train."""
    from flows.ray_train import train_on_ray

    run_name = f"{cfg.name}-teacher-{stage_key('t', fingerprint, stage_cfg)[-10:]}"
    result = train_on_ray(
        cfg,
        "teacher",
        run_name,
        parent_run_id=parent_run_id,
        tags={"reskd.stage": "teacher", "reskd.dataset_fingerprint": fingerprint},
    )
    return _as_dict(result)


@task(
    name="student",
    cache_key_fn=_key("student", "fingerprint", "stage_cfg", "teacher_checkpoint"),
    persist_result=True,
    **STORAGE_RETRIES,
)
def student_stage(
    cfg: Config,
    fingerprint: str,
    stage_cfg: dict,
    teacher_checkpoint: str | None,
    teacher_run_id: str | None,
    parent_run_id: str | None,
) -> dict:
    """Train one student at one resolution with one KD method (``none`` is the baseline) on Ray Train."""
    from flows.ray_train import train_on_ray

    run_name = (
        f"{cfg.name}-student-{cfg.kd.method}-{cfg.student.resolution}-"
        f"{stage_key('s', fingerprint, stage_cfg, teacher_checkpoint)[-10:]}"
    )
    tags = {"reskd.stage": "student", "reskd.dataset_fingerprint": fingerprint}
    if teacher_run_id:
        tags["reskd.teacher_run_id"] = teacher_run_id
    if teacher_checkpoint and cfg.kd.method != "none":  # the driver reads the teacher from the config
        cfg = updated(cfg, {"teacher.checkpoint": teacher_checkpoint})
    result = train_on_ray(cfg, "student", run_name, parent_run_id=parent_run_id, tags=tags)
    return _as_dict(result)


@task(name="evaluate", **STORAGE_RETRIES)
def evaluate_stage(cfg: Config, trained: dict, role: str, shards_uri: str) -> ResultRow:
    """Accuracy of the best-val checkpoint on the report split (test, else val), GFLOPs per video and
    measured throughput."""
    return tracking.evaluate_and_log(cfg, trained, role, shards_uri)


@task(name="summary")
def summary_stage(
    cfg: Config,
    rows: list[ResultRow],
    parent_run_id: str | None,
    fingerprint: str,
    shards_uri: str,
    dataset_uri: str | None,
) -> dict:
    """Results table + accuracy-vs-GFLOPs plot to MLflow and Prefect; promote and register the selected
    student (``dataset_uri`` None: the demo data, which the scheduled retraining does not know)."""
    summary: Summary = summarize(rows, cfg.pipeline.max_accuracy_drop)
    metric = "mAP" if cfg.data.multi_label else "top-1"
    table = markdown_table(summary, metric, cfg.data.val_split)
    with tempfile.TemporaryDirectory() as tmp:
        plot = plot_accuracy_vs_gflops(
            rows,
            Path(tmp) / "accuracy_vs_gflops.png",
            f"{report_splits(rows)} {metric}".strip(),
            title=f"{cfg.pipeline.dataset}: accuracy vs GFLOPs per video",
        )
        tracking.log_summary(parent_run_id, cfg.tracking.uri, summary, table, plot)
    create_markdown_artifact(
        markdown=f"# reskd summary: {cfg.pipeline.dataset}\n\n{table}",
        key=f"reskd-summary-{slug(cfg.pipeline.dataset)}",
        description="ResKD results",
    )
    registered = None
    if summary.selected is not None:
        registered = promote(cfg, summary.selected, parent_run_id, fingerprint, shards_uri, dataset_uri)
    return {"table": table, "summary": summary.as_dict(), "registered": registered}


def promote(
    cfg: Config,
    row: ResultRow,
    parent_run_id: str | None,
    fingerprint: str,
    shards_uri: str,
    dataset_uri: str | None,
) -> dict:
    """Challenger vs champion on the fixed test set (both evaluated now), the verdict to MLflow and a
    Prefect artifact, then the registration; records the dataset for the scheduled retraining."""
    test_set = promotion.fixed_test_set(cfg, shards_uri)
    verdict = promotion.decide(cfg, row, test_set, shards_uri)
    promotion.log_verdict(parent_run_id, cfg.tracking.uri, verdict)
    create_markdown_artifact(
        markdown=verdict.markdown(),
        key=f"reskd-promotion-{slug(cfg.pipeline.dataset)}",
        description="champion vs challenger on the fixed test set",
    )
    registered = registry.register_student(cfg, row, fingerprint, shards_uri, verdict)
    catalog.record(
        cfg.tracking.uri,
        verdict.model,
        (test_set.shards, test_set.split),
        cfg.pipeline.dataset,
        dataset_uri,
        cfg.pipeline.dataset_version,
    )
    return registered | {"test_set": f"{test_set.shards}#{test_set.split}"}


def extracted(cfg: Config, dataset_uri: str, parent_run_id: str) -> tuple[Config, dict, str]:
    """The extract stage for ``dataset_uri``: the config pointing at its shards, the stage's info
    (``shards_uri``, ``videos``, ``splits``, ...) and the dataset's fingerprint."""
    extract_cfg = layout.extract_config_for(cfg, dataset_uri)
    fingerprint = layout.fingerprint(dataset_uri, extract_cfg)
    shards_uri = layout.shards_location(cfg.storage.root, dataset_uri, fingerprint, extract_cfg)
    info = run_cached(
        extract_stage,
        lambda out: f"{out['shards_uri'].rstrip('/')}/manifest.json",
        cfg,
        dataset_uri,
        fingerprint,
        extract_cfg,
        shards_uri,
        parent_run_id,
    )
    return datasets.with_shards(cfg, info), info, fingerprint


def run_cached(stage: Any, artifact: Any, *args: Any) -> dict:
    """``stage(*args)``; when its result, cached or not, names an artifact (``artifact(result)``) that is
    gone, e.g. a deleted runs folder or an emptied bucket, the stage runs again with its cache refreshed,
    rather than handing a dead path to the next stage."""
    out = stage(*args)
    uri = artifact(out)
    if uri and not storage.exists(uri):
        get_run_logger().warning("%s: its result names %s, which is gone; running it again", stage.name, uri)
        out = stage.with_options(refresh_cache=True)(*args)
    return out


def resolve_config(
    config: Config | None,
    recipe: str | None,
    overrides: list[str] | None,
    tracking_uri: str | None,
    dataset_uri: str | None = None,
    values: dict[str, Any] | None = None,
) -> Config:
    """The run's config from the flow's parameters, built once: the given model, else the recipe (None:
    the dataset's ``dataset.yaml`` recipe, else ``demo_cpu``) with the dataset's overrides; then
    ``overrides``, ``values`` and the tracking URI; local paths pinned
    (:func:`flows.run_config.build_config`)."""
    typed = {k: v for k, v in (values or {}).items() if v} | (
        {"tracking.uri": tracking_uri} if tracking_uri else {}
    )
    if config is not None:
        return build_config(config, overrides, typed)
    if dataset_uri is None:
        return build_config(recipe or DEFAULT_RECIPE, overrides, typed)
    return build_config(recipe, overrides, typed, dataset_uri=dataset_uri)


@flow(name="reskd")
def full(
    config: Config | None = None,
    dataset_uri: str | None = None,
    tracking_uri: str | None = None,
    recipe: str | None = None,
    overrides: list[str] | None = None,
    dataset_name: str | None = None,
    dataset_version: str | None = None,
) -> dict:
    """Run the whole ResKD pipeline on one dataset.

    The CLI hands over a built ``config``; a deployment run (``prefect deployment run reskd/full --param
    ...``, the landing trigger, the scheduled retraining) gives ``recipe`` and ``overrides`` instead, on
    top of the dataset's ``dataset.yaml``. Either way the config is built here once, and the stages below
    take it as it is.

    Args:
        config: the whole configuration (validated); None takes ``recipe`` plus ``overrides``.
        dataset_uri: a folder (local or s3://) holding ``annotations`` + videos, or ready shards with a
            ``manifest.json``. None: the demo dataset, generated if missing.
        tracking_uri: MLflow tracking URI (overrides ``config.tracking.uri``).
        recipe: a recipe name under configs/ or a YAML path, used when ``config`` is None; None: the
            dataset's ``dataset.yaml`` recipe, else ``demo_cpu``.
        overrides: ``key.path=value`` settings applied on top.
        dataset_name: the dataset's name (``pipeline.dataset``; the landing layout's ``<name>``).
        dataset_version: its version (``pipeline.dataset_version``; the layout's ``<version>``).
    """
    log = get_run_logger()
    named_as = {"pipeline.dataset": dataset_name, "pipeline.dataset_version": dataset_version}
    cfg = resolve_config(config, recipe, overrides, tracking_uri, dataset_uri, named_as)
    given_uri = dataset_uri
    if dataset_uri is None:
        dataset_uri = make_demo_data(cfg)
    cfg = datasets.named(cfg, dataset_uri)
    parent = tracking.start_parent_run(
        cfg,
        tags={
            "prefect.flow_run_id": str(flow_run.id or ""),
            "prefect.deployment": deployment.name or "local",
            "reskd.dataset_uri": dataset_uri,
            "reskd.dataset_version": cfg.pipeline.dataset_version or "",
        },
    )
    try:
        cfg, info, fingerprint = extracted(cfg, dataset_uri, parent)
        log.info(
            "dataset %s: %s videos, %s classes -> %s",
            dataset_uri,
            info["videos"],
            info["num_classes"],
            info["shards_uri"],
        )

        if cfg.teacher.checkpoint:
            teacher = {"best_checkpoint": cfg.teacher.checkpoint, "mlflow_run_id": None, "metrics": {}}
        else:
            teacher = run_cached(
                teacher_stage, _checkpoint, cfg, fingerprint, _teacher_stage_cfg(cfg), parent
            )
        rows = [evaluate_stage(cfg, teacher, "teacher", info["shards_uri"])]

        methods = list(dict.fromkeys(cfg.pipeline.kd_methods + (["none"] if cfg.pipeline.baseline else [])))
        for res in cfg.pipeline.resolutions:
            for method in methods:
                s_cfg = _student_config(cfg, res, method)
                trained = run_cached(
                    student_stage,
                    _checkpoint,
                    s_cfg,
                    fingerprint,
                    _student_stage_cfg(s_cfg),
                    teacher["best_checkpoint"],
                    teacher.get("mlflow_run_id"),
                    parent,
                )
                rows.append(evaluate_stage(s_cfg, trained, "student", info["shards_uri"]))

        result = summary_stage(cfg, rows, parent, fingerprint, info["shards_uri"], given_uri)
        log.info("summary:\n%s", result["table"])
        tracking.end_parent_run(parent, "FINISHED", cfg.tracking.uri)
        return result
    except BaseException as e:
        tracking.end_parent_run(parent, "FAILED", cfg.tracking.uri, error=f"{type(e).__name__}: {e}")
        raise


def _student_config(cfg: Config, resolution: int, method: str) -> Config:
    return cfg.model_copy(
        update={
            "student": cfg.student.model_copy(update={"resolution": resolution}),
            "kd": cfg.kd.model_copy(update={"method": method}),
        }
    )


def _teacher_stage_cfg(cfg: Config) -> dict:
    """The config sections the teacher's training reads (its cache key)."""
    return {
        "seed": cfg.seed,
        "data": cfg.data.model_dump(mode="json"),
        "teacher": cfg.teacher.model_dump(mode="json"),
        "optim": cfg.optim.model_dump(mode="json"),
        "epochs": cfg.schedule.teacher_epochs,
        "warmup": cfg.schedule.warmup_epochs,
        "workers": cfg.resources.workers,
    }


def _student_stage_cfg(cfg: Config) -> dict:
    return {
        **_teacher_stage_cfg(cfg),
        "student": cfg.student.model_dump(mode="json"),
        "kd": cfg.kd.model_dump(mode="json"),
        "epochs": cfg.schedule.student_epochs,
    }


def _checkpoint(result: dict) -> str | None:
    return result.get("best_checkpoint")


def _as_dict(result: Any) -> dict:
    from dataclasses import asdict, is_dataclass

    return asdict(result) if is_dataclass(result) else dict(result)


def slug(text: str, default: str = "dataset") -> str:
    """``text`` as a Prefect artifact key part: lower case, runs of other characters as ``-``."""
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-") or default
