"""The study's plots: accuracy vs resolution (with and without ResKD) and accuracy vs GFLOPs (PNGs)."""

from __future__ import annotations

import math
from pathlib import Path

from reskd_core.config import Config
from reskd_core.plots import pyplot, save_figure
from reskd_core.study.arms import Arm
from reskd_core.study.stats import Record, Stat, arm_stat, by_arm


def _errorbar(ax, xs, stats, **kw) -> None:
    ax.errorbar(
        xs,
        [s.mean for s in stats],
        yerr=[0.0 if math.isnan(s.std) else s.std for s in stats],
        capsize=3,
        **kw,
    )


def plot_accuracy_vs_resolution(
    series: dict[str, list[tuple[int, Stat]]], path: str | Path, title: str
) -> Path:
    """Mean top-1 (error bars: std over seeds) against input resolution, one line per series."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    for label, points in series.items():
        pts = sorted(((r, s) for r, s in points if s.n), key=lambda p: p[0])
        if pts:
            _errorbar(ax, [r for r, _ in pts], [s for _, s in pts], marker="o", label=label)
    ax.set_xlabel("input resolution (px)")
    ax.set_ylabel("top-1 (%)")
    return save_figure(fig, ax, title, path)


def plot_accuracy_vs_gflops(
    points: dict[str, list[tuple[float, Stat, str]]], path: str | Path, title: str
) -> Path:
    """Mean top-1 against GFLOPs per video (log scale), one marker series per kind of arm."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.2, 4.8), dpi=120)
    for label, pts in points.items():
        pts = sorted((p for p in pts if p[1].n), key=lambda p: p[0])
        if not pts:
            continue
        line = label.startswith(("no KD", "ResKD"))
        _errorbar(
            ax,
            [g for g, _, _ in pts],
            [s for _, s, _ in pts],
            marker="*" if label.startswith("teacher") else "o",
            markersize=12 if label.startswith("teacher") else 6,
            linestyle="-" if line else "none",
            label=label,
        )
        for g, s, note in pts:
            ax.annotate(note, (g, s.mean), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("GFLOPs per video")
    ax.set_ylabel("top-1 (%)")
    return save_figure(fig, ax, title, path, grid_which="both")


def plot_study(
    cfg: Config, arms: list[Arm], records: list[Record], out_dir: str | Path, split: str = "test"
) -> dict[str, Path]:
    """Both plots of the page into ``out_dir`` (the records' accuracy is on ``split``); returns
    ``{caption: path}``."""
    recs = by_arm(records)
    st, s = cfg.study, cfg.student
    teacher = next(a for a in arms if a.role == "teacher" and a.resolution == cfg.teacher.resolution)
    keys = {a.key for a in arms}

    def stat(arm: Arm) -> Stat | None:
        return arm_stat(recs, arm.key) if arm.key in keys else None

    def line(arms_by_res: dict[int, Arm]) -> list[tuple[int, Stat]]:
        return [(r, x) for r, a in arms_by_res.items() if (x := stat(a)) is not None]

    sweep = sorted(set(st.resolutions))
    series = {
        f"{s.name}, no KD (teacher at {teacher.resolution} px)": line(
            {teacher.resolution: teacher} | {r: Arm(s.name, r, s.width) for r in sweep}
        ),
        f"{s.name}, ResKD (pixel_mse)": line(
            {r: Arm(s.name, r, s.width, kd="pixel_mse", teacher=teacher.key) for r in sweep}
        ),
        f"{st.stride_model}, no KD": line(
            {r: Arm(st.stride_model, r, s.width) for r in {*st.stride_resolutions, st.super_low_resolution}}
        ),
        f"{st.stride_model}, ResKD (pixel_mse)": line(
            {
                st.super_low_resolution: Arm(
                    st.stride_model, st.super_low_resolution, s.width, kd="pixel_mse", teacher=teacher.key
                )
            }
        ),
        f"{s.name}, down-up input, no KD": line(
            {r: Arm(s.name, r, s.width, input="down_up") for r in st.diagnosis_resolutions}
        ),
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = {
        "Accuracy vs resolution, with and without ResKD": plot_accuracy_vs_resolution(
            {k: v for k, v in series.items() if v},
            out_dir / "accuracy_vs_resolution.png",
            f"{cfg.pipeline.dataset} data: {split} top-1 vs input resolution (mean ± std over seeds)",
        )
    }
    points: dict[str, list[tuple[float, Stat, str]]] = {}
    for arm in arms:
        runs = recs.get(arm.key)
        if not runs:
            continue
        gflops = next(iter(runs.values())).metrics.get("gflops_per_video")
        if gflops is None:
            continue
        if arm.role == "teacher":
            kind = "teachers"
        elif arm.input == "down_up":
            kind = "down-up input, no KD"
        elif arm.kd == "none" and arm.model == s.name and arm.width == s.width:
            kind = f"no KD ({s.name})"
        elif (
            arm.kd == "pixel_mse"
            and arm.teacher == teacher.key
            and arm.model == s.name
            and arm.teacher_bn == "train"
        ):
            kind = f"ResKD pixel_mse ({s.name})"
        else:
            kind = "other arms (strides, KD variants, widths)"
        note = f"{arm.resolution}" + ("" if arm.kd == "none" else f" {arm.kd}")
        if arm.model != s.name or arm.width != s.width:
            note = f"{arm.model}{f'-w{arm.width}' if arm.width else ''} {note}"
        points.setdefault(kind, []).append((float(gflops), arm_stat(recs, arm.key), note))
    plots["Accuracy vs GFLOPs per video"] = plot_accuracy_vs_gflops(
        points,
        out_dir / "accuracy_vs_gflops.png",
        f"{cfg.pipeline.dataset} data: {split} top-1 vs GFLOPs per video (mean ± std over seeds)",
    )
    return plots
