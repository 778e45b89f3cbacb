"""Evaluation: top-1/top-5 (single-label), mAP on multi-hot labels (multi-label), per-class accuracy,
confusion matrix; run on one process or gathered across DDP ranks.

Metric values in the dicts returned here are percentages (``top1 = 71.3``); the pure
:func:`mean_average_precision` returns a fraction in [0, 1].
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from reskd_core.config import Config
from reskd_core.distill import model_input

log = logging.getLogger(__name__)


def average_precision(scores: np.ndarray, positives: np.ndarray) -> float:
    """AP of one class: ``sum_n (R_n - R_{n-1}) * P_n`` over the distinct score thresholds.

    Tied scores form one threshold (so the result does not depend on the order of ties), as in
    scikit-learn's ``average_precision_score``. NaN when the class has no positive.
    """
    y = np.asarray(positives, dtype=bool)
    if not y.any():
        return float("nan")
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    s, y = np.asarray(scores, dtype=np.float64)[order], y[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tp = np.cumsum(y)[last_of_tie]
    precision = tp / (last_of_tie + 1)
    recall = tp / tp[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def mean_average_precision(scores: np.ndarray, targets: np.ndarray) -> float:
    """mAP in [0, 1]: the mean over classes of :func:`average_precision`.

    ``scores`` and ``targets`` are ``(N, K)``; ``targets`` is multi-hot (0/1). Classes without any
    positive in ``targets`` are left out of the mean (their AP is undefined).
    """
    scores, targets = np.asarray(scores), np.asarray(targets)
    if scores.shape != targets.shape or scores.ndim != 2:
        raise ValueError(f"scores {scores.shape} and targets {targets.shape} must both be (N, K)")
    aps = [average_precision(scores[:, k], targets[:, k]) for k in range(scores.shape[1])]
    valid = [a for a in aps if not np.isnan(a)]
    if not valid:
        raise ValueError("no class has a positive label: mAP is undefined")
    return float(np.mean(valid))


def confusion_matrix(predictions: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """``(K, K)`` counts, rows the true class, columns the predicted one."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (labels, predictions), 1)
    return cm


def compute_metrics(scores: np.ndarray, targets: np.ndarray, multi_label: bool) -> dict[str, Any]:
    """All metrics of one evaluation, in percent.

    Single-label (``targets`` class ids ``(N,)``): ``top1``, ``top5``, ``mean_class_acc``,
    ``per_class_acc`` (list; NaN for a class absent from the split) and ``confusion`` (list of lists).
    Multi-label (``targets`` multi-hot ``(N, K)``): ``mAP``, ``per_class_ap`` and ``top1`` (the top-scored
    class is one of the video's labels).
    """
    scores = np.asarray(scores, dtype=np.float64)
    n, k = scores.shape
    if n == 0:
        raise ValueError("no predictions to evaluate (empty split?)")
    top = np.argsort(-scores, axis=1, kind="stable")
    if multi_label:
        targets = np.asarray(targets) > 0
        aps = [average_precision(scores[:, c], targets[:, c]) for c in range(k)]
        valid = [a for a in aps if not np.isnan(a)]
        return {
            "n": n,
            "mAP": 100.0 * float(np.mean(valid)) if valid else float("nan"),
            "top1": 100.0 * float(targets[np.arange(n), top[:, 0]].mean()),
            "per_class_ap": [100.0 * a for a in aps],
        }
    labels = np.asarray(targets, dtype=np.int64)
    hits5 = (top[:, : min(5, k)] == labels[:, None]).any(axis=1)
    cm = confusion_matrix(top[:, 0], labels, k)
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(support > 0, 100.0 * np.diag(cm) / support, np.nan)
    return {
        "n": n,
        "top1": 100.0 * float((top[:, 0] == labels).mean()),
        "top5": 100.0 * float(hits5.mean()),
        "mean_class_acc": float(np.nanmean(per_class)),
        "per_class_acc": per_class.tolist(),
        "confusion": cm.tolist(),
    }


def primary_metric(metrics: dict[str, Any], multi_label: bool) -> float:
    """The number that ranks models: mAP for multi-label data, else top-1."""
    return float(metrics["mAP"] if multi_label else metrics["top1"])


