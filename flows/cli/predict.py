"""``reskd predict``: labels for videos, files, lists or shards, from a checkpoint, an MLflow model or ONNX.

Its settings options are generated from the config's ``predict`` fields; the work is
:func:`reskd_core.predict.predict_items`, which the ``reskd/predict`` flow and the MLflow model call too.
"""

from __future__ import annotations

from typing import Any

import typer

from flows.cli.common import ConfigOption, SetOption, command_config, console, fail, field_options
from reskd_core.config import PredictConfig


def _table(rows: list[dict], title: str) -> None:
    """One row a video: its top-k ``label score`` cells (an error in red), and the true label if known."""
    from rich.table import Table

    k = max([len(r["labels"]) for r in rows] + [1])  # no empty columns when there are fewer classes
    table = Table(title=title)
    table.add_column("video", no_wrap=True)
    for i in range(k):
        table.add_column(f"#{i + 1}")
    table.add_column("true")
    for r in rows:
        if r["error"]:
            table.add_row(r["video"], f"[red]error: {r['error']}[/]", *[""] * (k - 1), r["true_label"] or "")
            continue
        cells = [f"{n} {s:.3f}" for n, s in zip(r["labels"], r["scores"], strict=True)]
        table.add_row(r["video"], *cells, *[""] * (k - len(cells)), r["true_label"] or "")
    console.print(table)


@field_options("predict", PredictConfig, skip=("video_root", "device"))
def predict(
    sources: list[str] = typer.Argument(
        ..., help="video files or s3:// URIs, annotation lists, or a shards folder / s3:// prefix"
    ),
    out: str | None = typer.Option(None, help="write the rows to a .json or .parquet file (local or s3://)"),
    video_root: str | None = typer.Option(None, help="videos of annotation lists (default: beside the list)"),
    config: ConfigOption = None,
    override: SetOption = None,
    **fields: Any,
) -> None:
    """Top-k labels and scores of videos, as a table or a JSON/Parquet file.

    Exit status: 0 when unreadable videos stay within --max-error-rate (each is an error row), 1 above
    it, 2 for a model that does not resolve or does not fit (before any video is decoded).
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from flows.tracking import local_model
    from reskd_core.checkpoint import CheckpointError
    from reskd_core.predict import collect_items, load_classifier, predict_items, prediction_row, write_rows

    cfg = command_config(config, override, {**fields, "predict.video_root": video_root})
    p = cfg.predict
    try:
        model = local_model(p.model, cfg.tracking.uri)  # an MLflow URI: the checkpoint behind it
        clf = load_classifier(model, resolution=p.resolution, device=p.device)
        items, total = collect_items(sources, p.format, p.video_root)
    except (CheckpointError, ValueError, FileNotFoundError) as e:
        fail(str(e))
    with Progress(
        TextColumn("predicting"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=total < 2,
    ) as bar:
        task = bar.add_task("predict", total=total)
        predictions = predict_items(
            clf, items, batch_size=p.batch_size, exact=p.exact, progress=lambda n: bar.advance(task, n)
        )
        rows = [prediction_row(x, clf.class_names, p.top_k, p.model) for x in predictions]
    errors = sum(1 for r in rows if r["error"])
    rate = errors / len(rows) if rows else 0.0
    if out:
        write_rows(rows, out)
        console.print(f"{len(rows)} predictions ({errors} errors) -> {out}")
    else:
        _table(rows, f"{p.model} ({clf.spec.resolution} px)")
    if errors:
        console.print(
            f"{errors} of {len(rows)} videos could not be read ({100 * rate:.1f}%, limit "
            f"{100 * p.max_error_rate:.1f}%)"
        )
    if rate > p.max_error_rate:
        console.print("[bold red]too many videos could not be read[/]")
        raise typer.Exit(1)


COMMANDS = {"predict": predict}
