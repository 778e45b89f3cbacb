"""The names reskd's MLflow runs are read by: tags, metric names, and readable run names.

One name per quantity, the same wherever it is logged and read (the flows, the study, the registry, the
docs). Per-epoch curves are ``train_*`` and ``val_*`` at step = epoch; everything measured on the chosen
(best-val) checkpoint is logged at step = that epoch: ``best_epoch``, ``best_val_*``, the report split's
``test_*``, and the model's ``resolution_px``, ``gflops_per_video`` and ``videos_per_s``.
"""

from __future__ import annotations

from reskd_core.config import Config

# ------------------------------------------------------------------ tags
RUN_NAME_TAG = "reskd.run_name"  # the job's key: a rerun of the same job reopens its run
ROLE_TAG = "reskd.role"
KIND_TAG = "reskd.kind"
ERROR_TAG = "reskd.error"
REPORT_SPLIT_TAG = "reskd.report_split"  # the split a run's reported accuracy is on (test, or val)
PARENT_TAG = "mlflow.parentRunId"
# MLflow 3's experiment kind: without it the UI opens an experiment on its GenAI overview (traces); with
# ``custom_model_development`` on the training runs (the UI's ExperimentKind.CUSTOM_MODEL_DEVELOPMENT)
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
TRAINING_EXPERIMENT = "custom_model_development"

# ------------------------------------------------------------------ metrics of the chosen checkpoint
BEST_EPOCH = "best_epoch"
RESOLUTION = "resolution_px"  # the input side the model was trained and evaluated at
GFLOPS = "gflops_per_video"  # multiply-adds of one clip at that resolution
VIDEOS_PER_S = "videos_per_s"  # inference throughput measured after training
START_EPOCH = "start_epoch"  # per (re)start of a training job, at step = the epoch it resumed after
SELECTED_ACCURACY = "selected_accuracy"  # on the parent run: the registered student's
SELECTED_GFLOPS = "selected_" + GFLOPS

# ------------------------------------------------------------------ metrics of a batch-prediction run
PREDICTED = "videos_predicted"  # rows written, error rows included
PREDICT_ERRORS = "videos_unreadable"
PREDICT_ACCURACY = "predict_top1"  # percent, over the readable videos whose label is known
DECODE_SHARE = "decode_share"  # share of the per-video time spent decoding and preprocessing
MODEL_VERSION_TAG = "reskd.model_version"  # what made the predictions: name/version, or a file
PREDICTIONS_TAG = "reskd.predictions_uri"

# ------------------------------------------------------------------ artifacts
CHECKPOINT_ARTIFACT = "checkpoint"  # the best checkpoint is logged as checkpoint/checkpoint.pt
MODEL_ARTIFACT = "model"


def run_name(cfg: Config, role: str) -> str:
    """The run's name in the MLflow UI: ``teacher 112px``, ``student 56px pixel_mse``, ``student 56px no
    KD``; other roles (``pipeline``, ``study``) are ``<config name> <role>``."""
    if role == "teacher":
        return f"teacher {cfg.teacher.resolution}px"
    if role == "student":
        kd = "no KD" if cfg.kd.method == "none" else cfg.kd.method
        return f"student {cfg.student.resolution}px {kd}"
    return f"{cfg.name} {role}"
