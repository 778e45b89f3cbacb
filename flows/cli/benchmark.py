"""``reskd benchmark ...``: speed measurements."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import typer

from flows.cli.common import (
    ConfigOption,
    JsonOption,
    SetOption,
    command_config,
    console,
    fail,
    parse_ints,
    print_table,
)

if TYPE_CHECKING:
    from reskd_core.bench_distill import StepOptions
    from reskd_core.config import Config

app = typer.Typer(no_args_is_help=True, help="Speed measurements.")


@app.command("throughput")
def throughput(
    model: str = typer.Option("tsn_r50"),
    frames: int = typer.Option(16, min=1),
    resolution: str = typer.Option("224,112"),
    batch_size: int = typer.Option(1, min=1),
    device: str = typer.Option("cpu", help="cpu or cuda"),
    amp: bool = typer.Option(False, help="autocast (fp16 on CUDA, bf16 on CPU)"),
    channels_last: bool = typer.Option(False),
    warmup: int = typer.Option(2, min=0),
    iters: int = typer.Option(3, min=1),
    rounds: int = typer.Option(3, min=1),
    as_json: JsonOption = False,
) -> None:
    """Videos/s of a model at several resolutions, measured interleaved after warm-up."""
    from rich.progress import Progress

    from reskd_core.throughput import measure_throughput

    res = parse_ints(resolution)
    try:
        with Progress(console=console, transient=True, disable=as_json) as bar:
            task = bar.add_task("measuring", total=rounds * len(res))
            rows = measure_throughput(
                model,
                frames,
                res,
                batch_size=batch_size,
                device=device,
                amp=amp,
                channels_last=channels_last,
                warmup=warmup,
                iters=iters,
                rounds=rounds,
                progress=lambda: bar.advance(task),
            )
    except ValueError as e:
        fail(str(e))
    if as_json:
        print(json.dumps(rows))
    else:
        print_table(
            rows,
            ["model", "frames", "resolution", "batch_size", "videos_per_s", "ms_per_batch", "device"],
            title="Throughput",
        )


@app.command("distill-step")
def distill_step(
    recipe: ConfigOption = None,
    overrides: SetOption = None,
    model: str = typer.Option("tsn_r50", help="teacher and student network (teacher.name, student.name)"),
    teacher_model: str | None = typer.Option(None, help="another teacher network (default: --model)"),
    frames: int = typer.Option(16, min=1, help="frames a clip (data.num_segments)"),
    batch_size: int = typer.Option(
        8, "--batch", "--batch-size", min=1, help="clips a step (data.batch_size)"
    ),
    teacher_resolution: int = typer.Option(224, min=8, help="teacher.resolution: clips are read at it"),
    resolution: str = typer.Option("112,56", help="student resolutions, a comma list"),
    precision: str = typer.Option("fp32,bf16", help="comma list of fp32, bf16 (autocast), fp16 (CUDA)"),
    device: str = typer.Option("cpu", help="cpu or cuda"),
    channels_last: bool = typer.Option(True, help="channels_last weights and activations"),
    compile: bool = typer.Option(False, "--compile", help="torch.compile both networks"),
    with_loader: str | None = typer.Option(
        None, help="shards (data.shards): also feed the step from their train split through the loader"
    ),
    loader_workers: int | None = typer.Option(None, min=0, help="loader processes (data.loader_workers)"),
    warmup: int = typer.Option(2, min=0, help="untimed steps of each feed before the rounds"),
    iters: int = typer.Option(5, min=1, help="timed steps a round"),
    rounds: int = typer.Option(3, min=1, help="rounds, compute-only and loader-fed taking turns (median)"),
    as_json: JsonOption = False,
) -> None:
    """Clips/s of the whole ResKD training step: teacher forward (BatchNorm in train mode, no grad), student
    forward and backward, optimizer step; compute-only and, with --with-loader, fed from shards."""
    from rich.progress import Progress

    from reskd_core.bench_distill import StepOptions, measure_distill_step

    values = {
        "teacher.name": teacher_model or model,
        "student.name": model,
        "data.num_segments": frames,
        "data.batch_size": batch_size,
        "teacher.resolution": teacher_resolution,
        "data.shards": with_loader,
        "data.loader_workers": loader_workers,
    }
    cfg = command_config(recipe, overrides, values)
    res = parse_ints(resolution)
    opts = StepOptions(
        device=device,
        precisions=tuple(p.strip() for p in precision.split(",") if p.strip()),
        channels_last=channels_last,
        compile=compile,
        warmup=warmup,
        iters=iters,
        rounds=rounds,
        with_loader=with_loader is not None,
    )
    try:
        with Progress(console=console, transient=True, disable=as_json) as bar:
            task = bar.add_task("measuring", total=len(res) * len(opts.precisions))
            rows = measure_distill_step(cfg, res, opts, progress=lambda: bar.advance(task))
    except ValueError as e:
        fail(str(e))
    if as_json:
        print(json.dumps(rows))
        return
    columns = ["teacher_resolution", "student_resolution", "precision", "compute_clips_per_s"]
    if opts.with_loader:
        columns += ["loader_clips_per_s", "loader_vs_compute", "bound"]
    print_table(rows, [*columns, "tflop_per_s", "device"], title=distill_step_title(cfg, opts))


def distill_step_title(cfg: Config, opts: StepOptions) -> str:
    """``'ResKD step: tsn_r50 -> tsn_r50, 16 frames, batch 8, channels_last'`` (and compile)."""
    flags = [f for f, on in (("channels_last", opts.channels_last), ("compile", opts.compile)) if on]
    return (
        f"ResKD step: {cfg.teacher.name} -> {cfg.student.name}, {cfg.data.num_segments} frames, "
        f"batch {cfg.data.batch_size}" + "".join(f", {f}" for f in flags)
    )
