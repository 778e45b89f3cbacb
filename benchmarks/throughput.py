"""CPU throughput of TSN-R50 (16 frames) at the paper's six resolutions: the efficiency table's numbers.

Wraps :func:`reskd_core.throughput.measure_throughput` (what ``reskd benchmark throughput`` runs): random
weights, batch 1, inference mode, fp32; all resolutions measured interleaved (round-robin) after a
warm-up, so a drift of the shared machine hits every resolution alike and the ratios stay comparable;
each row is the median round.

    .venv/bin/python benchmarks/throughput.py [--iters 2] [--rounds 3] [--threads 2]

Prints a table and writes benchmarks/results/throughput_cpu.json (read by docs/results.md).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from reskd_core.flops import flops_table
from reskd_core.throughput import cpu_name, measure_throughput

RESULTS = Path(__file__).resolve().parent / "results" / "throughput_cpu.json"
RESOLUTIONS = [224, 144, 112, 96, 72, 56]
MODEL, FRAMES = "tsn_r50", 16


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=2, help="timed forward passes per resolution and round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (the median is reported)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch intra-op threads")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)

    start = time.perf_counter()
    rows = measure_throughput(
        MODEL,
        FRAMES,
        RESOLUTIONS,
        batch_size=1,
        device="cpu",
        warmup=args.warmup,
        iters=args.iters,
        rounds=args.rounds,
    )
    seconds = time.perf_counter() - start
    gflops = {r.resolution: r.gflops for r in flops_table(MODEL, FRAMES, RESOLUTIONS)}
    by_res = {r["resolution"]: r for r in rows}
    for r in rows:
        r["gflops"] = gflops[r["resolution"]]
    result = {
        "model": MODEL,
        "frames": FRAMES,
        "rows": rows,
        "ratio_224_vs_112": round(by_res[112]["videos_per_s"] / by_res[224]["videos_per_s"], 3),
        "gflops_ratio_224_vs_112": round(gflops[224] / gflops[112], 3),
        "command": "python benchmarks/throughput.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}, {args.threads} threads",
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "seconds": round(seconds, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")

    print(f"\nTSN-R50, {FRAMES} frames, batch 1, CPU ({result['machine']}); {seconds:.0f} s")
    print(f"{'resolution':>10} {'videos/s':>9} {'ms/video':>9} {'GFLOPs':>7} {'vs 224':>7}")
    for r in rows:
        print(
            f"{r['resolution']:>10} {r['videos_per_s']:>9.2f} {r['ms_per_batch']:>9.0f} {r['gflops']:>7.1f} "
            f"{r['videos_per_s'] / by_res[224]['videos_per_s']:>6.2f}x"
        )
    print(
        f"224 vs 112 px: {result['ratio_224_vs_112']:.2f}x the videos/s at 112 "
        f"({result['gflops_ratio_224_vs_112']:.2f}x fewer GFLOPs); wrote {args.out}"
    )


if __name__ == "__main__":
    main()
