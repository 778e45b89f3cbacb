"""MLflow records of one training job: its run, per-epoch metrics, and the artifacts at the end.

The driver creates (or, for a rerun of the same job, finds again) the run and hands its id to the Ray
workers, so rank 0 keeps logging into the same run after a worker failure and restart. Everything goes
through ``MlflowClient`` with an explicit tracking URI; only ``log_model`` needs the fluent API.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from reskd_core.config import Config, flatten

log = logging.getLogger(__name__)

RUN_NAME_TAG = "reskd.run_name"
REPORT_SPLIT_TAG = "reskd.report_split"  # the split a run's reported accuracy is on (test, or val)
CHECKPOINT_ARTIFACT = "checkpoint"  # the best checkpoint is logged as checkpoint/checkpoint.pt
MODEL_ARTIFACT = "model"
BATCH = 100  # MLflow's limit of params per log_batch call


def resolve_uri(uri: str) -> str:
    """Make a relative ``sqlite:///file.db`` absolute, so Ray workers (other cwd) write the same file."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + str(Path(uri[len(prefix) :]).resolve())
    return uri


def client_for(uri: str) -> MlflowClient:
    return MlflowClient(tracking_uri=resolve_uri(uri))


def experiment_id(client: MlflowClient, name: str) -> str:
    """The experiment's id, created on first use (tolerating a concurrent creator)."""
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    try:
        return client.create_experiment(name)
    except MlflowException:
        return client.get_experiment_by_name(name).experiment_id


def log_params(client: MlflowClient, run_id: str, params: dict[str, object]) -> None:
    """``params`` on run ``run_id``, in batches of MLflow's limit, values cut to its length limit."""
    items = list(params.items())
    for i in range(0, len(items), BATCH):
        client.log_batch(run_id, params=[Param(k, str(v)[:6000]) for k, v in items[i : i + BATCH]])


def find_run(client: MlflowClient, exp_id: str, run_name: str):
    """The newest run of this job (tag ``reskd.run_name``), or None."""
    runs = client.search_runs(
        [exp_id],
        filter_string=f"tags.`{RUN_NAME_TAG}` = '{run_name}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0] if runs else None


def start_training_run(
    cfg: Config,
    role: str,
    run_name: str,
    *,
    parent_run_id: str | None = None,
    tags: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> tuple[str, bool]:
    """``(run_id, reused)``: the MLflow run of job ``run_name``, created with the whole config as params.

    A rerun of the same job name reopens its run instead of creating a second one (Ray resumes the job
    from its checkpoint, so its metrics continue the same history).
    """
    client = client_for(cfg.tracking.uri)
    exp_id = experiment_id(client, cfg.tracking.experiment)
    previous = find_run(client, exp_id, run_name)
    all_tags = {RUN_NAME_TAG: run_name, "reskd.role": role, **(tags or {})}
    if parent_run_id:
        all_tags["mlflow.parentRunId"] = parent_run_id
    if previous is not None:
        run_id = previous.info.run_id
        client.update_run(run_id, status="RUNNING")
        client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in all_tags.items()])
        log.info("MLflow: reopened run %s of job %s", run_id, run_name)
        return run_id, True
    run = client.create_run(exp_id, run_name=run_name, tags=all_tags)
    run_id = run.info.run_id
    log_params(client, run_id, {**flatten(cfg), **(params or {})})
    import yaml

    client.log_text(run_id, yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False), "config.yaml")
    log.info("MLflow: run %s for job %s at %s", run_id, run_name, resolve_uri(cfg.tracking.uri))
    return run_id, False


def log_metrics(tracking_uri: str, run_id: str, metrics: dict[str, float], step: int) -> None:
    """Numeric metrics at ``step`` in one request (a tracking outage is logged, never fatal)."""
    now = int(time.time() * 1000)
    batch = [Metric(k, float(v), now, step) for k, v in metrics.items() if isinstance(v, (int, float))]
    try:
        client_for(tracking_uri).log_batch(run_id, metrics=batch)
    except Exception as e:  # training must not die because the tracking server blinked
        log.warning("MLflow: could not log %d metrics at step %d: %s", len(batch), step, e)


def end_run(tracking_uri: str, run_id: str, status: str, error: str | None = None) -> None:
    """Close the run FINISHED or FAILED; a failure's reason is kept as a tag."""
    client = client_for(tracking_uri)
    if error:
        client.set_tag(run_id, "reskd.error", error[:5000])
    client.set_terminated(run_id, status)


