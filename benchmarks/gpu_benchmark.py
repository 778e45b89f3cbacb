"""GPU throughput of TSN-R50 (16 frames) at the paper's six resolutions, fp32 and AMP, channels_last,
batches that fill the GPU; the whole ResKD training step at paper scale (TSN-R50, 16 frames, 224 -> 112
and 224 -> 56, fp32 and bf16, channels_last, compute-only and fed by the loader from generated 320x256
shards, and bf16 at 112 under ``torch.compile``); plus one short distillation run (teacher, then a
pixel_mse student) on generated demo data, with a no-KD student from the same teacher beside it. One
script for one short call (at most 8 minutes) on a lent GPU machine:

    .venv/bin/python benchmarks/gpu_benchmark.py [--quick] [--epochs 30] [--no-compile-step]

Prints a table and writes benchmarks/results/gpu.json (read by docs/results.md) with the device name.
``--quick`` measures fewer rounds and a smaller demo, for checking the script itself; it refuses to
run without CUDA (no CPU numbers are ever written to gpu.json).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shlex
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from reskd_core.bench_distill import StepOptions, measure_distill_step, text_table
from reskd_core.config import load_config, recipe_path
from reskd_core.data.demo import make_demo_shards
from reskd_core.flops import flops_table
from reskd_core.throughput import measure_throughput

RESULTS = Path(__file__).resolve().parent / "results" / "gpu.json"
RESOLUTIONS = [224, 144, 112, 96, 72, 56]
MODEL, FRAMES = "tsn_r50", 16
# Videos per batch: about the same number of pixels per batch at every resolution (224 px: 32 videos of
# 16 frames = 512 images), so every resolution keeps the GPU busy; inference only, well inside 80 GB.
BASE_BATCH = 32
# The ResKD step: clips per step (32 x 16 frames at 224 px for the teacher), loader processes feeding it.
STEP_BATCH, STEP_LOADER_WORKERS, STEP_RESOLUTIONS = 32, 12, [112, 56]


def batch_sizes(base: int) -> dict[int, int]:
    return {r: max(1, int(base * (224 / r) ** 2)) for r in RESOLUTIONS}


def throughput(quick: bool) -> list[dict]:
    rows = []
    for amp in (False, True):
        rows += measure_throughput(
            MODEL,
            FRAMES,
            RESOLUTIONS,
            device="cuda",
            amp=amp,
            channels_last=True,
            batch_sizes=batch_sizes(BASE_BATCH // 4 if quick else BASE_BATCH),
            warmup=2,
            iters=2 if quick else 5,
            rounds=2 if quick else 3,
        )
    return rows


def distill_steps(quick: bool, root: Path, compile_step: bool = True, device: str = "cuda") -> list[dict]:
    """Clips/s of the ResKD training step of TSN-R50 at paper scale, compute-only and loader-fed side by
    side (interleaved rounds), fp32 and bf16; then bf16 at 112 px under ``torch.compile``."""
    shards = make_demo_shards(
        root, classes=8, videos_per_class=4 if quick else 24, size=(256, 320), frames=48, short_side=256
    )
    cfg = load_config(
        None,
        [
            f"data.shards={shards}",
            f"data.num_segments={FRAMES}",
            f"data.batch_size={STEP_BATCH // 4 if quick else STEP_BATCH}",
            f"data.loader_workers={STEP_LOADER_WORKERS}",
            f"teacher.name={MODEL}",
            f"student.name={MODEL}",
        ],
    )
    opts = StepOptions(
        device=device,
        precisions=("fp32", "bf16"),
        warmup=3,
        iters=3 if quick else 10,
        rounds=2 if quick else 3,
        with_loader=True,
    )
    rows = measure_distill_step(cfg, STEP_RESOLUTIONS, opts)
    if compile_step:
        compiled = dataclasses.replace(opts, precisions=("bf16",), compile=True, warmup=5)
        rows += measure_distill_step(cfg, STEP_RESOLUTIONS[:1], compiled)
    return rows


def distillation(quick: bool, root: Path, device: str = "cuda", epochs: int | None = None) -> dict:
    """The demo recipe on the GPU: a tsn_tiny teacher at 112 px, then students at 56 px without KD and
    with pixel_mse, from the same seed (same batches), on generated demo videos."""
    from reskd_core.data.demo import make_demo_dataset
    from reskd_core.data.extract import extract
    from reskd_core.job import check_job, make_loaders, model_for
    from reskd_core.train import fit

    epochs = epochs or (3 if quick else 10)
    cfg = load_config(
        recipe_path("demo_cpu"),
        [
            f"extract.annotations={root}/data/annotations.txt",
            f"extract.video_root={root}/data/videos",
            f"extract.labels_file={root}/data/classes.txt",
            f"data.shards={root}/shards",
            "data.loader_workers=4",
            f"resources.use_gpu={str(device == 'cuda').lower()}",
            f"resources.amp={str(device == 'cuda').lower()}",
            f"schedule.teacher_epochs={epochs}",
            f"schedule.student_epochs={epochs}",
        ],
    )
    make_demo_dataset(root / "data", classes=8, videos_per_class=6 if quick else 30, size=128, frames=16)
    extract(cfg.extract, cfg.data.shards)
    num_classes = check_job(cfg, "teacher").num_classes
    train, val = make_loaders(cfg, pin_memory=device == "cuda")
    dev = torch.device(device)
    out: dict = {"epochs": epochs, "teacher": cfg.teacher.name, "student": cfg.student.name}
    teacher = model_for(cfg, "teacher", num_classes, seed=0).to(dev)
    start = time.perf_counter()
    t = fit(cfg, "teacher", teacher, train, val, num_classes=num_classes, device=dev)
    out["teacher_seconds"] = round(time.perf_counter() - start, 2)
    out["teacher_val_top1"] = t.last_metrics.get("val_top1")
    for method in ("none", "pixel_mse"):
        scfg = cfg.model_copy(update={"kd": cfg.kd.model_copy(update={"method": method})})
        student = model_for(scfg, "student", num_classes, seed=0)
        start = time.perf_counter()
        kd_teacher = teacher if method != "none" else None
        s = fit(
            scfg,
            "student",
            student.to(dev),
            train,
            val,
            num_classes=num_classes,
            device=dev,
            teacher=kd_teacher,
        )
        out[f"student_{method}_seconds"] = round(time.perf_counter() - start, 2)
        out[f"student_{method}_val_top1"] = s.last_metrics.get("val_top1")
    out["student_resolution"] = cfg.student.resolution
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and a smaller demo")
    parser.add_argument("--epochs", type=int, default=None, help="distillation epochs (default 10, quick 3)")
    parser.add_argument(
        "--compile-step", action=argparse.BooleanOptionalAction, default=True, help="torch.compile step rows"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if not torch.cuda.is_available():
        sys.exit("gpu_benchmark: torch sees no CUDA device; run it on a GPU machine (nothing written)")
    torch.backends.cudnn.benchmark = True
    start = time.perf_counter()
    rows = throughput(args.quick)
    gflops = {r.resolution: r.gflops for r in flops_table(MODEL, FRAMES, RESOLUTIONS)}
    for r in rows:
        r["gflops"] = gflops[r["resolution"]]
    seconds = {"throughput": round(time.perf_counter() - start, 1)}
    with tempfile.TemporaryDirectory() as tmp:
        steps = distill_steps(args.quick, Path(tmp), args.compile_step)
    seconds["distill_step"] = round(time.perf_counter() - start - sum(seconds.values()), 1)
    with tempfile.TemporaryDirectory() as tmp:
        kd = distillation(args.quick, Path(tmp), epochs=args.epochs)
    seconds["distillation"] = round(time.perf_counter() - start - sum(seconds.values()), 1)
    result = {
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "model": MODEL,
        "frames": FRAMES,
        "throughput": rows,
        "distill_step": steps,
        "distillation": kd,
        "command": "python benchmarks/gpu_benchmark.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "seconds": round(time.perf_counter() - start, 1),
        "seconds_by_part": seconds,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nTSN-R50, {FRAMES} frames, channels_last, on {result['device']}")
    print(f"{'resolution':>10} {'batch':>6} {'fp32 v/s':>9} {'AMP v/s':>9} {'GFLOPs':>7}")
    by = {(r["resolution"], r["amp"]): r for r in rows}
    for res in RESOLUTIONS:
        fp32, amp = by[(res, False)], by[(res, True)]
        print(
            f"{res:>10} {fp32['batch_size']:>6} {fp32['videos_per_s']:>9.1f} {amp['videos_per_s']:>9.1f} "
            f"{gflops[res]:>7.1f}"
        )
    print(f"\nResKD step, {MODEL} {FRAMES} frames, batch {steps[0]['batch_size']}:\n{text_table(steps)}")
    print(f"distillation: {json.dumps(kd)}\nwrote {args.out}")


if __name__ == "__main__":
    main()
