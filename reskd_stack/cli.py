"""``reskd stack up|down|status|restart``: the local production stack from the command line."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import typer

from reskd_stack.core import Stack
from reskd_stack.services import SERVICES
from reskd_stack.settings import env_file_text

stack_app = typer.Typer(
    no_args_is_help=True,
    help="The local production stack: Prefect + MLflow on PostgreSQL, S3, Ray head + worker, on 127.0.0.1.",
)

ROOT = typer.Option(None, "--root", envvar="RESKD_STACK_DIR", help="stack folder (default .stack)")


def _port(name: str, what: str):
    return typer.Option(None, f"--{name}", envvar=f"RESKD_STACK_{name.upper().replace('-', '_')}", help=what)


def _open(root: Path | None, **overrides) -> Stack:
    try:
        return Stack.open(root, **overrides)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None


def _print_status(stack: Stack) -> bool:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"reskd stack ({stack.root})")
    for col in ("service", "state", "pid", "endpoint"):
        table.add_column(col)
    rows = stack.status()
    colour = {"up": "green", "unhealthy": "yellow", "down": "red"}
    for r in rows:
        state = f"[{colour[r.state]}]{r.state}[/]"
        table.add_row(r.name, state, str(r.pid or ""), r.endpoint)
    console = Console()
    console.print(table)
    console.print(f"logs: {stack.log_dir}/<service>.log")
    return all(r.state == "up" for r in rows)


@stack_app.command()
def up(
    root: Path | None = ROOT,
    s3_port: int | None = _port("s3-port", "S3 server port [9000]"),
    prefect_port: int | None = _port("prefect-port", "Prefect server port [4200]"),
    worker_port: int | None = _port("worker-port", "Prefect worker health port [4201]"),
    mlflow_port: int | None = _port("mlflow-port", "MLflow server port [5000]"),
    ray_port: int | None = _port("ray-port", "Ray GCS port; Ray also uses the next 99 ports [6380]"),
    ray_dashboard_port: int | None = _port("ray-dashboard-port", "Ray dashboard port [8265]"),
    postgres_url: str | None = typer.Option(
        None, envvar="RESKD_STACK_POSTGRES_URL", help="PostgreSQL server, no password (PGPASSWORD)"
    ),
    prefect_db: str | None = typer.Option(None, envvar="RESKD_STACK_PREFECT_DB", help="[reskd_prefect]"),
    mlflow_db: str | None = typer.Option(None, envvar="RESKD_STACK_MLFLOW_DB", help="[reskd_mlflow]"),
    bucket: str | None = typer.Option(None, envvar="RESKD_STACK_BUCKET", help="S3 bucket [reskd]"),
    ui: bool | None = typer.Option(None, "--ui/--no-ui", help="Prefect UI [on]"),
    ray_dashboard: bool | None = typer.Option(None, "--ray-dashboard/--no-ray-dashboard", help="[on]"),
    workdir: Path | None = typer.Option(None, help="the Prefect worker's folder, where flow runs start [.]"),
) -> None:
    """Start every service not yet running and wait until all are healthy (idempotent)."""
    stack = _open(
        root,
        s3_port=s3_port,
        prefect_port=prefect_port,
        worker_port=worker_port,
        mlflow_port=mlflow_port,
        ray_port=ray_port,
        ray_dashboard_port=ray_dashboard_port,
        postgres_url=postgres_url,
        prefect_db=prefect_db,
        mlflow_db=mlflow_db,
        bucket=bucket,
        ui=ui,
        ray_dashboard=ray_dashboard,
        workdir=str(workdir) if workdir else None,
    )
    try:
        stack.up()
    except (RuntimeError, TimeoutError) as e:
        typer.echo(f"error: {e}", err=True)
        typer.echo(
            "the services that started keep running: `reskd stack status`, `reskd stack down`", err=True
        )
        raise typer.Exit(1) from None
    _print_status(stack)
    typer.echo(f"\nsource {stack.root / 'stack.env'}   # then: prefect deployment run reskd/full")


@stack_app.command()
def down(
    root: Path | None = ROOT,
    purge: bool = typer.Option(False, help="also drop the databases and delete the stack folder (S3 data)"),
) -> None:
    """Stop every service of the stack; nothing it started keeps running."""
    stack = _open(root)
    stack.down(purge=purge)
    typer.echo(f"stack {stack.root} is down" + (" and purged" if purge else ""))


@stack_app.command()
def status(
    root: Path | None = ROOT,
    env: bool = typer.Option(False, "--env", help="print `export NAME=value` lines to source"),
    as_json: bool = typer.Option(False, "--json", help="services, endpoints and env as JSON"),
) -> None:
    """Each service up/unhealthy/down (exit code 1 unless all are up)."""
    stack = _open(root)
    if env:
        typer.echo(env_file_text(stack.settings), nl=False)
        return
    if as_json:
        rows = stack.status()
        out = {
            "root": str(stack.root),
            "services": [asdict(r) for r in rows],
            "endpoints": stack.endpoints,
            "env": stack.env,
        }
        typer.echo(json.dumps(out, indent=1))
        ok = all(r.state == "up" for r in rows)
    else:
        ok = _print_status(stack)
    raise typer.Exit(0 if ok else 1)


@stack_app.command()
def restart(
    service: str = typer.Argument(..., help=f"one of {', '.join(SERVICES)}"),
    root: Path | None = ROOT,
    hard: bool = typer.Option(True, "--hard/--soft", help="SIGKILL (a crash) or SIGTERM first"),
) -> None:
    """Restart one service (fault drills: `restart ray-worker`, `restart s3`)."""
    if service not in SERVICES:
        raise typer.BadParameter(f"unknown service {service!r}; one of {', '.join(SERVICES)}")
    _open(root).restart(service, hard=hard)
    typer.echo(f"{service} restarted")
