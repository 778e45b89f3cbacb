"""MLflow Model Registry: ``reskd-<dataset>`` with the aliases ``champion`` and ``challenger``.

The registered model is the video model (:mod:`flows.tracking.pyfunc`): it takes mp4 bytes or URIs and
returns labels. A new student becomes ``champion`` only if it beats the current champion on the same
evaluation split (same dataset fingerprint and split); otherwise it is the ``challenger``. The split is
the report split (:func:`reskd_core.evaluate.report_split`: the test split, else validation) the
student's accuracy was measured on. When the champion was measured on another split, it is re-evaluated
on this one first, so the comparison is always like for like.
"""

from __future__ import annotations

import logging

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from flows.tracking.client import client_for, resolve_uri
from reskd_core.config import Config
from reskd_core.report import ResultRow

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER = "champion", "challenger"


def model_name(dataset: str) -> str:
    """The registered model of ``dataset``: ``reskd-<dataset>``, lower case, odd characters as ``-``."""
    return "reskd-" + "".join(c if c.isalnum() or c in "-_" else "-" for c in dataset.lower())


def _champion(client: MlflowClient, name: str):
    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def champion_accuracy(
    client: MlflowClient, version, eval_key: str, cfg: Config, shards_uri: str
) -> float | None:
    """The champion's accuracy on ``eval_key`` (``fingerprint:split``): its recorded tag, or a fresh
    evaluation of its checkpoint on that split."""
    tags = version.tags or {}
    if tags.get("reskd.eval_key") == eval_key and "reskd.accuracy" in tags:
        return float(tags["reskd.accuracy"])
    checkpoint = tags.get("reskd.checkpoint")
    if not checkpoint:
        return None
    from reskd_core.evaluate import evaluate_checkpoint

    metrics = evaluate_checkpoint(checkpoint, shards_uri, eval_key.rsplit(":", 1)[1], cfg)
    return primary_accuracy(metrics, cfg)


def eval_split(cfg: Config, row: ResultRow, shards_uri: str) -> str:
    """The split ``row``'s accuracy is on: the one it records, else the report split of the shards."""
    if row.split:
        return row.split
    from reskd_core.data.shards import read_manifest
    from reskd_core.evaluate import report_split

    return report_split(cfg, read_manifest(shards_uri).get("splits", {}))


def primary_accuracy(metrics: dict, cfg: Config) -> float:
    """top-1 for single-label data, mAP for multi-label data (both in percent)."""
    return float(metrics["mAP"] if cfg.data.multi_label else metrics["top1"])


def _video_model(cfg: Config, row: ResultRow) -> str:
    """The model to register for ``row``: the video model (:mod:`flows.tracking.pyfunc`) of its checkpoint,
    logged on its run; without a run or checkpoint, its logged (logits) model."""
    if row.run_id and row.checkpoint:
        from flows.tracking.pyfunc import log_video_model

        return log_video_model(cfg, row.run_id, row.checkpoint)
    return row.extra.get("model_uri") or f"runs:/{row.run_id}/model"


def register_student(cfg: Config, row: ResultRow, fingerprint: str, shards_uri: str) -> dict:
    """Register the video model of ``row``'s checkpoint and give it ``champion`` or ``challenger``;
    returns what was done."""
    import mlflow

    client = client_for(cfg.tracking.uri)
    name = model_name(cfg.pipeline.dataset)
    eval_key = f"{fingerprint}:{eval_split(cfg, row, shards_uri)}"
    model_uri = _video_model(cfg, row)
    current = _champion(client, name)
    current_acc = champion_accuracy(client, current, eval_key, cfg, shards_uri) if current else None

    mlflow.set_tracking_uri(resolve_uri(cfg.tracking.uri))  # register_model has only the fluent API
    version = mlflow.register_model(
        model_uri,
        name,
        tags={
            "reskd.eval_key": eval_key,
            "reskd.accuracy": f"{row.accuracy:.4f}",
            "reskd.gflops": f"{row.gflops:.4f}",
            "reskd.resolution": str(row.resolution),
            "reskd.kd": row.kd,
            "reskd.checkpoint": row.checkpoint or "",
            "reskd.run_id": row.run_id or "",
        },
    )
    # a champion that cannot be measured on this split is not displaced blindly
    wins = current is None or (current_acc is not None and row.accuracy > current_acc)
    alias = CHAMPION if wins else CHALLENGER
    client.set_registered_model_alias(name, alias, version.version)
    reason = (
        "no champion yet"
        if current is None
        else f"{row.accuracy:.2f} vs champion v{current.version} {current_acc:.2f} on {eval_key}"
        if current_acc is not None
        else "champion could not be evaluated on this split"
    )
    log.info("registered %s v%s as %s (%s)", name, version.version, alias, reason)
    return {"name": name, "version": str(version.version), "alias": alias, "reason": reason}


def model_version(uri: str, tracking_uri: str) -> str:
    """What a model URI names, pinned: ``models:/NAME@ALIAS`` and ``models:/NAME/V`` as ``NAME/V`` (the
    version the alias points at now), anything else (``runs:/...``, a file) as it is."""
    if not uri.startswith("models:/"):
        return uri
    ref = uri[len("models:/") :].strip("/")
    if ref.startswith("m-"):
        return uri
    client = client_for(tracking_uri)
    if "@" in ref:
        name, alias = ref.split("@", 1)
        return f"{name}/{client.get_model_version_by_alias(name, alias).version}"
    name, _, version = ref.partition("/")
    return f"{name}/{client.get_model_version(name, version).version}"
