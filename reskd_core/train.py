"""Teacher pretraining and ResKD student training: one epoch and the ``fit`` loop (the optimizer and
schedule are :mod:`reskd_core.optim`).

Pure PyTorch: no Ray, Prefect or MLflow here. The Ray worker (``flows/ray_worker.py``) builds the data
loaders and the (DDP-wrapped) model, then calls :func:`fit` with an ``on_epoch_end`` callback that reports
metrics and the checkpoint; tests call :func:`fit` directly on in-memory data.

The teacher and the students share one training step, :func:`reskd_core.distill.distill_loss`: the loader
yields each clip once at the teacher's resolution and the student's input is down-sampled from it, so both
networks see the same sampled frames. The teacher's own training is that step with ``kd.method='none'`` at
the teacher's resolution; so is a no-KD baseline student at its low resolution.
"""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from reskd_core.checkpoint import FILENAME, build_state, restore_rng, save_checkpoint, unwrap
from reskd_core.config import Config, DataConfig, KDConfig, ResourcesConfig
from reskd_core.distill import distill_loss, prepare_teacher
from reskd_core.evaluate import evaluate_model, primary_metric, scalar_metrics
from reskd_core.job import ROLES, spec_for
from reskd_core.losses import kd_weight
from reskd_core.optim import build_optimizer, build_scheduler, optimizer_step

log = logging.getLogger(__name__)

EpochCallback = Callable[[int, dict[str, float], str | None], None]


# ---------------------------------------------------------------- loss mode and device


def classification_mode(data: DataConfig) -> str:
    """``ce`` for single-label data, else the configured multi-label loss (``random_ce`` or ``bce``)."""
    return data.multi_label_loss if data.multi_label else "ce"


def use_amp(resources: ResourcesConfig, device: torch.device) -> bool:
    return resources.amp and device.type == "cuda"


def place_model(model: nn.Module, device: torch.device, resources: ResourcesConfig) -> nn.Module:
    """Move to ``device``; channels_last only on CUDA (it slows CPU convolutions down)."""
    model = model.to(device)
    if resources.channels_last and device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model


# ---------------------------------------------------------------- one epoch


class _StudentView:
    """What ``distill_loss`` needs of a student (call it, read ``.fc``), also for a DDP-wrapped one."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.fc = unwrap(model).fc

    def __call__(self, x: torch.Tensor):
        return self.model(x)


def _hits(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    top = logits.argmax(dim=1)
    if targets.dim() == 2:  # multi-hot: the top class is one of the clip's labels
        return targets.gather(1, top[:, None]).squeeze(1).gt(0).sum()
    return top.eq(targets).sum()


def train_one_epoch(
    model: nn.Module,
    batches: Iterable[dict],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    *,
    device: torch.device,
    resolution: int,
    kd: KDConfig,
    teacher: nn.Module | None = None,
    cls_mode: str = "ce",
    scaler: torch.amp.GradScaler | None = None,
    amp: bool = False,
    clip_grad: float | None = None,
    progress: Callable[[int], None] | None = None,
    input_mode: str = "direct",
) -> dict[str, float]:
    """One pass over ``batches`` (``{"clip", "label"}`` dicts); returns mean losses, accuracy and speed.

    ``resolution`` is the trained model's input size; clips arrive at the teacher's. ``kd.method='none'``
    trains with CE alone (teacher pretraining, or the baseline). ``input_mode``: the model's
    ``ModelConfig.input`` (``direct`` or ``down_up``). Besides ``loss``, ``ce`` and ``kd`` (the unweighted
    KD term), ``kd_weight`` is the lambda in use and ``kd_share`` the weighted KD term's share of the
    epoch's mean loss (both 0 without KD): lambda is set per method, so the share says what it did.
    """
    model.train()
    student = _StudentView(model)
    params = [p for p in model.parameters() if p.requires_grad]
    autocast = torch.autocast("cuda", dtype=torch.float16) if amp else nullcontext()
    sums = torch.zeros(4, dtype=torch.float64)  # loss, ce, kd (sample-weighted), hits
    videos = steps = 0
    start = time.perf_counter()
    for batch in batches:
        clip = batch["clip"].to(device, non_blocking=True)
        target = batch["label"].to(device, non_blocking=True)
        with autocast:
            out = distill_loss(student, teacher, clip, target, kd, resolution, cls_mode, input_mode)
        optimizer_step(out.total, optimizer, params, scaler=scaler, clip_grad=clip_grad)
        scheduler.step()
        n = len(clip)
        with torch.no_grad():
            sums += torch.stack(
                [
                    out.total.detach().double().cpu() * n,
                    out.ce.double().cpu() * n,
                    out.kd.double().cpu() * n,
                    _hits(out.logits.detach(), target).double().cpu(),
                ]
            )
        videos += n
        steps += 1
        if progress:
            progress(n)
    seconds = time.perf_counter() - start
    if videos == 0:
        raise ValueError("the training split yielded no clips this epoch")
    loss, ce, kd_term, hits = (sums / videos).tolist()
    if not math.isfinite(loss):
        raise FloatingPointError(f"training loss is {loss} (lr too high? try a lower optim.lr)")
    weight = kd_weight(kd.method, kd.weight)
    return {
        "loss": loss,
        "ce": ce,
        "kd": kd_term,
        "kd_weight": weight,
        "kd_share": weight * kd_term / loss if loss > 0 else 0.0,
        "top1": 100.0 * hits,
        "steps": float(steps),
        "videos": float(videos),
        "seconds": seconds,
        "videos_per_s": videos / max(seconds, 1e-9),
        "lr": optimizer.param_groups[-1]["lr"],
    }


# ---------------------------------------------------------------- the fit loop


@dataclass
class FitResult:
    """What a (possibly resumed) training job did."""

    start_epoch: int
    epochs_done: int
    best_score: float | None
    best_epoch: int | None
    last_metrics: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def resumed(self) -> bool:
        return self.start_epoch > 0


def total_epochs(cfg: Config, role: str) -> int:
    return cfg.schedule.teacher_epochs if role == "teacher" else cfg.schedule.student_epochs


def _set_epoch(batches: Iterable, epoch: int) -> None:
    ds = getattr(batches, "dataset", batches)
    if hasattr(ds, "set_epoch"):
        ds.set_epoch(epoch)


def _steps_per_epoch(batches: Iterable, steps_per_epoch: int | None) -> int:
    if steps_per_epoch:
        return steps_per_epoch
    try:
        return max(len(batches), 1)  # type: ignore[arg-type]
    except TypeError:
        raise ValueError("fit needs steps_per_epoch for a loader without len()") from None


@dataclass
class _FitState:
    """What the fit loop carries from epoch to epoch, and what each epoch's checkpoint holds."""

    cfg: Config
    role: str
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    num_classes: int
    class_names: list[str] | None
    rank: int
    extra_state: dict[str, Any]
    start_epoch: int = 0
    best_score: float | None = None
    best_epoch: int | None = None
    history: list[dict[str, float]] = field(default_factory=list)


