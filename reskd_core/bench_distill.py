"""Clips/s of the whole ResKD training step, compute-only and fed by the real loader.

One step is what :func:`reskd_core.train.train_one_epoch` runs for a distilling student: the teacher's
forward at its resolution under ``no_grad`` with its BatchNorm in train mode (``kd.teacher_bn``), the
student's forward on the down-sampled clip, the loss (:func:`reskd_core.distill.distill_loss`), the
backward and the optimizer step (:func:`reskd_core.optim.optimizer_step`, gradient clipping as
configured) and the lr schedule's step. Networks, loss, optimizer and loader come from the config, as
in training (:func:`reskd_core.job.model_for`, :func:`reskd_core.job.make_loaders`); weights are random.

*Compute-only* steps take one random clip batch already on the device; *loader-fed* steps take batches
from the training split of ``data.shards`` through the loader (``data.loader_workers`` processes),
copied to the device each step, so their ratio says whether data or compute sets the pace.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch

from reskd_core.config import Config
from reskd_core.distill import distill_loss, prepare_teacher
from reskd_core.flops import flops_table
from reskd_core.job import make_loaders, model_for
from reskd_core.optim import build_optimizer, build_scheduler, optimizer_step
from reskd_core.throughput import device_name, resolve_device, sync
from reskd_core.train import classification_mode

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "fp16")
DATA_BOUND_BELOW = 0.9  # loader-fed rate under this share of the compute-only rate: data-bound


@dataclass(frozen=True)
class StepOptions:
    """How to measure: device, precisions (``fp32``, ``bf16`` or ``fp16`` autocast; fp16 on CUDA only,
    with a loss scaler as training uses), channels_last weights, ``torch.compile`` of both networks,
    warm-up steps, timed steps a round and rounds (the median round counts), and whether to also feed
    the step from the loader."""

    device: str = "cpu"
    precisions: tuple[str, ...] = ("fp32", "bf16")
    channels_last: bool = True
    compile: bool = False
    warmup: int = 2
    iters: int = 5
    rounds: int = 3
    with_loader: bool = False


def _autocast(device: torch.device, precision: str) -> AbstractContextManager:
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


class DistillStep:
    """A teacher, a student and the student's optimizer, schedule and scaler, for one precision."""

    def __init__(
        self, cfg: Config, num_classes: int, device: torch.device, precision: str, opts: StepOptions
    ):
        self.cfg, self.device, self.precision = cfg, device, precision
        teacher = model_for(cfg, "teacher", num_classes, pretrained=False, seed=cfg.seed)
        student = model_for(cfg, "student", num_classes, pretrained=False, seed=cfg.seed + 1)
        fmt = torch.channels_last if opts.channels_last else torch.contiguous_format
        teacher = prepare_teacher(teacher.to(device, memory_format=fmt), cfg.kd.teacher_bn)
        student = student.to(device, memory_format=fmt).train()
        self.params = [p for p in student.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(student, cfg.optim, cfg.data.batch_size)
        self.scheduler = build_scheduler(self.optimizer, 0, 2 * (opts.warmup + opts.iters * opts.rounds))
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
        self.teacher = torch.compile(teacher) if opts.compile else teacher
        self.student = torch.compile(student) if opts.compile else student

    def __call__(self, clip: torch.Tensor, target: torch.Tensor) -> None:
        cfg = self.cfg
        with _autocast(self.device, self.precision):
            out = distill_loss(
                self.student,  # type: ignore[arg-type]  # a compiled VideoClassifier keeps its .fc
                self.teacher,  # type: ignore[arg-type]
                clip,
                target,
                cfg.kd,
                cfg.student.resolution,
                classification_mode(cfg.data),
                cfg.student.input,
            )
        optimizer_step(
            out.total, self.optimizer, self.params, scaler=self.scaler, clip_grad=cfg.optim.clip_grad
        )
        self.scheduler.step()


def _round(step: DistillStep, batches: Iterator[dict], iters: int) -> float:
    """Seconds a clip over ``iters`` steps fed from ``batches`` (copied to the device each step)."""
    dev = step.device
    sync(dev)
    start, clips = time.perf_counter(), 0
    for _ in range(iters):
        batch = next(batches)
        clip = batch["clip"].to(dev, non_blocking=True)
        step(clip, batch["label"].to(dev, non_blocking=True))
        clips += len(clip)
    sync(dev)
    return (time.perf_counter() - start) / clips


def _interleaved(step: DistillStep, feeds: dict[str, Iterator[dict]], opts: StepOptions) -> dict[str, float]:
    """Median clips/s of each feed: after ``warmup`` steps of each, ``rounds`` rounds of ``iters`` steps,
    the feeds taking turns, so a drift of a shared machine hits them alike and their ratio holds."""
    for batches in feeds.values():
        for _ in range(opts.warmup):
            _round(step, batches, 1)
    times: dict[str, list[float]] = {name: [] for name in feeds}
    for _ in range(opts.rounds):
        for name, batches in feeds.items():
            times[name].append(_round(step, batches, opts.iters))
    return {name: 1 / statistics.median(t) for name, t in times.items()}


def _repeat(batch: dict) -> Iterator[dict]:
    while True:
        yield batch


def _epochs(loader: Iterable[dict]) -> Iterator[dict]:
    """The loader's batches, epoch after epoch (a new epoch order each time, as training has)."""
    epoch = 0
    while True:
        getattr(loader, "dataset", loader).set_epoch(epoch)  # type: ignore[union-attr]
        yield from loader
        epoch += 1


def _step_gflops(cfg: Config, num_classes: int) -> float:
    """Multiply-adds of one clip's step: the teacher's forward plus the student's forward and backward
    (counted as 3 forwards)."""
    frames = cfg.data.num_segments
    teacher = flops_table(cfg.teacher.name, frames, [cfg.teacher.resolution], num_classes, cfg.teacher.width)
    student = flops_table(cfg.student.name, frames, [cfg.student.resolution], num_classes, cfg.student.width)
    return teacher[0].gflops + 3 * student[0].gflops


def _check_resolutions(cfg: Config, resolutions: list[int]) -> None:
    """Every input covers its network's total stride (checked on the meta device, before any work)."""
    with torch.device("meta"):
        need = {
            role: model_for(cfg, role, 2, pretrained=False).min_resolution for role in ("teacher", "student")
        }
    for role, size in [("teacher", cfg.teacher.resolution)] + [("student", r) for r in resolutions]:
        if size < need[role]:
            raise ValueError(f"{role} resolution {size} is below the {need[role]}px its network needs")
        if role == "student" and size > cfg.teacher.resolution:
            raise ValueError(f"student resolution {size} is above the teacher's {cfg.teacher.resolution}")


def measure_distill_step(
    cfg: Config,
    resolutions: list[int],
    opts: StepOptions,
    progress: Callable[[], None] | None = None,
) -> list[dict]:
    """One row per (student resolution, precision): clips/s of the training step of ``cfg``'s teacher
    and student (``data.num_segments`` frames, ``data.batch_size`` clips a step), compute-only and, with
    ``opts.with_loader``, fed from ``data.shards``; ``loader_vs_compute`` is their ratio.

    ``tflop_per_s`` counts 2 FLOPs a multiply-add of :func:`_step_gflops`, to set against a device's peak.
    """
    dev = resolve_device(opts.device)
    for p in opts.precisions:
        if p not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {p!r}")
        if p == "fp16" and dev.type != "cuda":
            raise ValueError("precision fp16 needs CUDA (on the CPU use bf16)")
    _check_resolutions(cfg, resolutions)
    loader = None
    num_classes = cfg.num_classes or 400
    if opts.with_loader:
        loader = make_loaders(cfg, pin_memory=dev.type == "cuda")[0]
        num_classes = loader.dataset.num_classes  # type: ignore[attr-defined]
    n, t, r = cfg.data.batch_size, cfg.data.num_segments, cfg.teacher.resolution
    generator = torch.Generator().manual_seed(cfg.seed)
    labels = torch.randint(num_classes, (n,), generator=generator)
    if cfg.data.multi_label:  # multi-hot targets, as the loader gives for multi-label shards
        labels = torch.nn.functional.one_hot(labels, num_classes).float()
    synthetic = {"clip": torch.randn(n, t, 3, r, r, generator=generator).to(dev), "label": labels.to(dev)}
    rows = []
    for res in resolutions:
        scfg = cfg.model_copy(update={"student": cfg.student.model_copy(update={"resolution": res})})
        gflops = _step_gflops(scfg, num_classes)
        for precision in opts.precisions:
            step = DistillStep(scfg, num_classes, dev, precision, opts)
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats(dev)
            feeds = {"compute": _repeat(synthetic)} | ({"loader": _epochs(loader)} if loader else {})
            rate = _interleaved(step, feeds, opts)
            compute = rate["compute"]
            row = {
                "teacher": cfg.teacher.name,
                "student": cfg.student.name,
                "frames": t,
                "batch_size": n,
                "teacher_resolution": r,
                "student_resolution": res,
                "precision": precision,
                "channels_last": opts.channels_last,
                "compile": opts.compile,
                "kd": cfg.kd.method,
                "compute_clips_per_s": round(compute, 3),
                "compute_ms_per_step": round(1000 * n / compute, 2),
                "step_gflops": round(gflops, 3),
                "tflop_per_s": round(2 * gflops * compute / 1000, 3),
            }
            if loader is not None:
                share = rate["loader"] / compute
                row |= {
                    "loader_clips_per_s": round(rate["loader"], 3),
                    "loader_vs_compute": round(share, 3),
                    "bound": "data" if share < DATA_BOUND_BELOW else "compute",
                    "loader_workers": cfg.data.loader_workers,
                }
            if dev.type == "cuda":
                row["peak_memory_gb"] = round(torch.cuda.max_memory_allocated(dev) / 2**30, 2)
            row |= {
                "device": device_name(dev),
                "warmup": opts.warmup,
                "iters": opts.iters,
                "rounds": opts.rounds,
            }
            rows.append(row)
            log.info("distill step %dpx->%dpx %s: %.2f clips/s", r, res, precision, compute)
            if progress:
                progress()
    return rows


def text_table(rows: list[dict]) -> str:
    """The rows as a plain-text table (for the benchmark scripts): resolutions, precision, compile, the
    compute-only and loader-fed clips/s, their ratio and what bounds the step."""
    columns = [
        ("teacher_resolution", "teacher"),
        ("student_resolution", "student"),
        ("precision", "precision"),
        ("compile", "compile"),
        ("compute_clips_per_s", "compute clips/s"),
        ("loader_clips_per_s", "loader clips/s"),
        ("loader_vs_compute", "loader/compute"),
        ("bound", "bound"),
        ("tflop_per_s", "TFLOP/s"),
    ]
    columns = [(k, h) for k, h in columns if any(k in r for r in rows)]
    cells = [[h for _, h in columns]] + [[str(r.get(k, "")) for k, _ in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
