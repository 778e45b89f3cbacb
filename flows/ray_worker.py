"""The Ray Train worker: one DDP rank of a teacher or student training job (``train_loop_per_worker``).

Each rank checks the job again (:func:`reskd_core.job.check_job`: its classes and teacher), reads its own
part of the shards, builds the model (DDP over gloo on CPU, NCCL on GPU through
``ray.train.torch.prepare_model``) and, for a student, the frozen teacher; resumes from
``ray.train.get_checkpoint()`` when Ray restarts the job or a rerun finds its checkpoints; then runs
:func:`reskd_core.train.fit`. Every epoch, rank 0 logs the metrics to MLflow and every rank calls
``ray.train.report`` (with rank 0's checkpoint). Rank 0 returns a summary (Ray's ``Result.return_value``).
"""

from __future__ import annotations

import os
from typing import Any

from reskd_core.config import Config


def train_worker(config: dict[str, Any]) -> dict[str, Any] | None:
    """``train_loop_per_worker``: build data, model (DDP) and teacher, resume, :func:`fit`, report.

    ``config`` holds the dumped, checked :class:`Config` (``cfg``), the ``role`` and the run's identity
    (``mlflow_run_id``, ``run_name``); the rest comes from :func:`reskd_core.job.check_job` on this rank.
    """
    import ray.train
    import ray.train.torch
    import torch

    from reskd_core.checkpoint import FILENAME, load_checkpoint, model_from_checkpoint
    from reskd_core.flops import count_gflops
    from reskd_core.job import check_job, make_loaders, model_for
    from reskd_core.throughput import measure_throughput
    from reskd_core.train import fit, place_model

    # the driver ran the same checks; on this rank they also give the job's facts (classes, teacher)
    job = check_job(Config.model_validate(config["cfg"]), config["role"])
    cfg, role, spec = job.cfg, job.role, job.spec
    uri = cfg.tracking.uri  # made absolute by the driver
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    run_id = config["mlflow_run_id"] if rank == 0 else None  # only rank 0 talks to MLflow
    if run_id:
        from flows import tracking  # imports mlflow: a few seconds, so only where it is used
    torch.set_num_threads(max(1, int(cfg.resources.cpus_per_worker)))
    device = ray.train.torch.get_device()

    train_loader, val_loader = make_loaders(cfg, rank, world, pin_memory=device.type == "cuda")
    # the same initial weights on every rank (DDP also broadcasts rank 0's)
    model = model_for(cfg, role, job.num_classes, seed=cfg.seed)
    model = ray.train.torch.prepare_model(place_model(model, device, cfg.resources), move_to_device=False)
    teacher = None
    if job.teacher_checkpoint:
        teacher, _ = model_from_checkpoint(load_checkpoint(job.teacher_checkpoint))
        teacher = place_model(teacher, device, cfg.resources)

    resume = None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            resume = load_checkpoint(os.path.join(d, FILENAME), map_location=device)
    start_epoch = int(resume["epoch"]) if resume else 0
    if run_id:
        tracking.log_metrics(uri, run_id, {"start_epoch": start_epoch}, step=start_epoch)

    def on_epoch_end(epoch: int, metrics: dict[str, float], ckpt_dir: str | None) -> None:
        if run_id:
            tracking.log_metrics(uri, run_id, metrics, step=epoch)
        ckpt = ray.train.Checkpoint.from_directory(ckpt_dir) if ckpt_dir else None
        ray.train.report({**metrics, "start_epoch": float(start_epoch)}, checkpoint=ckpt)

    extra = {
        "mlflow_run_id": config["mlflow_run_id"],
        "teacher_checkpoint": job.teacher_checkpoint,
        "teacher_run_id": job.teacher_run_id,
        "run_name": config["run_name"],
    }
    result = fit(
        cfg,
        role,
        model,
        train_loader,
        val_loader,
        num_classes=job.num_classes,
        device=device,
        teacher=teacher,
        resume=resume,
        class_names=list(job.class_names),
        world_size=world,
        rank=rank,
        on_epoch_end=on_epoch_end,
        extra_state=extra,
    )
    if rank != 0:
        return None
    net = getattr(model, "module", model)
    gflops = count_gflops(net, cfg.data.num_segments, spec.resolution)
    speed = measure_throughput(
        spec.name,
        cfg.data.num_segments,
        [spec.resolution],
        batch_size=1,
        device=device.type,
        warmup=1,
        iters=3,
        rounds=1,
        num_classes=job.num_classes,
        width=spec.width,
    )[0]
    if run_id:
        tracking.log_metrics(
            uri,
            run_id,
            {"gflops_per_video": gflops, "videos_per_s": speed["videos_per_s"]},
            step=result.epochs_done,
        )
    return {
        "start_epoch": result.start_epoch,
        "epochs_done": result.epochs_done,
        "gflops": gflops,
        "videos_per_s": speed["videos_per_s"],
        "best_score": result.best_score,
        "best_epoch": result.best_epoch,
    }
