"""PNG plots of a training run: the confusion matrix and the learning curves (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(
    fig, ax, title: str, path: str | Path, legend: bool = True, grid_which: str = "major"
) -> Path:
    """Title, grid and legend on ``ax``, then ``fig`` written to ``path`` and closed."""
    ax.set_title(title)
    ax.grid(alpha=0.3, which=grid_which)
    if legend:
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    pyplot().close(fig)
    return path


def plot_confusion_matrix(
    confusion: list[list[int]] | np.ndarray,
    class_names: list[str],
    path: str | Path,
    title: str = "Confusion matrix (rows: true class)",
) -> Path:
    """Row-normalised confusion matrix with the counts written in the cells (up to 30 classes)."""
    plt = pyplot()
    cm = np.asarray(confusion, dtype=np.float64)
    k = len(cm)
    names = class_names if len(class_names) == k else [str(i) for i in range(k)]
    rates = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    side = min(2.0 + 0.45 * k, 16.0)
    fig, ax = plt.subplots(figsize=(side, side), dpi=110)
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    if k <= 30:
        ax.set_xticks(range(k), names, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(k), names, fontsize=7)
        for i in range(k):
            for j in range(k):
                if cm[i, j]:
                    ax.text(
                        j,
                        i,
                        int(cm[i, j]),
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if rates[i, j] > 0.5 else "black",
                    )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def plot_learning_curves(
    history: list[dict[str, float]],
    path: str | Path,
    score_name: str = "top-1",
    title: str = "Learning curves",
) -> Path:
    """Training loss (left axis) and training/validation score (right axis) per epoch."""
    plt = pyplot()
    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    ax.plot(epochs, [h["train_loss"] for h in history], color="tab:red", label="train loss")
    if any(h.get("train_kd", 0) for h in history):
        ax.plot(epochs, [h["train_ce"] for h in history], color="tab:red", linestyle=":", label="train CE")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    right = ax.twinx()
    right.plot(
        epochs, [h["train_top1"] for h in history], color="tab:blue", linestyle="--", label="train top-1"
    )
    val = [(h["epoch"], h["val_score"]) for h in history if h.get("val_score", -1) >= 0]
    if val:
        right.plot(*zip(*val, strict=True), color="tab:blue", marker="o", label=f"val {score_name}")
    right.set_ylabel("%")
    lines = ax.get_legend_handles_labels()
    more = right.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=8, loc="center right")
    return save_figure(fig, ax, title, path, legend=False)
