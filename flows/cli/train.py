"""``reskd train-teacher``, ``reskd distill``, ``reskd evaluate``, ``reskd export``.

Each builds the one config (``--config`` recipe plus ``--set key.path=value`` overrides) once; the work is
done by :func:`flows.ray_train.train_on_ray` and the ``reskd_core`` library.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from typing import Annotated

import typer

from flows.cli.common import (
    ConfigOption,
    JsonOption,
    SetOption,
    command_config,
    console,
    fail,
    print_table,
)
from reskd_core.config import Config

RunNameOption = Annotated[
    str | None, typer.Option(help="Ray/MLflow job name; the same name resumes that job")
]
ParentRunOption = Annotated[str | None, typer.Option(help="MLflow run to nest this run under")]
SOURCE_HELP = "checkpoint file/dir (local or s3://) or MLflow runs:/... models:/..."


@contextmanager
def _epoch_bar(total: int, label: str, quiet: bool):
    """A rich progress bar over epochs, fed by train_on_ray's progress callback."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=quiet,
    ) as bar:
        task = bar.add_task(label, total=total)
        yield lambda done, _total: bar.update(task, completed=done)


def _train(cfg: Config, role: str, run_name: str | None, parent_run_id: str | None, as_json: bool) -> None:
    from flows.ray_train import train_on_ray
    from reskd_core.train import total_epochs

    spec = cfg.teacher if role == "teacher" else cfg.student
    kd = f"-{cfg.kd.method}" if role == "student" else ""
    name = run_name or f"{cfg.name}-{role}{kd}-{spec.name}-{spec.resolution}px-s{cfg.seed}"
    try:
        with _epoch_bar(
            total_epochs(cfg, role), f"{role} {spec.name}@{spec.resolution}px", as_json
        ) as progress:
            result = train_on_ray(cfg, role, name, parent_run_id=parent_run_id, progress=progress)
    except ValueError as e:
        fail(str(e))
    except RuntimeError as e:
        console.print(f"[bold red]training failed:[/] {e}")
        raise typer.Exit(1) from None
    out = result.as_dict()
    out.pop("history")
    if as_json:
        print(json.dumps(out))
        return
    rows = [
        {"metric": k, "value": round(v, 3) if isinstance(v, float) else v} for k, v in result.metrics.items()
    ]
    print_table(rows, ["metric", "value"], title=f"{role} {name}: best checkpoint")
    console.print(
        f"checkpoint: {result.best_checkpoint}\nMLflow run: {result.mlflow_run_id}  "
        f"model: {result.model_uri}\nGFLOPs/video: {result.gflops:.4f}  videos/s: {result.videos_per_s}  "
        f"epochs: {result.epochs_done}  resumed: {result.resumed}"
    )


def train_teacher(
    config: ConfigOption = "demo_cpu",
    override: SetOption = None,
    run_name: RunNameOption = None,
    parent_run_id: ParentRunOption = None,
    as_json: JsonOption = False,
) -> None:
    """Pretrain the teacher at its (high) resolution on Ray Train, tracked in MLflow."""
    _train(command_config(config, override), "teacher", run_name, parent_run_id, as_json)


def distill(
    config: ConfigOption = "demo_cpu",
    override: SetOption = None,
    teacher_checkpoint: str | None = typer.Option(
        None,
        "--teacher",
        help="teacher checkpoint (default: teacher.checkpoint); not needed with kd.method=none",
    ),
    run_name: RunNameOption = None,
    parent_run_id: ParentRunOption = None,
    as_json: JsonOption = False,
) -> None:
    """Train a student at student.resolution with kd.method (``none``: the no-KD baseline)."""
    cfg = command_config(config, override, {"teacher.checkpoint": teacher_checkpoint})
    _train(cfg, "student", run_name, parent_run_id, as_json)


def _checkpoint_path(source: str, cfg: Config) -> str:
    """A checkpoint path/URI as given, or the checkpoint behind an MLflow ``runs:/`` / ``models:/`` URI."""
    if source.startswith(("runs:/", "models:/")):
        from flows.tracking import checkpoint_from_model_uri

        try:
            return checkpoint_from_model_uri(source, cfg.tracking.uri)
        except Exception as e:
            fail(f"cannot resolve {source} at {cfg.tracking.uri}: {e}")
    return source


