"""What the study keeps in MLflow beside its arm runs, and how it is read back: the finished arm runs as
:class:`~reskd_core.study.stats.Record` s for the page, and the parent run's ``study.json`` (config,
dataset info and page metadata), from which ``reskd study --render`` writes the page again."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from flows.tracking import client_for
from reskd_core.config import Config
from reskd_core.study.stats import ACCURACY, Record

ARM_KIND = "study-arm"  # the ``reskd.kind`` tag of an arm run
STUDY_RECORD = "study.json"  # parent-run artifact: config, dataset info and page metadata


def read_records(tracking_uri: str, parent_run_id: str, metric: str = ACCURACY) -> list[Record]:
    """Every finished arm run of the study, as the page's tables use them (accuracy: ``metric``)."""
    client = client_for(tracking_uri)
    parent = client.get_run(parent_run_id)
    runs = client.search_runs(
        [parent.info.experiment_id],
        filter_string=(
            f"tags.mlflow.parentRunId = '{parent_run_id}' and tags.`reskd.kind` = '{ARM_KIND}' "
            "and attributes.status = 'FINISHED'"
        ),
        max_results=5000,
    )
    return [
        Record(
            arm=r.data.tags["reskd.study.arm"],
            seed=int(r.data.tags["reskd.seed"]),
            accuracy=float(r.data.metrics[metric]),
            metrics=dict(r.data.metrics),
            params={k: v for k, v in r.data.params.items() if k.startswith("study.arm")},
        )
        for r in runs
        if metric in r.data.metrics
    ]


def log_study_record(tracking_uri: str, parent_run_id: str, cfg: Config, info: dict, meta: dict) -> None:
    """Log what a later ``reskd study --render RUN_ID`` needs to write the page again from the same runs."""
    record = {"config": cfg.model_dump(mode="json"), "info": info, "meta": meta}
    client_for(tracking_uri).log_text(parent_run_id, json.dumps(record, indent=1, default=str), STUDY_RECORD)


def load_study_record(tracking_uri: str, run_id: str) -> dict:
    """The ``study.json`` of a study parent run (``config``, ``info``, ``meta``); ``ValueError`` when the
    run has none."""
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client_for(tracking_uri).download_artifacts(run_id, STUDY_RECORD, tmp)
        except (MlflowException, OSError) as e:
            raise ValueError(
                f"run {run_id} at {tracking_uri} has no {STUDY_RECORD}: not a study parent run, or one from "
                f"before the page could be re-rendered ({e})"
            ) from None
        return json.loads(Path(path).read_text())
