"""``reskd demo-data`` and ``reskd extract``: options parse into the config, the library does the work.

Their settings options are generated from the config's ``demo`` and ``extract`` fields
(:func:`flows.cli.common.field_options`), so each is named, typed and described once, in the config.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from flows.cli.common import (
    ConfigOption,
    JsonOption,
    SetOption,
    command_config,
    console,
    fail,
    field_options,
    print_table,
)
from reskd_core.config import DemoConfig, ExtractConfig


@field_options("demo", DemoConfig, skip=("root",))
def demo_data(
    out: Path = typer.Argument(..., help="folder for videos/, annotations.txt and classes.txt"),
    **fields: Any,
) -> None:
    """Generate the demo dataset: mp4 files of letters moving among distractors (docs/data.md)."""
    from reskd_core.data.demo import make_demo_dataset

    d = command_config(None, None, {**fields, "demo.root": str(out)}).demo
    try:
        path = make_demo_dataset(out, d.classes, d.videos_per_class, d.size, d.frames, d.seed)
    except ValueError as e:
        fail(str(e))
    console.print(
        f"{d.classes * d.videos_per_class} videos in {path / 'videos'}, list in {path / 'annotations.txt'}"
    )


@field_options("extract", ExtractConfig, skip=("annotations",), aliases={"timeout_s": "--timeout"})
def extract(
    annotations: str | None = typer.Argument(
        None, help="annotation file (local or s3://); default: the recipe's"
    ),
    out: str | None = typer.Option(
        None, help="shards location (folder or s3://bucket/prefix); default: the recipe's data.shards"
    ),
    config: ConfigOption = None,
    override: SetOption = None,
    as_json: JsonOption = False,
    **fields: Any,
) -> None:
    """Decode videos with decord into Parquet shards of JPEG frames (local or S3), resumably.

    Exit status: 0 when skipped videos stay within --max-error-rate, 1 above it (after writing all it
    could, errors.json and manifest.json), 2 for a bad configuration (nothing written).
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from reskd_core.data.extract import extract as run_extract

    cfg = command_config(config, override, {"extract.annotations": annotations, **fields})
    out = out or (cfg.data.shards if config else None)
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
                cfg.extract, out, progress=lambda done, total: bar.update(task, completed=done, total=total)
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


COMMANDS = {"demo-data": demo_data, "extract": extract}
