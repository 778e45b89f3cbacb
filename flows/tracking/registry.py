"""MLflow Model Registry: ``reskd-<dataset>`` with the aliases ``champion`` and ``challenger``.

The registered model is the video model (:mod:`flows.tracking.pyfunc`): it takes mp4 bytes or URIs and
returns labels. A new student becomes ``champion`` only if :mod:`flows.tracking.promotion` says so (it
beats the current champion on the dataset's fixed test set, both evaluated in the same run); otherwise
it is the ``challenger``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from flows.tracking.client import client_for, resolve_uri
from reskd_core.config import Config
from reskd_core.report import ResultRow

if TYPE_CHECKING:
    from flows.tracking.promotion import Verdict

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER = "champion", "challenger"


def model_name(dataset: str) -> str:
    """The registered model of ``dataset``: ``reskd-<dataset>``, lower case, odd characters as ``-``."""
    return "reskd-" + "".join(c if c.isalnum() or c in "-_" else "-" for c in dataset.lower())


def champion(client: MlflowClient, name: str):
    """The version holding ``champion``, None when there is none."""
    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def eval_split(cfg: Config, row: ResultRow, shards_uri: str) -> str:
    """The split ``row``'s accuracy is on: the one it records, else the report split of the shards."""
    if row.split:
        return row.split
    from reskd_core.data.shards import read_manifest
    from reskd_core.evaluate import report_split

    return report_split(cfg, read_manifest(shards_uri).get("splits", {}))


def _video_model(cfg: Config, row: ResultRow) -> str:
    """The model to register for ``row``: the video model (:mod:`flows.tracking.pyfunc`) of its checkpoint,
    logged on its run; without a run or checkpoint, its logged (logits) model."""
    if row.run_id and row.checkpoint:
        from flows.tracking.pyfunc import log_video_model

        return log_video_model(cfg, row.run_id, row.checkpoint)
    return row.extra.get("model_uri") or f"runs:/{row.run_id}/model"


def register_student(
    cfg: Config, row: ResultRow, fingerprint: str, shards_uri: str, verdict: Verdict
) -> dict:
    """Register the video model of ``row``'s checkpoint and give it ``champion`` or ``challenger`` as
    ``verdict`` decided; returns what was done."""
    import mlflow

    client = client_for(cfg.tracking.uri)
    name = model_name(cfg.pipeline.dataset)
    eval_key = f"{fingerprint}:{eval_split(cfg, row, shards_uri)}"
    model_uri = _video_model(cfg, row)

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
            "reskd.dataset_version": cfg.pipeline.dataset_version or "",
            "reskd.test_set": f"{verdict.test_set.shards}#{verdict.test_set.split}",
            "reskd.test_accuracy": f"{verdict.challenger.accuracy:.4f}",
        },
    )
    alias = CHAMPION if verdict.promote else CHALLENGER
    client.set_registered_model_alias(name, alias, version.version)
    reason = verdict.reason
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