def fit(
    cfg: Config,
    role: str,
    model: nn.Module,
    train_batches: Iterable[dict],
    val_batches: Iterable[dict] | None,
    *,
    num_classes: int,
    device: torch.device | str = "cpu",
    teacher: nn.Module | None = None,
    resume: dict[str, Any] | None = None,
    class_names: list[str] | None = None,
    world_size: int = 1,
    rank: int = 0,
    steps_per_epoch: int | None = None,
    on_epoch_end: EpochCallback | None = None,
    progress: Callable[[int], None] | None = None,
    extra_state: dict[str, Any] | None = None,
) -> FitResult:
    """Train ``model`` (already on ``device``, maybe DDP-wrapped) for the configured epochs of ``role``.

    Every epoch: train, evaluate (every ``schedule.eval_every`` epochs and at the last one), write a
    checkpoint into a temporary directory on rank 0, call ``on_epoch_end(epoch, metrics, dir)`` on every
    rank (``dir`` is None off rank 0; it is deleted once the callback returns). ``resume`` is a loaded
    checkpoint: training continues after its epoch with the same optimizer, schedule, scaler and RNG
    state. A checkpoint of a finished job gives a ``FitResult`` without training.
    """
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    device = torch.device(device)
    epochs = total_epochs(cfg, role)
    if role == "student":
        resolution, kd = cfg.student.resolution, cfg.kd
        if kd.method != "none" and teacher is None:
            raise ValueError(f"kd.method={kd.method!r} needs a teacher checkpoint (teacher.checkpoint)")
        if teacher is not None:
            prepare_teacher(teacher, kd.teacher_bn)
            if {id(p) for p in teacher.parameters()} & {id(p) for p in model.parameters()}:
                raise ValueError("the teacher shares parameters with the student")
    else:
        resolution, kd = cfg.teacher.resolution, KDConfig(method="none")
    input_mode = spec_for(cfg, role).input
    amp = use_amp(cfg.resources, device)
    optimizer = build_optimizer(model, cfg.optim, cfg.data.batch_size * world_size)
    steps = _steps_per_epoch(train_batches, steps_per_epoch)
    state = _FitState(
        cfg=cfg,
        role=role,
        model=model,
        optimizer=optimizer,
        scheduler=build_scheduler(optimizer, round(cfg.schedule.warmup_epochs * steps), epochs * steps),
        scaler=torch.amp.GradScaler(device.type, enabled=amp),
        num_classes=num_classes,
        class_names=class_names,
        rank=rank,
        extra_state=extra_state or {},
    )
    cls_mode = classification_mode(cfg.data)
    multi_label = cfg.data.multi_label

    torch.manual_seed(cfg.seed + rank)
    if resume is not None:
        _resume(state, resume)
        log.info("%s: resuming after epoch %d of %d", role, state.start_epoch, epochs)

    last: dict[str, float] = dict(state.history[-1]) if state.history else {}
    for epoch in range(state.start_epoch, epochs):
        _set_epoch(train_batches, epoch)
        train = train_one_epoch(
            model,
            train_batches,
            state.optimizer,
            state.scheduler,
            device=device,
            resolution=resolution,
            kd=kd,
            teacher=teacher,
            cls_mode=cls_mode,
            scaler=state.scaler,
            amp=amp,
            clip_grad=cfg.optim.clip_grad,
            progress=progress,
            input_mode=input_mode,
        )
        metrics = {"epoch": float(epoch + 1), **{f"train_{k}": v for k, v in train.items()}}
        evaluation = None
        if val_batches is not None and ((epoch + 1) % cfg.schedule.eval_every == 0 or epoch + 1 == epochs):
            _set_epoch(val_batches, epoch)
            evaluation = evaluate_model(
                unwrap(model),
                val_batches,
                device=device,
                resolution=resolution,
                multi_label=multi_label,
                amp=amp,
                input_mode=input_mode,
            )
            metrics.update(scalar_metrics(evaluation, "val_"))
            score = primary_metric(evaluation, multi_label)
            if state.best_score is None or score > state.best_score:
                state.best_score, state.best_epoch = score, epoch + 1
        metrics["val_score"] = primary_metric(evaluation, multi_label) if evaluation else -1.0
        state.history.append(metrics)
        last = metrics
        if rank == 0:
            log.info(
                "%s epoch %d/%d: %s",
                role,
                epoch + 1,
                epochs,
                " ".join(f"{k}={v:.4g}" for k, v in metrics.items() if k != "epoch"),
            )
        _finish_epoch(state, epoch, metrics, evaluation, on_epoch_end)
    return FitResult(state.start_epoch, epochs, state.best_score, state.best_epoch, last, state.history)


