"""The ``reskd`` command line: every command parses its options into the config and calls the library."""

from __future__ import annotations

import json
import logging
import os

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="ResKD: cross-resolution distillation for video."
)
benchmark_app = typer.Typer(no_args_is_help=True, help="Speed measurements.")
app.add_typer(benchmark_app, name="benchmark")
console = Console()

# Prefect's server sends a telemetry heartbeat that, on the ephemeral SQLite server, logs "database is
# locked" tracebacks under load; users who want it set the variable themselves.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def parse_ints(value: str, what: str = "resolution") -> list[int]:
    """``'224,112'`` -> ``[224, 112]`` with a clear error for anything else."""
    try:
        out = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise typer.BadParameter(
            f"{what} must be a comma-separated list of integers, got {value!r}"
        ) from None
    if not out or any(v <= 0 for v in out):
        raise typer.BadParameter(f"{what} must hold positive integers, got {value!r}")
    return out


def print_table(rows: list[dict], columns: list[str], title: str | None = None) -> None:
    table = Table(title=title)
    for c in columns:
        table.add_column(c, justify="right" if rows and isinstance(rows[0].get(c), (int, float)) else "left")
    for row in rows:
        table.add_row(*[str(row.get(c, "")) for c in columns])
    console.print(table)


def fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(2)


@app.callback()
def _main(verbose: bool = typer.Option(False, "--verbose", "-v", help="debug logging")) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("httpx", "httpcore", "alembic", "urllib3"):  # one line per HTTP call drowns the progress
        logging.getLogger(noisy).setLevel(logging.WARNING)


@app.command()
def models() -> None:
    """List the model names every command accepts."""
    from reskd_core.models import MODELS, model_summary

    print_table([{"name": n, "description": model_summary(n)} for n in MODELS], ["name", "description"])


@app.command()
def flops(
    model: str = typer.Option("tsn_r50", help="model name (see `reskd models`)"),
    frames: int = typer.Option(16, min=1, help="frames per video"),
    resolution: str = typer.Option("224,144,112,96,72,56", help="one resolution or a comma list"),
    num_classes: int = typer.Option(400, min=2),
    width: int | None = typer.Option(None, help="base width override (ResNets)"),
    as_json: bool = typer.Option(False, "--json", help="print a JSON list instead of a table"),
) -> None:
    """GFLOPs per video (multiply-adds) of a model at one or more resolutions."""
    from reskd_core.flops import flops_table

    try:
        rows = [r.as_dict() for r in flops_table(model, frames, parse_ints(resolution), num_classes, width)]
    except ValueError as e:
        fail(str(e))
    if as_json:
        print(json.dumps(rows))
    else:
        print_table(rows, ["model", "frames", "resolution", "gflops", "params_m"], title="GFLOPs per video")


@benchmark_app.command("throughput")
def benchmark_throughput(
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
    as_json: bool = typer.Option(False, "--json"),
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


# Commands defined in sibling modules register themselves on `app` below (one line each).
from flows.stack.cli import stack_app  # noqa: E402

app.add_typer(stack_app, name="stack")

from flows import cli_data  # noqa: E402

app.command("demo-data")(cli_data.demo_data)
app.command("extract")(cli_data.extract)

from flows import cli_train  # noqa: E402

app.command("train-teacher")(cli_train.train_teacher)
app.command("distill")(cli_train.distill)
app.command("evaluate")(cli_train.evaluate)
app.command("export")(cli_train.export)

from flows import cli_pipeline  # noqa: E402

app.command("run")(cli_pipeline.run)
app.command("demo")(cli_pipeline.demo)
app.command("serve")(cli_pipeline.serve)
app.command("deploy")(cli_pipeline.deploy)

from flows import cli_study  # noqa: E402

app.command("study")(cli_study.study)


if __name__ == "__main__":
    app()
