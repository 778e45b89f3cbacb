"""Summaries of a pipeline run: the results table, the resolution search, accuracy-vs-GFLOPs plots."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass
class ResultRow:
    """One trained model as the summary sees it."""

    role: str  # "teacher" or "student"
    model: str
    resolution: int
    kd: str  # KD method; "none" for the teacher and the baselines
    accuracy: float  # top-1 (single-label) or mAP (multi-label), in percent, on `split`
    gflops: float
    videos_per_s: float | None = None
    run_id: str | None = None
    checkpoint: str | None = None
    extra: dict = field(default_factory=dict)
    split: str = ""  # the split `accuracy` was measured on ("": not recorded)

    @property
    def label(self) -> str:
        return "teacher" if self.role == "teacher" else f"{self.kd}@{self.resolution}"


@dataclass
class Summary:
    rows: list[ResultRow]
    best: ResultRow | None  # highest-accuracy student
    selected: ResultRow | None  # the one to register: best, or the search's pick
    reason: str

    def as_dict(self) -> dict:
        return {
            "rows": [asdict(r) for r in self.rows],
            "best": asdict(self.best) if self.best else None,
            "selected": asdict(self.selected) if self.selected else None,
            "reason": self.reason,
        }


def summarize(rows: list[ResultRow], max_accuracy_drop: float | None = None) -> Summary:
    """Pick the student to register.

    Without ``max_accuracy_drop``: the most accurate student (ties: fewer GFLOPs). With it (points
    below the teacher): the lowest-GFLOPs student whose accuracy is within the drop; if none is
    within it, the most accurate student, and the reason says so.
    """
    students = [r for r in rows if r.role == "student"]
    teacher = next((r for r in rows if r.role == "teacher"), None)
    if not students:
        return Summary(rows, None, None, "no student was trained")
    best = max(students, key=lambda r: (r.accuracy, -r.gflops))
    if max_accuracy_drop is None:
        return Summary(rows, best, best, "most accurate student")
    if teacher is None:
        raise ValueError("max_accuracy_drop needs the teacher's accuracy in the rows")
    floor = teacher.accuracy - max_accuracy_drop
    within = [r for r in students if r.accuracy >= floor]
    if not within:
        return Summary(
            rows,
            best,
            best,
            f"no student within {max_accuracy_drop} points of the teacher ({teacher.accuracy:.2f}); "
            "registering the most accurate one",
        )
    pick = min(within, key=lambda r: (r.gflops, -r.accuracy))
    return Summary(
        rows,
        best,
        pick,
        f"lowest-GFLOPs student within {max_accuracy_drop} points of the teacher "
        f"({teacher.accuracy:.2f} -> floor {floor:.2f})",
    )


def report_splits(rows: list[ResultRow]) -> str:
    """The split(s) the rows' accuracies are on, for a column header: ``test`` ('' when not recorded)."""
    return " / ".join(dict.fromkeys(r.split for r in rows if r.split))


def markdown_table(summary: Summary, metric_name: str = "top-1", val_split: str | None = None) -> str:
    """The summary as a Markdown table (the Prefect artifact and the MLflow parent run's table).

    The accuracy column names the split it is on; when that is ``val_split`` (shards without a test
    split), a line under the table says the number is measured on the split that chose the epoch.
    """
    split = report_splits(summary.rows)
    column = f"{split} {metric_name}" if split else metric_name
    lines = [
        f"| model | role | resolution | KD | {column} (%) | GFLOPs/video | videos/s | selected |",
        "|---|---|---:|---|---:|---:|---:|:---:|",
    ]
    for r in sorted(summary.rows, key=lambda r: (r.role != "teacher", -r.resolution, r.kd)):
        vps = f"{r.videos_per_s:.1f}" if r.videos_per_s else "-"
        mark = "**yes**" if summary.selected is r else ""
        lines.append(
            f"| {r.model} | {r.role} | {r.resolution} | {r.kd} | {r.accuracy:.2f} | "
            f"{r.gflops:.3f} | {vps} | {mark} |"
        )
    lines.append("")
    if split:
        lines.append(f"{column}: each model's best checkpoint (its epoch chosen on validation) on {split}.")
        if val_split is not None and split == val_split:
            lines.append(
                f"The shards have no test split: {split} also chose the epochs (optimistic numbers)."
            )
    lines.append(f"Selected: {summary.selected.label if summary.selected else 'none'} ({summary.reason}).")
    return "\n".join(lines)


def plot_accuracy_vs_gflops(
    rows: list[ResultRow],
    path: str | Path,
    metric_name: str = "top-1",
    title: str = "Accuracy vs GFLOPs per video",
) -> Path:
    """One point per model: teacher as a star, baselines as open circles, ResKD students filled."""
    from reskd_core.plots import pyplot, save_figure

    fig, ax = pyplot().subplots(figsize=(6.4, 4.4), dpi=120)
    for kd in sorted({r.kd for r in rows if r.role == "student"}):
        pts = sorted((r for r in rows if r.role == "student" and r.kd == kd), key=lambda r: r.gflops)
        style = dict(marker="o", mfc="white") if kd == "none" else dict(marker="o")
        ax.plot(
            [r.gflops for r in pts],
            [r.accuracy for r in pts],
            label="baseline (no KD)" if kd == "none" else f"ResKD ({kd})",
            **style,
        )
        for r in pts:
            ax.annotate(
                f"{r.resolution}px",
                (r.gflops, r.accuracy),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=8,
            )
    for r in rows:
        if r.role == "teacher":
            ax.plot(
                [r.gflops],
                [r.accuracy],
                marker="*",
                markersize=14,
                linestyle="none",
                color="black",
                label=f"teacher {r.resolution}px",
            )
    ax.set_xlabel("GFLOPs per video")
    ax.set_ylabel(f"{metric_name} (%)")
    return save_figure(fig, ax, title, path)