def _resume(state: _FitState, resume: dict[str, Any]) -> None:
    """Model, optimizer, schedule, scaler, best epoch, history and RNG from a loaded checkpoint."""
    if resume.get("role") != state.role:
        raise ValueError(f"cannot resume a {state.role} job from a {resume.get('role')} checkpoint")
    unwrap(state.model).load_state_dict(resume["model"])
    if resume.get("optimizer"):
        state.optimizer.load_state_dict(resume["optimizer"])
    if resume.get("scheduler"):
        state.scheduler.load_state_dict(resume["scheduler"])
    if resume.get("scaler"):
        state.scaler.load_state_dict(resume["scaler"])
    state.start_epoch = int(resume["epoch"])
    best = resume.get("best") or {}
    state.best_score, state.best_epoch = best.get("score"), best.get("epoch")
    state.history = list(resume.get("history") or [])
    if "rng" in resume:
        restore_rng(resume["rng"])
    if state.rank:  # the stored generator is rank 0's; other ranks need their own stream
        torch.manual_seed(state.cfg.seed + state.rank + 1000 * state.start_epoch)


def _finish_epoch(
    state: _FitState,
    epoch: int,
    metrics: dict[str, float],
    evaluation: dict[str, Any] | None,
    on_epoch_end: EpochCallback | None,
) -> None:
    """Checkpoint on rank 0 into a temporary dir, hand it to the callback, then delete the dir."""
    tmp = tempfile.mkdtemp(prefix="reskd-ckpt-") if state.rank == 0 else None
    try:
        if tmp is not None:
            checkpoint = build_state(
                role=state.role,
                model=state.model,
                config=state.cfg,
                epoch=epoch + 1,
                num_classes=state.num_classes,
                optimizer=state.optimizer,
                scheduler=state.scheduler,
                scaler=state.scaler,
                class_names=state.class_names,
                metrics=metrics,
                evaluation=evaluation,
                history=state.history,
                best={"score": state.best_score, "epoch": state.best_epoch},
                **state.extra_state,
            )
            save_checkpoint(checkpoint, f"{tmp}/{FILENAME}")
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, metrics, tmp)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
