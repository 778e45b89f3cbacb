"""The Efficiency section of the results page: GFLOPs of the paper's architectures per resolution, and
the CPU and GPU throughput measured by the benchmarks (their JSON; none: says how to measure it)."""

from __future__ import annotations

import math

EFFICIENCY_MODELS = (  # (label, model, frames): the paper's four architectures
    ("TSN-R50 (16 frames)", "tsn_r50", 16),
    ("TSM-R50 (8 frames)", "tsm_r50", 8),
    ("SlowOnly-R50 (8x8)", "slowonly_r50", 8),
    ("Swin-S (32x2)", "swin3d_s", 32),
)
EFFICIENCY_RESOLUTIONS = (224, 144, 112, 96, 72, 56)


def flops_markdown(rows: dict[str, dict[int, float]]) -> str:
    """GFLOPs per video: one column per model, one row per resolution."""
    names = list(rows)
    lines = ["| resolution | " + " | ".join(names) + " |", "|---:|" + "---:|" * len(names)]
    for r in EFFICIENCY_RESOLUTIONS:
        lines.append(f"| {r} | " + " | ".join(f"{rows[n][r]:.1f}" for n in names) + " |")
    return "\n".join(lines)


def throughput_markdown(bench: dict | None, tsn_flops: dict[int, float]) -> str:
    """CPU throughput per resolution from ``benchmarks/results/throughput_cpu.json`` (None: not measured),
    beside the GFLOPs ratio ``tsn_flops`` predicts."""
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
    """The header's GPU line: where the GPU numbers come from, or that there are none."""
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
