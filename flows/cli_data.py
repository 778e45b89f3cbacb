"""``reskd demo-data`` and ``reskd extract``: options parse into the config, the library does the work."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from pydantic import ValidationError

from reskd_core.config import DemoConfig

_DEMO = DemoConfig()  # the CLI's defaults are the config's, named once there


def demo_data(
    out: Path = typer.Argument(..., help="folder for videos/, annotations.txt and classes.txt"),
    classes: int = typer.Option(_DEMO.classes, min=2, help="letter classes (2-16)"),
    videos_per_class: int = typer.Option(_DEMO.videos_per_class, min=1),
    size: int = typer.Option(_DEMO.size, min=16, help="frame side in pixels (square)"),
    frames: int = typer.Option(_DEMO.frames, min=1, help="frames per video"),
    seed: int = typer.Option(_DEMO.seed),
) -> None:
    """Generate the demo dataset: mp4 files of letters moving among distractors (docs/data.md)."""
    from flows.cli import console, fail  # here, not at the top: flows.cli imports this module
    from reskd_core.data.demo import make_demo_dataset

    try:
        path = make_demo_dataset(
            out, classes=classes, videos_per_class=videos_per_class, size=size, frames=frames, seed=seed
        )
    except ValueError as e:
        fail(str(e))
    console.print(
        f"{classes * videos_per_class} videos in {path / 'videos'}, list in {path / 'annotations.txt'}"
    )


def extract(
    annotations: str | None = typer.Argument(
        None, help="annotation file (local or s3://); default: the recipe's"
    ),
    fmt: str | None = typer.Option(None, "--format", help="mmaction | kinetics | ssv2 | activitynet"),
    video_root: str | None = typer.Option(None, help="folder or s3:// prefix the annotation paths are under"),
    out: str | None = typer.Option(
        None, help="shards location (folder or s3://bucket/prefix); default data.shards"
    ),
    labels_file: str | None = typer.Option(
        None, help="class names (SSv2 labels.json; one a line; JSON list)"
    ),
    split: str | None = typer.Option(None, help="split of a list without one, or the only split to keep"),
    val_fraction: float | None = typer.Option(
        None, help="mmaction/ssv2: hold out this share of each class as 'val'"
    ),
    test_fraction: float | None = typer.Option(
        None, help="mmaction/ssv2: hold out this share of each class as 'test'"
    ),
    sample: str | None = typer.Option(None, help="all | every | fps | count"),
    every: int | None = typer.Option(None, help="keep every k-th frame (--sample every)"),
    fps: float | None = typer.Option(None, help="frames a second kept (--sample fps)"),
    count: int | None = typer.Option(None, help="frames kept uniformly (--sample count)"),
    short_side: int | None = typer.Option(None, help="resize the short side to this (default 256)"),
    jpeg_quality: int | None = typer.Option(None),
    videos_per_shard: int | None = typer.Option(None),
    row_group_size: int | None = typer.Option(None),
    workers: int | None = typer.Option(None, help="decoder processes (0: one per core)"),
    timeout_s: float | None = typer.Option(None, "--timeout", help="per-video decode timeout in seconds"),
    max_error_rate: float | None = typer.Option(
        None, help="exit non-zero above this share of skipped videos"
    ),
    recipe: str | None = typer.Option(None, "--config", "-c", help="recipe name or YAML file to start from"),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON"),
) -> None:
    """Decode videos with decord into Parquet shards of JPEG frames (local or S3), resumably.

    Exit status: 0 when skipped videos stay within --max-error-rate, 1 above it (after writing all it
    could, errors.json and manifest.json), 2 for a bad configuration (nothing written).
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from flows.cli import console, fail, print_table
    from reskd_core.config import ExtractConfig, load_config, recipe_path
    from reskd_core.data.extract import extract as run_extract

    given = {
        "annotations": annotations,
        "format": fmt,
        "video_root": video_root,
        "labels_file": labels_file,
        "split": split,
        "val_fraction": val_fraction,
        "test_fraction": test_fraction,
        "sample": sample,
        "every": every,
        "fps": fps,
        "count": count,
        "short_side": short_side,
        "jpeg_quality": jpeg_quality,
        "videos_per_shard": videos_per_shard,
        "row_group_size": row_group_size,
        "workers": workers,
        "timeout_s": timeout_s,
        "max_error_rate": max_error_rate,
    }
    try:
        base = load_config(recipe_path(recipe)) if recipe else None
        fields = base.extract.model_dump() if base else {}
        fields.update({k: v for k, v in given.items() if v is not None})
        cfg = ExtractConfig.model_validate(fields)
    except ValidationError as e:
        fail(
            "bad extract option: "
            + "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())
        )
    except ValueError as e:
        fail(str(e))
    out = out or (base.data.shards if base else None)
    if not out:
        fail("--out is required (a folder or s3://bucket/prefix)")
    try:
        with Progress(
            TextColumn("extracting"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
            disable=as_json,
        ) as bar:
            task = bar.add_task("extract", total=None)
            report = run_extract(
                cfg, out, progress=lambda done, total: bar.update(task, completed=done, total=total)
            )
    except ValueError as e:
        fail(str(e))
    if as_json:
        print(json.dumps({k: v for k, v in report.as_dict().items() if k != "errors"}))
    else:
        rows = [{"split": k, "videos": v} for k, v in sorted(report.rows.items())]
        print_table(rows, ["split", "videos"], title=f"Shards at {out}")
        console.print(
            f"skipped {report.skipped} of {report.total} ({100 * report.error_rate:.1f}%, limit "
            f"{100 * report.max_error_rate:.1f}%); {report.new_shards} shards written, "
            f"{report.resumed_shards} already there; content hash {report.content_hash[:16]}"
        )
    if not report.ok:
        console.print(f"[bold red]too many videos skipped[/]: see {out.rstrip('/')}/errors.json")
        raise typer.Exit(1)