def evaluate(
    source: str = typer.Argument(..., help=SOURCE_HELP),
    config: ConfigOption = "demo_cpu",
    override: SetOption = None,
    shards: str | None = typer.Option(None, help="shards location (default: data.shards)"),
    split: str | None = typer.Option(None, help="split to evaluate (default: data.val_split)"),
    per_class: bool = typer.Option(False, help="also print per-class accuracy (or AP)"),
    as_json: JsonOption = False,
) -> None:
    """Accuracy of a trained model on a split: top-1/top-5 (single-label) or mAP (multi-label)."""
    from rich.progress import Progress

    from reskd_core.checkpoint import CheckpointError
    from reskd_core.evaluate import evaluate_checkpoint

    cfg = command_config(config, override)
    path = _checkpoint_path(source, cfg)
    shards_uri, split_name = shards or cfg.data.shards, split or cfg.data.val_split
    try:
        with Progress(console=console, transient=True, disable=as_json) as bar:
            task = bar.add_task(f"evaluating on {split_name}", total=None)
            metrics = evaluate_checkpoint(
                path,
                shards_uri,
                split_name,
                cfg,
                total=lambda n: bar.update(task, total=n),
                progress=lambda n: bar.advance(task, n),
            )
    except CheckpointError as e:
        fail(str(e))
    except (ValueError, FileNotFoundError) as e:
        fail(f"cannot evaluate {source} on {shards_uri}/{split_name}: {e}")
    if as_json:
        print(json.dumps(metrics))
        return
    keys = [k for k in ("top1", "top5", "mean_class_acc", "mAP", "n") if k in metrics]
    print_table(
        [{"metric": k, "value": round(float(metrics[k]), 2)} for k in keys],
        ["metric", "value"],
        title=f"{source} on {split_name} ({metrics['role']} at {metrics['resolution']}px)",
    )
    if per_class:
        values = metrics.get("per_class_acc") or metrics.get("per_class_ap") or []
        print_table([{"class": i, "value": round(v, 2)} for i, v in enumerate(values)], ["class", "value"])


def export(
    source: str = typer.Argument(..., help=SOURCE_HELP),
    out: str = typer.Option("export", help="output folder"),
    config: ConfigOption = "demo_cpu",
    override: SetOption = None,
    torchscript: bool = typer.Option(True, help="also write TorchScript"),
    atol: float = typer.Option(1e-4, help="largest |onnxruntime - PyTorch| logit difference accepted"),
    mlflow_run: str | None = typer.Option(
        None, help="MLflow run to log the files to (default: the checkpoint's training run, if it has one)"
    ),
    no_mlflow: bool = typer.Option(False, "--no-mlflow", help="do not log the files to MLflow"),
    as_json: JsonOption = False,
) -> None:
    """Write the model as ONNX (+ TorchScript), check onnxruntime against PyTorch, log the files to MLflow."""
    from reskd_core.checkpoint import CheckpointError, load_checkpoint
    from reskd_core.export import export_checkpoint

    cfg = command_config(config, override)
    path = _checkpoint_path(source, cfg)
    try:
        report = export_checkpoint(path, out, torchscript=torchscript, atol=atol)
        run_id = mlflow_run or (None if no_mlflow else load_checkpoint(path).get("mlflow_run_id"))
    except CheckpointError as e:
        fail(str(e))
    logged = None
    if run_id and not no_mlflow:
        from flows.tracking import client_for

        client = client_for(cfg.tracking.uri)
        for f in (report.onnx, report.torchscript):
            if f:
                client.log_artifact(run_id, f, "export")
        client.log_text(run_id, json.dumps(report.as_dict(), indent=1), "export/report.json")
        client.set_tag(run_id, "reskd.onnx_max_abs_diff", f"{report.onnx_max_abs_diff:.3g}")
        logged = run_id
    result = {**report.as_dict(), "mlflow_run_id": logged}
    if as_json:
        print(json.dumps(result))
    else:
        print_table([{"key": k, "value": v} for k, v in result.items()], ["key", "value"], title="export")
    if not report.ok:
        console.print(f"[bold red]mismatch:[/] outputs differ by more than {atol}")
        raise typer.Exit(1)


COMMANDS = {"train-teacher": train_teacher, "distill": distill, "evaluate": evaluate, "export": export}
