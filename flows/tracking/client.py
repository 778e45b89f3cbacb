"""The MLflow client of a tracking URI, reskd's experiments, and batched params and metrics.

Everything goes through ``MlflowClient`` with an explicit tracking URI (no global state), except where
MLflow offers only its fluent API (logging a model, registering one: :mod:`flows.tracking.artifacts`,
:mod:`flows.tracking.registry`).
"""

from __future__ import annotations

import logging
import time

from mlflow.entities import Metric, Param, Run, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from flows.tracking.names import EXPERIMENT_KIND_TAG, RUN_NAME_TAG, TRAINING_EXPERIMENT
from reskd_core.config import pin_uri

log = logging.getLogger(__name__)

# a relative sqlite:///file.db made absolute, so Ray workers (another cwd) write the same file
resolve_uri = pin_uri

BATCH = 100  # MLflow's limit of params per log_batch call
MAX_PARAM = 6000  # MLflow's limit on a param value's length


def client_for(uri: str) -> MlflowClient:
    """The client of tracking URI ``uri`` (a relative SQLite path made absolute)."""
    return MlflowClient(tracking_uri=resolve_uri(uri))


def experiment_id(client: MlflowClient, name: str) -> str:
    """The id of experiment ``name``, created on first use (tolerating a concurrent creator) and marked as
    a training experiment, so MLflow's UI opens it on its runs rather than on the GenAI overview. An
    experiment kind someone chose in the UI is left as it is."""
    exp = client.get_experiment_by_name(name)
    if exp is None:
        try:
            return client.create_experiment(name, tags={EXPERIMENT_KIND_TAG: TRAINING_EXPERIMENT})
        except MlflowException:
            exp = client.get_experiment_by_name(name)
    if EXPERIMENT_KIND_TAG not in (exp.tags or {}):  # made by an older reskd, or by someone else
        client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, TRAINING_EXPERIMENT)
    return exp.experiment_id


def log_params(client: MlflowClient, run_id: str, params: dict[str, object]) -> None:
    """``params`` on run ``run_id``, in batches of MLflow's limit, values cut to its length limit."""
    items = list(params.items())
    for i in range(0, len(items), BATCH):
        client.log_batch(run_id, params=[Param(k, str(v)[:MAX_PARAM]) for k, v in items[i : i + BATCH]])


def set_tags(client: MlflowClient, run_id: str, tags: dict[str, object]) -> None:
    """``tags`` on run ``run_id`` in one request."""
    client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])


def metric_batch(metrics: dict[str, object], step: int) -> list[Metric]:
    """The numeric entries of ``metrics`` as MLflow metrics at ``step``, stamped now."""
    now = int(time.time() * 1000)
    return [Metric(k, float(v), now, step) for k, v in metrics.items() if isinstance(v, (int, float))]


def log_metrics(tracking_uri: str, run_id: str, metrics: dict[str, float], step: int) -> None:
    """Numeric metrics at ``step`` in one request (a tracking outage is logged, never fatal)."""
    batch = metric_batch(metrics, step)
    try:
        client_for(tracking_uri).log_batch(run_id, metrics=batch)
    except Exception as e:  # training must not die because the tracking server blinked
        log.warning("MLflow: could not log %d metrics at step %d: %s", len(batch), step, e)


def find_run(client: MlflowClient, exp_id: str, job: str) -> Run | None:
    """The newest run of job ``job`` (tag ``reskd.run_name``), or None."""
    runs = client.search_runs(
        [exp_id],
        filter_string=f"tags.`{RUN_NAME_TAG}` = '{job}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0] if runs else None
