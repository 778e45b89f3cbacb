"""The results page of the ablation study (docs/results.md): tables, plots, efficiency tables and a
discussion written from the numbers, rendered from the records read back from MLflow.

Nothing here trains or talks to MLflow: :func:`render_page` turns records into Markdown, the plot
functions write PNGs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from reskd_core.study import (
    Arm,
    Comparison,
    Record,
    Stat,
    arm_stat,
    by_arm,
    paired_delta,
)

EFFICIENCY_MODELS = (  # (label, model, frames): the paper's four architectures
    ("TSN-R50 (16 frames)", "tsn_r50", 16),
    ("TSM-R50 (8 frames)", "tsm_r50", 8),
    ("SlowOnly-R50 (8x8)", "slowonly_r50", 8),
    ("Swin-S (32x2)", "swin3d_s", 32),
)
EFFICIENCY_RESOLUTIONS = (224, 144, 112, 96, 72, 56)
TRAIN_ACCURACY = "train_top1"  # the last epoch's running training accuracy
KD_SHARE = "train_kd_share"  # the last epoch's mean share of lambda * KD in the training loss
UNLEARNT_FACTOR = 3.0  # an arm whose final train top-1 stays under this many times chance "did not learn"


def unlearnt_arms(records: dict[str, dict[int, Record]], arms: list[str], num_classes: int) -> list[str]:
    """Arms (of ``arms``) whose mean final training accuracy stayed under ``UNLEARNT_FACTOR`` x chance:
    they did not fit their own training set, so their accuracy says more about optimisation than about
    the input they were given."""
    limit = UNLEARNT_FACTOR * 100.0 / num_classes
    out = []
    for arm in dict.fromkeys(arms):
        train = arm_stat(records, arm, TRAIN_ACCURACY)
        if train.n and train.mean < limit:
            out.append(arm)
    return out


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

    def videos(self, split: str) -> int:
        """The number of videos in ``split`` of the dataset (0 when it has none)."""
        return int(self.dataset.get("splits", {}).get(split, 0))


# ---------------------------------------------------------------- tables


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
        gflops = f"{first.metrics['gflops']:.3g}" if first and "gflops" in first.metrics else "-"
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


def flops_markdown(rows: dict[str, dict[int, float]]) -> str:
    """GFLOPs per video: one column per model, one row per resolution."""
    names = list(rows)
    lines = ["| resolution | " + " | ".join(names) + " |", "|---:|" + "---:|" * len(names)]
    for r in EFFICIENCY_RESOLUTIONS:
        lines.append(f"| {r} | " + " | ".join(f"{rows[n][r]:.1f}" for n in names) + " |")
    return "\n".join(lines)


def throughput_markdown(bench: dict | None, tsn_flops: dict[int, float]) -> str:
    if not bench:
        return "_Not measured yet: run `.venv/bin/python benchmarks/throughput.py`._"
    rows = sorted(bench["rows"], key=lambda r: -r["resolution"])
    top = next((r for r in rows if r["resolution"] == 224), rows[0])
    lines = [
        "| resolution | videos/s | ms/video | speed-up vs 224 | GFLOPs ratio vs 224 |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        res = r["resolution"]
        flop_ratio = tsn_flops[224] / tsn_flops[res] if res in tsn_flops and 224 in tsn_flops else math.nan
        lines.append(
            f"| {res} | {r['videos_per_s']:.2f} | {1000 / r['videos_per_s']:.0f} | "
            f"{r['videos_per_s'] / top['videos_per_s']:.2f}x | {flop_ratio:.2f}x |"
        )
    lines.append("")
    lines.append(
        f"Measured by `{bench.get('command', 'benchmarks/throughput.py')}` on {rows[0]['device']} "
        f"({bench.get('date', '?')}), batch {rows[0].get('batch_size', 1)}, resolutions interleaved after "
        f"warm-up, median of {rows[0].get('rounds', '?')} rounds; 224 vs 112 px: "
        f"**{bench.get('ratio_224_vs_112', math.nan):.2f}x** the videos/s at 112."
    )
    return "\n".join(lines)


def gpu_line(gpu: dict | None) -> str:
    if not gpu:
        return "none lent to this task: no GPU numbers (`benchmarks/gpu_benchmark.py` is ready for one)"
    return (
        f"throughput measured on {gpu.get('device', '?')} (see Efficiency); the study itself ran on the CPU"
    )


def gpu_markdown(gpu: dict | None) -> str:
    """GPU throughput and the short GPU distillation run from ``benchmarks/results/gpu.json``, or why
    there is none."""
    if not gpu:
        return (
            "No GPU was lent to this task, so there are no GPU throughput numbers; "
            "`benchmarks/gpu_benchmark.py` is the one script to run on one (all six resolutions, fp32 and "
            "AMP, channels_last, batches that fill the GPU, plus a short distillation run on demo data)."
        )
    rows: dict[int, dict] = {}
    for r in gpu.get("throughput", []):
        rows.setdefault(r["resolution"], {})["amp" if r.get("amp") else "fp32"] = r
    base = rows.get(224, {})
    lines = [
        f"GPU throughput of TSN-R50 ({gpu.get('frames', '?')} frames a video) on {gpu.get('device', '?')} "
        f"(torch {gpu.get('torch', '?')}, channels_last), from `benchmarks/results/gpu.json`:",
        "",
        "| resolution | batch | fp32 videos/s | AMP videos/s | fp32 speed-up vs 224 | AMP speed-up vs 224 "
        "| GFLOPs ratio vs 224 |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def speed(r: dict | None, ref: dict | None) -> str:
        return f"{r['videos_per_s'] / ref['videos_per_s']:.2f}x" if r and ref else "-"

    def vps(r: dict | None) -> str:
        return f"{r['videos_per_s']:.0f}" if r else "-"

    for res in sorted(rows, reverse=True):
        fp32, amp = rows[res].get("fp32"), rows[res].get("amp")
        any_row = fp32 or amp or {}
        ref_gflops = (base.get("fp32") or base.get("amp") or {}).get("gflops")
        ratio = f"{ref_gflops / any_row['gflops']:.2f}x" if ref_gflops and any_row.get("gflops") else "-"
        lines.append(
            f"| {res} | {any_row.get('batch_size', '?')} | {vps(fp32)} | {vps(amp)} "
            f"| {speed(fp32, base.get('fp32'))} | {speed(amp, base.get('amp'))} | {ratio} |"
        )
    first = next(iter(gpu.get("throughput", [])), {})
    lines += [
        "",
        f"Measured by `{gpu.get('command', 'benchmarks/gpu_benchmark.py')}` ({gpu.get('date', '?')}), "
        f"inference, median of {first.get('rounds', '?')} rounds of {first.get('iters', '?')} batches; "
        "batches hold about the same number of pixels at every resolution.",
    ]
    kd = gpu.get("distillation")
    if kd:
        students = [
            f"{m} {kd[f'student_{m}_val_top1']:.1f} ({kd[f'student_{m}_seconds']:.0f} s)"
            for m in ("none", "pixel_mse")
            if f"student_{m}_val_top1" in kd
        ]
        lines += [
            "",
            f"The demo recipe on that GPU (one seed, {kd.get('epochs', '?')} epochs, AMP): teacher "
            f"{kd.get('teacher', '?')} at 112 px {kd.get('teacher_val_top1', math.nan):.1f} val top-1 "
            f"({kd.get('teacher_seconds', math.nan):.0f} s); "
            f"students at {kd.get('student_resolution', '?')} px: " + ", ".join(students) + ". "
            "(Those runs used the demo data and recipe of the date above, which may predate the current "
            "ones; `benchmarks/gpu_benchmark.py` measures them again on a lent GPU.)",
        ]
    return "\n".join(lines)


# ---------------------------------------------------------------- discussion


def _verdict(d: Stat, wins: int) -> str:
    if d.n == 0:
        return "not measured"
    if d.n > 1 and wins == d.n:
        return f"better in all {d.n} seeds"
    if d.n > 1 and wins == 0:
        return f"worse or equal in all {d.n} seeds"
    return f"better in {wins} of {d.n} seeds"


def discussion(
    comparisons: list[Comparison],
    records: dict[str, dict[int, Record]],
    test_videos: int,
    num_classes: int | None = None,
    split: str = "test",
) -> list[str]:
    """Findings, one bullet per comparison, stated from the numbers (nothing here is hand-written per run).

    ``test_videos``: the size of ``split``, the one the accuracies are on. With ``num_classes``, a
    comparison holding arms that did not fit their training set (:func:`unlearnt_arms`) says so."""
    out = []
    video = 100.0 / test_videos if test_videos else math.nan
    for comp in comparisons:
        deltas = [
            (row, *paired_delta(records, row.arm, row.baseline))
            for row in comp.rows
            if row.baseline is not None
        ]
        deltas = [(row, d, w) for row, d, w in deltas if d.n]
        if not deltas:
            out.append(f"**{comp.title}**: no finished pair of arms.")
            continue
        parts = []
        for row, d, wins in deltas:
            base = next(r for r in comp.rows if r.arm == row.baseline)
            size = f"within one {split} video" if abs(d.mean) < video else f"{d.mean:+.1f} points"
            parts.append(f"{row.label} vs {base.label}: {size} ({_verdict(d, wins)})")
        text = f"**{comp.title}**: " + "; ".join(parts) + "."
        if comp.group == "diagnosis":
            worse = [row.label for row, d, w in deltas if d.mean < 0]
            better = [row.label for row, d, w in deltas if d.mean > 0]
            if better and not worse:
                text += " Keeping the scale helped: here the changed scale, not the lost detail, hurt more."
            elif worse and not better:
                text += (
                    " Keeping the scale did not help: here the lost detail hurt more than the changed scale."
                )
            else:
                text += " The two effects do not separate consistently here."
        if comp.group == "sweep":
            none_rows = [r for r in comp.rows if r.baseline is None]
            accs = [(r.label, arm_stat(records, r.arm)) for r in none_rows]
            accs = [(label, s) for label, s in accs if s.n]
            if len(accs) > 1:
                means = [s.mean for _, s in accs]
                falling = all(a >= b for a, b in zip(means, means[1:], strict=False))
                text += (
                    " Without KD, accuracy "
                    + ("falls monotonically" if falling else "does not fall monotonically")
                    + " with resolution ("
                    + ", ".join(f"{label.split(',')[0]}: {s.mean:.1f}" for label, s in accs)
                    + ")."
                )
        stuck = unlearnt_arms(records, [r.arm for r in comp.rows], num_classes) if num_classes else []
        if stuck:
            labels = {r.arm: r.label for r in comp.rows}
            names = "; ".join(labels[a] for a in stuck)
            one = len(stuck) == 1
            text += (
                f" Caution: {names} did not fit {'its training set' if one else 'their training sets'} "
                f"(final train top-1 under {UNLEARNT_FACTOR:g}x chance, see the table), so the differences "
                f"involving {'it' if one else 'them'} measure optimisation from scratch more than the "
                "question asked."
            )
        out.append(text)
    return out


def caveats(test_videos: int, train_videos: int, epochs: tuple[int, int], seeds: int, kd_helped: bool) -> str:
    video = 100.0 / test_videos if test_videos else math.nan
    text = (
        f"These are tiny networks (a 4-block ResNet of width 16) trained from scratch for {epochs[1]} epochs "
        f"on {train_videos} generated videos and tested on {test_videos} (one video = {video:.1f} points), "
        f"{seeds} seed(s) per arm on a 2-core CPU. A difference smaller than a video or two, or one that "
        "does not hold in every seed, is noise at this size. The paper's networks are ResNet-50s and Swins "
        "trained on Kinetics-scale data with ImageNet initialisation; these numbers test whether the "
        "mechanisms show up on data built around the paper's premise, not the paper's figures."
    )
    if not kd_helped:
        text += (
            " **ResKD (pixel_mse) did not consistently beat the no-KD baseline at the low resolution here.** "
            "Likely reasons, none tested separately: the teacher is itself weak (see its accuracy above) and "
            "its feature maps carry little beyond the labels; networks trained from scratch learn these "
            "letters about as fast at low resolution as at high (the letter stays legible by design), so "
            "the baseline has little to gain from a teacher; and the schedule is short, where the paper "
            "distils for 100 epochs from a converged, ImageNet-initialised teacher."
        )
    return text


# ---------------------------------------------------------------- the page


def reskd_helped(comparisons: list[Comparison], records: dict[str, dict[int, Record]]) -> bool:
    """Whether ResKD (pixel_mse from the high-resolution teacher) beat no KD at the low resolution in
    every seed (the KD-variants table's row; the sweep's rows when that table is not run)."""
    kd = [c for c in comparisons if c.group == "kd"] or [c for c in comparisons if c.group == "sweep"]
    rows = [r for c in kd for r in c.rows if r.baseline and r.label.endswith(("pixel_mse", "(pixel_mse)"))]
    for row in rows:
        d, wins = paired_delta(records, row.arm, row.baseline)
        if d.n and wins == d.n and d.mean > 0:
            return True
    return False


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
        "GFLOPs per video (multiply-adds, one view, 400 classes; `reskd flops`, counted on the meta device):",
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
