"""``reskd benchmark ...``: speed measurements."""

from __future__ import annotations

import json

import typer

from flows.cli.common import JsonOption, console, fail, parse_ints, print_table

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
