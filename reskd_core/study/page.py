"""The results page of the ablation study (docs/results.md), rendered from the records read back from
MLflow: the header, the Findings, one table per comparison, Efficiency and the list of arms.

Nothing here trains or talks to MLflow: :func:`render_page` turns records into Markdown.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from reskd_core.study.arms import Arm
from reskd_core.study.efficiency import (
    EFFICIENCY_MODELS,
    flops_markdown,
    gpu_line,
    gpu_markdown,
    throughput_markdown,
)
from reskd_core.study.findings import caveats, discussion, reskd_helped, target_lines
from reskd_core.study.plan import Comparison
from reskd_core.study.stats import KD_SHARE, TRAIN_ACCURACY, Record, Stat, arm_stat, by_arm, paired_delta


@dataclass
class PageInfo:
    """Everything the page says about how it was made."""

    command: str
    date: str
    machine: str
    wall_s: float
    tracking_uri: str
    experiment: str
    parent_run_id: str
    recipe: str
    epochs: tuple[int, int]  # teacher, student
    seeds: list[int]
    frames: int
    load_resolution: int
    dataset: dict
    provenance: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # "arm seed N" -> reason
    plots: dict[str, str] = field(default_factory=dict)  # name -> path relative to the page
    quick: bool = False
    val_split: str = "val"  # selects each arm's best epoch
    report_split: str = "test"  # the tables' accuracy: the best epoch's model on it (val: no test split)
    stride_model: str = "tsn_tiny_s"  # the (1, 1, 2, 2)-stride student of the quarter-resolution target

    def videos(self, split: str) -> int:
        """The number of videos in ``split`` of the dataset (0 when it has none)."""
        return int(self.dataset.get("splits", {}).get(split, 0))


def comparison_table(comp: Comparison, records: dict[str, dict[int, Record]], split: str = "test") -> str:
    """One comparison's table; the records' accuracy is on ``split``."""
    lines = [
        f"| arm | GFLOPs/video | last map | {split} top-1 (%) | n | Δ top-1 vs baseline (paired) | better in "
        "| train top-1 (%) | KD share of loss (%) |",
        "|---|---:|:---:|---:|---:|---:|:---:|---:|---:|",
    ]
    baselines = {row.baseline for row in comp.rows}
    for row in comp.rows:
        acc = arm_stat(records, row.arm)
        runs = records.get(row.arm, {})
        first = next(iter(runs.values()), None)
        gflops = (
            f"{first.metrics['gflops_per_video']:.3g}"
            if first and "gflops_per_video" in first.metrics
            else "-"
        )
        fmap = (
            f"{int(first.metrics['feature_h'])}×{int(first.metrics['feature_w'])}"
            if first and "feature_h" in first.metrics
            else "-"
        )
        delta, better = "(baseline)" if row.arm in baselines else "(reference)", ""
        if row.baseline is not None:
            d, wins = paired_delta(records, row.arm, row.baseline)
            delta = d.fmt(1, signed=True)
            better = f"{wins}/{d.n}" if d.n else "-"
        train = arm_stat(records, row.arm, TRAIN_ACCURACY)
        share = arm_stat(records, row.arm, KD_SHARE)  # 0 for arms without KD: shown as "-"
        kd = Stat(100 * share.mean, 100 * share.std, share.n).fmt(1) if share.n and share.mean > 0 else "-"
        lines.append(
            f"| {row.label} | {gflops} | {fmap} | {acc.fmt(1)} | {acc.n} | {delta} | {better} "
            f"| {train.fmt(1)} | {kd} |"
        )
    return "\n".join(lines)


def protocol(info: PageInfo, val_videos: int, test_videos: int) -> str:
    """How the tables' accuracy was measured: which split picks the epoch, which one reports it."""
    if info.report_split == info.val_split:
        return (
            f"Accuracy is top-1 of each arm's best epoch on the {info.val_split} split ({val_videos} "
            "videos). "
            "**These shards have no test split**, so the same videos chose the epoch and report it: the "
            "numbers are optimistic."
        )
    return (
        f"Accuracy is top-1 on the {info.report_split} split ({test_videos} videos) of each arm's model at "
        f"its best epoch, selected on the {info.val_split} split ({val_videos} videos, never used to report)."
    )


