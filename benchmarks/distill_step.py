"""Clips/s of the whole ResKD training step (teacher forward in BatchNorm-train mode, student forward and
backward, optimizer step), compute-only and fed by the real loader from generated shards, side by side.

Wraps :func:`reskd_core.bench_distill.measure_distill_step` (what ``reskd benchmark distill-step`` runs).
The shards hold demo videos of 320x256 px extracted at a short side of 256 px, as Kinetics-style data is.
The CPU default is a reduced grid that fits 3 minutes on 2 cores (TSN-R50, 2 frames, batch 2,
224 -> 112 and 224 -> 56 px, fp32 and bf16); the paper-scale grid (16 frames) runs on a GPU through
``benchmarks/gpu_benchmark.py``.

    .venv/bin/python benchmarks/distill_step.py [--frames 2] [--batch 2] [--device cpu]

Prints a table and writes benchmarks/results/distill_step_<device>.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from reskd_core.bench_distill import StepOptions, measure_distill_step, text_table
from reskd_core.config import load_config
from reskd_core.data.demo import make_demo_shards
from reskd_core.throughput import cpu_name

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--model", default="tsn_r50")
    ap.add_argument("--frames", type=int, default=2)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--teacher-resolution", type=int, default=224)
    ap.add_argument("--resolutions", default="112,56")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--iters", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--loader-workers", type=int, default=1)
    ap.add_argument("--videos", type=int, default=16, help="generated videos (a quarter held out as val)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    out = args.out or RESULTS / f"distill_step_{torch.device(args.device).type}.json"
    opts = StepOptions(
        device=args.device,
        precisions=tuple(args.precisions.split(",")),
        channels_last=args.channels_last,
        compile=args.compile,
        warmup=args.warmup,
        iters=args.iters,
        rounds=args.rounds,
        with_loader=True,
    )
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        classes = 4
        per_class = max(1, args.videos // classes)
        shards = make_demo_shards(
            tmp, classes=classes, videos_per_class=per_class, size=(256, 320), frames=24, short_side=256
        )
        cfg = load_config(
            None,
            [
                f"teacher.name={args.model}",
                f"student.name={args.model}",
                f"data.num_segments={args.frames}",
                f"data.batch_size={args.batch}",
                f"teacher.resolution={args.teacher_resolution}",
                f"data.shards={shards}",
                f"data.loader_workers={args.loader_workers}",
            ],
        )
        rows = measure_distill_step(cfg, [int(r) for r in args.resolutions.split(",")], opts)
    dev = torch.device(args.device)
    result = {
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else cpu_name(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "command": "python benchmarks/distill_step.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "shards": f"{classes * per_class} demo videos of 320x256 px, 24 frames, extracted at short side 256",
        "note": "bound: 'data' when the loader-fed rate is below 0.9 of the compute-only rate; rates are "
        "medians of interleaved rounds; on a shared CPU only the ratios mean something",
        "seconds": round(time.perf_counter() - start, 1),
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "rows": rows,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nResKD step, {args.model}, {args.frames} frames, batch {args.batch}, on {result['device']}")
    print(text_table(rows))
    print(f"\nwrote {out} ({result['seconds']} s)")


if __name__ == "__main__":
    main()