def log_training_artifacts(
    cfg: Config, run_id: str, state: dict[str, Any], checkpoint_file: str, role: str
) -> str:
    """Best checkpoint, confusion-matrix and learning-curve PNGs, and the model (with a signature and
    an input example) on the job's run; returns the logged model's URI.

    ``state`` is the loaded best checkpoint; its ``history`` holds every epoch up to it, so the curves
    come from ``history`` of the latest one when the caller passes that in ``state['history']``.
    """
    import numpy as np
    import torch
    from mlflow.models import infer_signature

    from reskd_core.checkpoint import model_from_checkpoint
    from reskd_core.export import LogitsOnly, example_input
    from reskd_core.plots import plot_confusion_matrix, plot_learning_curves

    client = client_for(cfg.tracking.uri)
    client.log_artifact(run_id, checkpoint_file, CHECKPOINT_ARTIFACT)
    multi = cfg.data.multi_label
    with tempfile.TemporaryDirectory() as tmp:
        evaluation = state.get("evaluation") or {}
        if evaluation.get("confusion"):
            png = plot_confusion_matrix(
                evaluation["confusion"],
                state.get("class_names", []),
                Path(tmp) / "confusion_matrix.png",
                title=f"{role} (epoch {state['epoch']}): confusion matrix",
            )
            client.log_artifact(run_id, str(png), "plots")
        if evaluation:
            per_class = {k: evaluation[k] for k in ("per_class_acc", "per_class_ap") if k in evaluation}
            client.log_text(
                run_id,
                json.dumps(
                    {"class_names": state.get("class_names", []), **per_class, "epoch": state["epoch"]},
                    indent=1,
                ),
                "eval/per_class.json",
            )
        if state.get("history"):
            png = plot_learning_curves(
                state["history"],
                Path(tmp) / "learning_curves.png",
                "mAP" if multi else "top-1",
                title=f"{role}: learning curves",
            )
            client.log_artifact(run_id, str(png), "plots")

    model, resolution = model_from_checkpoint(state)
    net = LogitsOnly(model).eval()
    # batch 2: a size-1 example would freeze the batch dimension of the exported (pt2) graph
    example = example_input(cfg.data.num_segments, resolution, batch=2).numpy()
    with torch.no_grad():
        signature = infer_signature(example, net(torch.from_numpy(example)).numpy())
    mlflow.set_tracking_uri(resolve_uri(cfg.tracking.uri))
    torch_version = torch.__version__.split("+")[0]
    with mlflow.start_run(run_id=run_id, nested=True):  # nested: the caller may have an active run
        info = mlflow.pytorch.log_model(
            net,
            name=MODEL_ARTIFACT,
            signature=signature,
            input_example=np.ascontiguousarray(example),
            pip_requirements=[f"torch=={torch_version}"],
        )
    # start_run(run_id) ends the run as FINISHED on exit; the caller decides the final status
    client.update_run(run_id, status="RUNNING")
    return info.model_uri


def checkpoint_from_model_uri(uri: str, tracking_uri: str, dst: str | None = None) -> str:
    """Local path of the checkpoint behind an MLflow URI: ``runs:/<id>[/...]`` or ``models:/<name>/<v>``,
    ``models:/<name>@<alias>``, ``models:/m-<id>`` (the training run's ``checkpoint/checkpoint.pt``)."""
    client = client_for(tracking_uri)
    run_id = None
    if uri.startswith("runs:/"):
        run_id = uri[len("runs:/") :].split("/")[0]
    elif uri.startswith("models:/"):
        ref = uri[len("models:/") :].strip("/")
        if ref.startswith("m-"):
            run_id = client.get_logged_model(ref).source_run_id
        elif "@" in ref:
            name, alias = ref.split("@", 1)
            run_id = client.get_model_version_by_alias(name, alias).run_id
        else:
            name, _, version = ref.partition("/")
            run_id = client.get_model_version(name, version).run_id
    if not run_id:
        raise ValueError(f"{uri!r} is not an MLflow run or model URI (runs:/..., models:/...)")
    dst = dst or tempfile.mkdtemp(prefix="reskd-eval-")
    try:
        path = client.download_artifacts(run_id, f"{CHECKPOINT_ARTIFACT}/checkpoint.pt", dst)
    except (MlflowException, OSError) as e:
        raise ValueError(
            f"MLflow run {run_id} (from {uri}) has no {CHECKPOINT_ARTIFACT}/checkpoint.pt: {e}"
        ) from None
    return os.fspath(path)