def render_page(
    info: PageInfo,
    arms: list[Arm],
    comparisons: list[Comparison],
    records: list[Record],
    flops: dict[str, dict[int, float]],
    throughput: dict | None,
    gpu: dict | None = None,
) -> str:
    """The whole results page (Markdown). ``throughput``/``gpu``: the benchmarks' JSON (None: not run)."""
    recs = by_arm(records)
    ds = info.dataset
    val_videos, test_videos = info.videos(info.val_split), info.videos(info.report_split)
    train_videos = info.videos("train")
    fallback = info.report_split == info.val_split  # the shards have no test split
    kd_helped = reskd_helped(comparisons, recs)
    h = [
        "# ResKD results: the paper's comparisons on the demo data",
        "",
        "_Generated by `reskd study`; do not edit by hand. Every number below was read back from the "
        "MLflow runs of one study run._",
        "",
    ]
    if info.quick:
        h += ["> **Quick mode** (`--quick`): a smoke run on a tiny dataset with one epoch. Not results.", ""]
    h += [
        "| | |",
        "|---|---|",
        f"| command | `{info.command}` |",
        f"| date | {info.date} |",
        f"| machine | {info.machine} |",
        f"| wall time | {info.wall_s / 60:.1f} min |",
        f"| recipe | `{info.recipe}`; {info.frames} segments a video, clips loaded at "
        f"{info.load_resolution} px, teacher {info.epochs[0]} / students {info.epochs[1]} epochs |",
        f"| seeds | {', '.join(map(str, info.seeds))} (every arm of a seed sees the same batches) |",
        f"| dataset | demo data: {ds.get('num_classes', '?')} classes, {train_videos} train / "
        f"{val_videos} {info.val_split}"
        + ("" if fallback else f" / {test_videos} {info.report_split}")
        + f" videos, fingerprint `{str(ds.get('fingerprint', '?'))[:12]}` |",
        f"| MLflow | experiment `{info.experiment}`, parent run `{info.parent_run_id}` "
        f"at `{info.tracking_uri}` |",
        f"| GPU | {gpu_line(gpu)} |",
        "",
        protocol(info, val_videos, test_videos)
        + " Mean ± sample std over seeds; Δ is the paired difference (same seed, same batches) against the "
        "row's baseline; 'better in' counts the seeds where the arm beat it. GFLOPs are multiply-adds per "
        "video at the arm's input size (a down-up arm pays the full size). KD share is the weighted KD "
        "term's part of the training loss in the last epoch (λ · mean KD / mean loss).",
        "",
    ]
    if info.failed:
        h += ["**Arms that failed** (left out of the tables):", ""]
        h += [f"- {k}: {v}" for k, v in sorted(info.failed.items())] + [""]
    h += ["## Findings", ""]
    classes = ds.get("num_classes")
    h += [
        f"- {line}"
        for line in discussion(
            comparisons, recs, test_videos, int(classes) if classes else None, info.report_split
        )
    ]
    h += ["", caveats(test_videos, train_videos, info.epochs, len(info.seeds), kd_helped), ""]
    goals = target_lines(arms, recs, info.stride_model)
    if goals:
        h += [
            "## Targets",
            "",
            f"What the demo data and recipe are meant to show, on the {info.report_split} split:",
            "",
        ]
        h += [f"- {line}" for line in goals] + [""]
    if info.provenance:
        h += ["Provenance: " + " ".join(info.provenance), ""]
    if info.plots:
        h += ["## Plots", ""]
        for name, rel in info.plots.items():
            h += [f"![{name}]({rel})", ""]
    for comp in comparisons:
        h += [f"## {comp.title}", "", comp.question, "", comparison_table(comp, recs, info.report_split), ""]
    h += [
        "## Efficiency",
        "",
        "GFLOPs per video (multiply-adds, one view, 400 classes; `reskd flops`, counted on the meta device). "
        "`reskd flops --convention fvcore` counts what fvcore and mmaction2's `get_flops` count, the "
        "multiply-adds plus the norm layers (BatchNorm at inference 2 FLOPs per element, LayerNorm and "
        "GroupNorm 5): ResNet-50 at 224 px is 4.089 GFLOPs a frame as multiply-adds, 4.111 under fvcore's "
        "convention:",
        "",
        flops_markdown(flops),
        "",
        "CPU throughput of TSN-R50 (16 frames), from `benchmarks/results/throughput_cpu.json`:",
        "",
        throughput_markdown(throughput, flops.get(EFFICIENCY_MODELS[0][0], {})),
        "",
        gpu_markdown(gpu),
        "",
        "## Arms",
        "",
        "| arm | role | seeds finished |",
        "|---|---|---:|",
    ]
    h += [f"| `{a.key}` | {a.role} | {len(recs.get(a.key, {}))} |" for a in arms]
    h.append("")
    return "\n".join(h)