def scalar_metrics(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """The numeric entries only (what goes to MLflow / Ray reports)."""
    return {f"{prefix}{k}": float(v) for k, v in metrics.items() if isinstance(v, (int, float))}


@torch.no_grad()
def predict(
    model: nn.Module,
    batches: Iterable[dict],
    *,
    device: torch.device,
    resolution: int,
    amp: bool = False,
    progress: Callable[[int], None] | None = None,
    input_mode: str = "direct",
) -> tuple[np.ndarray, np.ndarray]:
    """Softmax scores and targets of every item in ``batches``, gathered from all DDP ranks.

    Clips are down-sampled to ``resolution`` (the model's) the same way training does
    (:func:`~reskd_core.distill.model_input` with ``input_mode``).
    """
    was_training = model.training
    model.eval()
    autocast = torch.autocast("cuda", dtype=torch.float16) if amp and device.type == "cuda" else nullcontext()
    scores, targets = [], []
    with autocast:
        for batch in batches:
            clip = model_input(batch["clip"].to(device, non_blocking=True), resolution, input_mode)
            logits, _ = model(clip)
            scores.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
            targets.append(batch["label"].numpy())
            if progress:
                progress(len(clip))
    model.train(was_training)
    local = (
        np.concatenate(scores) if scores else np.zeros((0, 0), np.float32),
        np.concatenate(targets) if targets else np.zeros((0,), np.float32),
    )
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        parts: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(parts, local)
        parts = [p for p in parts if len(p[0])]
        if not parts:
            return local
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    return local


def evaluate_model(
    model: nn.Module,
    batches: Iterable[dict],
    *,
    device: torch.device,
    resolution: int,
    multi_label: bool,
    amp: bool = False,
    progress: Callable[[int], None] | None = None,
    input_mode: str = "direct",
) -> dict[str, Any]:
    """:func:`predict` then :func:`compute_metrics`."""
    scores, targets = predict(
        model,
        batches,
        device=device,
        resolution=resolution,
        amp=amp,
        progress=progress,
        input_mode=input_mode,
    )
    return compute_metrics(scores, targets, multi_label)


def report_split(cfg: Config, splits: Iterable[str]) -> str:
    """The split results are reported on: ``data.test_split`` when the shards have it (``splits``: their
    split names, e.g. the manifest's ``splits``), else ``data.val_split`` with a warning, since that is
    the split the best epoch was chosen on, so the number is optimistic."""
    names = set(splits)
    if cfg.data.test_split in names:
        return cfg.data.test_split
    log.warning(
        "the shards have no split %r (they hold %s): reporting on %r, the split that selects the best epoch",
        cfg.data.test_split,
        ", ".join(sorted(names)) or "none",
        cfg.data.val_split,
    )
    return cfg.data.val_split


def report_prefix(cfg: Config, split: str) -> str:
    """Prefix of the names reported metrics are logged under: ``test_`` (the split's name), or
    ``best_val_`` when they fall back to the validation split: the best epoch's model on the split that
    chose it, which is also what training logs (and no clash with its per-epoch ``val_*``)."""
    return "best_val_" if split == cfg.data.val_split else f"{split}_"


def load_resolution(cfg: Config) -> int:
    """Resolution clips are read at: the teacher's; a student's input is made by down-sampling it."""
    return cfg.teacher.resolution


def evaluate_checkpoint(
    checkpoint: str,
    shards_uri: str,
    split: str,
    cfg: Config,
    *,
    device: str = "cpu",
    progress: Callable[[int], None] | None = None,
    total: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Metrics (percent) of a checkpoint (path, directory or ``s3://`` URI) on one split of the shards.

    The architecture and resolutions come from the checkpoint's own config; data settings (segments,
    batch size, loader workers) from ``cfg``. Raises :class:`~reskd_core.checkpoint.CheckpointError`
    naming the file when it is not a readable reskd checkpoint.
    """
    from reskd_core.checkpoint import checkpoint_config, load_checkpoint, model_from_checkpoint
    from reskd_core.data.dataset import ClipDataset
    from reskd_core.job import spec_for

    state = load_checkpoint(checkpoint)
    model, resolution = model_from_checkpoint(state)
    trained = checkpoint_config(state)
    dev = torch.device(device)
    model.to(dev)
    data = cfg.data.model_copy(
        update={"num_segments": trained.data.num_segments, "multi_label": trained.data.multi_label}
    )
    ds = ClipDataset(shards_uri, split, data, resolution=load_resolution(trained), train=False)
    if ds.num_classes != state["num_classes"]:
        raise ValueError(
            f"shards {shards_uri} have {ds.num_classes} classes, checkpoint {checkpoint} was trained on "
            f"{state['num_classes']}"
        )
    if total:
        total(len(ds))
    loader = torch.utils.data.DataLoader(ds, batch_size=data.batch_size, num_workers=data.loader_workers)
    spec = spec_for(trained, state["role"])
    metrics = evaluate_model(
        model,
        loader,
        device=dev,
        resolution=resolution,
        multi_label=ds.multi_label,
        progress=progress,
        input_mode=spec.input,
    )
    metrics.update(resolution=resolution, role=state["role"], epoch=state["epoch"])
    log.info("%s on %s/%s: %s", checkpoint, shards_uri, split, scalar_metrics(metrics))
    return metrics
