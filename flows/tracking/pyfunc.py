"""The MLflow model that takes videos: a pyfunc around a reskd checkpoint, bundling the test-input chain
(:mod:`reskd_core.data.preprocess`), the class names and the resolution.

Input: a table with a column ``video`` (the file's bytes, base64) or ``uri`` (a path or ``s3://`` URI the
server can read) per row, and an optional ``id``. Output: one row per input with ``label``, ``score``,
the top-k ``labels`` and ``scores``, and ``error`` (the reason, for a video that cannot be read). This is
the model the pipeline registers as ``reskd-<dataset>``, so ``mlflow models serve -m
models:/reskd-demo@champion`` answers ``POST /invocations`` with labels.
"""

from __future__ import annotations

import base64
import binascii
import logging
import tempfile
from pathlib import Path
from typing import Any

import mlflow
from mlflow.models import ModelSignature
from mlflow.types.schema import Array, ColSpec, Schema

from flows.tracking.client import client_for, resolve_uri
from reskd_core.config import Config

log = logging.getLogger(__name__)

VIDEO_MODEL_ARTIFACT = "video_model"
VIDEO_MODEL_TAG = "reskd.video_model_uri"  # on the run: the logged video model and the checkpoint it holds
VIDEO_MODEL_CHECKPOINT_TAG = "reskd.video_model_checkpoint"

SIGNATURE = ModelSignature(
    inputs=Schema(
        [
            ColSpec("string", "video", required=False),
            ColSpec("string", "uri", required=False),
            ColSpec("string", "id", required=False),
        ]
    ),
    outputs=Schema(
        [
            ColSpec("string", "id"),
            ColSpec("string", "label", required=False),
            ColSpec("double", "score", required=False),
            ColSpec(Array("string"), "labels"),
            ColSpec(Array("double"), "scores"),
            ColSpec("string", "error", required=False),
        ]
    ),
)


def _text(value: Any) -> str | None:
    """A cell as a non-empty string, else None (pandas gives NaN for a column a row lacks)."""
    return value if isinstance(value, str) and value else None


class VideoModel(mlflow.pyfunc.PythonModel):
    """Labels for videos given as base64 bytes or URIs; ``top_k`` labels each."""

    def __init__(self, top_k: int = 5, batch_size: int = 8) -> None:
        self.top_k, self.batch_size = top_k, batch_size

    def load_context(self, context: Any) -> None:
        from reskd_core.predict import TorchClassifier

        self.classifier = TorchClassifier(context.artifacts["checkpoint"])

    def predict(self, context: Any, model_input: Any, params: dict[str, Any] | None = None) -> Any:
        import pandas as pd

        from reskd_core.predict import VideoItem, predict_items, prediction_row

        records = pd.DataFrame(model_input).to_dict("records")
        items, bad = [], {}
        for i, rec in enumerate(records):
            video, uri = _text(rec.get("video")), _text(rec.get("uri"))
            name = _text(rec.get("id")) or uri or f"video-{i}"
            if video is not None:
                try:
                    items.append(VideoItem(name, base64.b64decode(video, validate=True)))
                except (binascii.Error, ValueError):
                    bad[i] = "video is not base64"
                    items.append(VideoItem(name))
            else:
                items.append(VideoItem(name, uri))
                if uri is None:
                    bad[i] = "row has neither video nor uri"
        k = int((params or {}).get("top_k", self.top_k))
        clf = self.classifier
        rows = [prediction_row(p, clf.class_names, k, clf.name) for p in predict_items(clf, items)]
        for i, reason in bad.items():
            rows[i] = {**rows[i], "error": reason}
        out = pd.DataFrame(rows)[["video", "label", "score", "labels", "scores", "error"]].astype(object)
        return out.where(out.notna(), None).rename(columns={"video": "id"})  # null, not NaN, in the JSON


def log_video_model(cfg: Config, run_id: str, checkpoint: str, top_k: int | None = None) -> str:
    """Log :class:`VideoModel` holding ``checkpoint`` (path or ``s3://`` URI) on run ``run_id``; its URI.

    A run that already holds the video model of the same checkpoint gives that one back."""
    import torch

    from reskd_core.data import storage

    client = client_for(cfg.tracking.uri)
    tags = client.get_run(run_id).data.tags
    if tags.get(VIDEO_MODEL_CHECKPOINT_TAG) == checkpoint and tags.get(VIDEO_MODEL_TAG):
        return tags[VIDEO_MODEL_TAG]
    status = client.get_run(run_id).info.status
    mlflow.set_tracking_uri(resolve_uri(cfg.tracking.uri))
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "checkpoint.pt"
        local.write_bytes(storage.read_bytes(checkpoint))
        with mlflow.start_run(run_id=run_id, nested=True):
            info = mlflow.pyfunc.log_model(
                name=VIDEO_MODEL_ARTIFACT,
                python_model=VideoModel(top_k or cfg.predict.top_k, cfg.predict.batch_size),
                artifacts={"checkpoint": str(local)},
                signature=SIGNATURE,
                pip_requirements=[
                    f"torch=={torch.__version__.split('+')[0]}",
                    "decord==0.6.0",
                    "av",
                    "pandas",
                    "pyarrow",
                    "fsspec",
                    "s3fs",
                ],
            )
    client.update_run(run_id, status=status)  # start_run(run_id) ends the run FINISHED: put it back
    client.set_tag(run_id, VIDEO_MODEL_TAG, info.model_uri)
    client.set_tag(run_id, VIDEO_MODEL_CHECKPOINT_TAG, checkpoint)
    log.info("logged the video model of %s on run %s: %s", checkpoint, run_id, info.model_uri)
    return info.model_uri
