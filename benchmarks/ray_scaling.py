"""Ray Train scaling on this machine: clips/s of one ResKD student job (``pixel_mse``) with 1 and with 2
Ray Train workers (DDP over gloo on the CPU), the same global batch, in one run side by side.

Every job is the real path, :func:`flows.ray_train.train_on_ray` (driver, ``TorchTrainer``, the Ray
Train worker, MLflow in a SQLite file), on demo shards made by the real extractor; the teacher is a
checkpoint of a randomly initialised ``tsn_tiny`` (its weights do not change the speed). Jobs:

- ``1 worker x 2 CPUs``: one process with 2 torch threads, the whole global batch;
- ``2 workers x 1 CPU``: two DDP ranks with 1 thread each, half the global batch each;
- ``1 worker x 1 CPU``: one rank alone on one core (the per-core rate the 2-worker job can at best double).

clips/s of a job: the global clips of an epoch over rank 0's training time of that epoch (DDP keeps the
ranks in step), the median over the epochs after the first; the loader is in the worker process
(``data.loader_workers=0``), as in the demo recipe.

    .venv/bin/python benchmarks/ray_scaling.py [--epochs 4] [--videos-per-class 32]

Prints a table and writes benchmarks/results/ray_scaling_cpu.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from reskd_core.checkpoint import build_state, save_checkpoint
from reskd_core.config import Config, load_config
from reskd_core.data.demo import make_demo_shards
from reskd_core.job import check_job, model_for
from reskd_core.throughput import cpu_name

RESULTS = Path(__file__).resolve().parent / "results" / "ray_scaling_cpu.json"
JOBS = [("1 worker x 2 CPUs", 1, 2), ("2 workers x 1 CPU", 2, 1), ("1 worker x 1 CPU", 1, 1)]


def job_config(root: Path, shards: str, args: argparse.Namespace, workers: int, cpus: int) -> Config:
    return load_config(
        None,
        [
            f"data.shards={shards}",
            f"data.num_segments={args.frames}",
            f"data.batch_size={args.global_batch // workers}",
            "data.loader_workers=0",
            "teacher.name=tsn_tiny",
            f"teacher.resolution={args.teacher_resolution}",
            "student.name=tsn_tiny",
            f"student.resolution={args.student_resolution}",
            "kd.method=pixel_mse",
            "kd.weight=1",
            f"schedule.student_epochs={args.epochs}",
            f"schedule.eval_every={args.epochs}",
            f"resources.workers={workers}",
            f"resources.cpus_per_worker={cpus}",
            "resources.max_failures=0",
            f"tracking.uri=sqlite:///{root}/mlflow.db",
            "tracking.experiment=ray-scaling",
            f"storage.root={root}/ray",
        ],
    )


def random_teacher(cfg: Config, path: Path) -> str:
    """A teacher checkpoint of ``cfg``'s teacher with its initial weights (what ``check_job`` reads)."""
    teacher_cfg = cfg.model_copy(update={"kd": cfg.kd.model_copy(update={"method": "none"})})
    job = check_job(teacher_cfg, "teacher")
    model = model_for(cfg, "teacher", job.num_classes, seed=cfg.seed)
    state = build_state(
        role="teacher",
        model=model,
        config=cfg,
        epoch=1,
        num_classes=job.num_classes,
        class_names=list(job.class_names),
    )
    save_checkpoint(state, str(path))
    return str(path)


def clips_per_s(history: list[dict], workers: int) -> tuple[float, list[float]]:
    """Median global clips/s over the epochs after the first, and every epoch's value."""
    per_epoch = [workers * h["train_videos"] / h["train_seconds"] for h in history]
    steady = per_epoch[1:] or per_epoch
    return statistics.median(steady), per_epoch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--classes", type=int, default=4)
    ap.add_argument("--videos-per-class", type=int, default=32, help="three quarters train, a quarter val")
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--global-batch", type=int, default=8)
    ap.add_argument("--teacher-resolution", type=int, default=112)
    ap.add_argument("--student-resolution", type=int, default=56)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from flows.ray_train import train_on_ray

    start = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shards = make_demo_shards(
            root, classes=args.classes, videos_per_class=args.videos_per_class, size=128, frames=8
        )
        teacher = random_teacher(job_config(root, shards, args, 1, 1), root / "teacher.pt")
        for name, workers, cpus in JOBS:
            cfg = job_config(root, shards, args, workers, cpus)
            t0 = time.perf_counter()
            result = train_on_ray(cfg, "student", f"scaling-{workers}w-{cpus}c", teacher_checkpoint=teacher)
            wall = time.perf_counter() - t0
            rate, per_epoch = clips_per_s(result.history, workers)
            rows.append(
                {
                    "job": name,
                    "workers": workers,
                    "cpus_per_worker": cpus,
                    "batch_per_worker": cfg.data.batch_size,
                    "global_batch": cfg.data.batch_size * workers,
                    "clips_per_s": round(rate, 2),
                    "clips_per_s_by_epoch": [round(x, 2) for x in per_epoch],
                    "train_clips_per_epoch": int(workers * result.history[0]["train_videos"]),
                    "job_wall_s": round(wall, 1),
                }
            )
            print(f"{name}: {rate:.2f} clips/s ({wall:.0f} s job)", flush=True)
    one, two, single = (r["clips_per_s"] for r in rows)
    result = {
        "device": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "backend": "gloo (DDP on the CPU)",
        "command": "python benchmarks/ray_scaling.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "setup": {
            "student": f"tsn_tiny at {args.student_resolution} px, pixel_mse from a tsn_tiny teacher at "
            f"{args.teacher_resolution} px",
            "frames": args.frames,
            "epochs": args.epochs,
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        },
        "jobs": rows,
        "ratio_2_workers_vs_1_worker_2_cpus": round(two / one, 3),
        "ratio_2_workers_vs_1_worker_1_cpu": round(two / single, 3),
        "seconds": round(time.perf_counter() - start, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    width = max(len(r["job"]) for r in rows)
    print(f"\n{'job':<{width}}  {'batch/worker':>12}  {'clips/s':>8}  {'job wall s':>10}")
    for r in rows:
        print(
            f"{r['job']:<{width}}  {r['batch_per_worker']:>12}  {r['clips_per_s']:>8}  {r['job_wall_s']:>10}"
        )
    print(
        f"\n2 workers / 1 worker on the same 2 CPUs: {result['ratio_2_workers_vs_1_worker_2_cpus']}x; "
        f"2 workers / 1 worker on 1 CPU: {result['ratio_2_workers_vs_1_worker_1_cpu']}x\nwrote {args.out}"
    )


if __name__ == "__main__":
    main()
