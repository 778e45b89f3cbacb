"""All of reskd's MLflow access: one package, one module per job.

- :mod:`~flows.tracking.names`: tags, metric names (one per quantity) and readable run names;
- :mod:`~flows.tracking.client`: the client of a URI, experiments (marked as training experiments),
  batched params and metrics;
- :mod:`~flows.tracking.params`: the config as params, per role;
- :mod:`~flows.tracking.runs`: runs started or reopened, and always ended (:func:`run_context`);
- :mod:`~flows.tracking.artifacts`: checkpoints, plots, logged models, the pipeline's summary;
- :mod:`~flows.tracking.evaluation`: the pipeline's evaluate stage on a model's run;
- :mod:`~flows.tracking.registry`: the Model Registry's ``champion`` and ``challenger``.

Nothing else in ``flows/`` creates an ``MlflowClient``: it asks :func:`client_for`.
"""

from flows.tracking.artifacts import (
    checkpoint_from_model_uri,
    local_model,
    log_summary,
    log_training_artifacts,
)
from flows.tracking.client import (
    client_for,
    experiment_id,
    find_run,
    log_metrics,
    log_params,
    metric_batch,
    resolve_uri,
    set_tags,
)
from flows.tracking.evaluation import evaluate_and_log, log_evaluation
from flows.tracking.names import (
    BEST_EPOCH,
    CHECKPOINT_ARTIFACT,
    ERROR_TAG,
    EXPERIMENT_KIND_TAG,
    GFLOPS,
    MODEL_ARTIFACT,
    REPORT_SPLIT_TAG,
    RESOLUTION,
    RUN_NAME_TAG,
    TRAINING_EXPERIMENT,
    VIDEOS_PER_S,
    run_name,
)
from flows.tracking.params import role_params
from flows.tracking.runs import (
    FAILED,
    FINISHED,
    TrackedRun,
    end_parent_run,
    end_run,
    parent_run,
    run_context,
    start_parent_run,
    start_run,
    start_training_run,
    training_run,
)

__all__ = [
    "BEST_EPOCH",
    "CHECKPOINT_ARTIFACT",
    "ERROR_TAG",
    "EXPERIMENT_KIND_TAG",
    "FAILED",
    "FINISHED",
    "GFLOPS",
    "MODEL_ARTIFACT",
    "REPORT_SPLIT_TAG",
    "RESOLUTION",
    "RUN_NAME_TAG",
    "TRAINING_EXPERIMENT",
    "VIDEOS_PER_S",
    "TrackedRun",
    "checkpoint_from_model_uri",
    "client_for",
    "end_parent_run",
    "end_run",
    "evaluate_and_log",
    "experiment_id",
    "find_run",
    "local_model",
    "log_evaluation",
    "log_metrics",
    "log_params",
    "log_summary",
    "log_training_artifacts",
    "metric_batch",
    "parent_run",
    "resolve_uri",
    "role_params",
    "run_context",
    "run_name",
    "set_tags",
    "start_parent_run",
    "start_run",
    "start_training_run",
    "training_run",
]
