"""The root ``reskd`` app: logging set-up, then every command group registered from its module.

Each command parses its options into the one config and calls the library function (or flow) that the
Prefect task and the Ray Train worker call too.
"""

from __future__ import annotations

import logging
import os

import typer

from flows.cli import benchmark, data, models, pipeline, predict, study, train
from reskd_stack.cli import stack_app

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="ResKD: cross-resolution distillation for video."
)


@app.callback()
def _main(verbose: bool = typer.Option(False, "--verbose", "-v", help="debug logging")) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("httpx", "httpcore", "alembic", "urllib3"):  # one line per HTTP call drowns the progress
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # Prefect's server sends a telemetry heartbeat that, on the ephemeral SQLite server, logs "database is
    # locked" tracebacks under load; users who want it set the variable themselves.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


for module in (models, data, train, predict, pipeline, study):
    for name, command in module.COMMANDS.items():
        app.command(name)(command)
app.add_typer(benchmark.app, name="benchmark")
app.add_typer(stack_app, name="stack")
