"""Files on MLflow runs: a training job's checkpoint, plots and logged model; a pipeline's summary; and
the way back from a run or model URI to its checkpoint."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from mlflow.exceptions import MlflowException

from flows.tracking.client import client_for, resolve_uri
from flows.tracking.names import (
    CHECKPOINT_ARTIFACT,
    MODEL_ARTIFACT,
    REPORT_SPLIT_TAG,
    SELECTED_ACCURACY,
    SELECTED_GFLOPS,
)
from reskd_core.config import Config
from reskd_core.report import Summary, report_splits


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
    import mlflow

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


def local_model(model: str, tracking_uri: str) -> str:
    """A checkpoint path/URI or ONNX file as given; an MLflow ``models:/`` or ``runs:/`` URI as the local
    checkpoint behind it. A one-line ``ValueError`` when it does not resolve."""
    if not model.startswith(("models:/", "runs:/")):
        return model
    try:
        return checkpoint_from_model_uri(model, tracking_uri)
    except Exception as e:  # MLflow raises its own types; the user needs one line
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ValueError(f"model {model} does not resolve at {tracking_uri}: {first}") from None


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
        client.log_metric(run_id, SELECTED_ACCURACY, summary.selected.accuracy)
        client.log_metric(run_id, SELECTED_GFLOPS, summary.selected.gflops)
