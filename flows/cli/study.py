"""``reskd study``: the ablation study flow (reskd/study) from the command line, writing docs/results.md."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import typer

from flows.cli.common import ConfigOption, SetOption, TrackingOption, command_config, console, fail

DEFAULT_OUT = "docs/results.md"
QUICK_OUT = "runs/study-quick/results.md"  # a smoke run never overwrites the committed page by default


def study(
    quick: bool = typer.Option(
        False, "--quick", help="smoke run: tiny dataset, 1 epoch, 2 seeds (what the test suite runs)"
    ),
    out: Path | None = typer.Option(
        None, "--out", help=f"results page to write (default {DEFAULT_OUT}; with --quick {QUICK_OUT})"
    ),
    config: ConfigOption = "study_cpu",
    override: SetOption = None,
    tracking_uri: TrackingOption = None,
    render: str | None = typer.Option(
        None, "--render", metavar="RUN_ID", help="no training: write the page again from this study's runs"
    ),
) -> None:
    """Run the paper's comparisons (3 seeds each) as MLflow child runs and write the results page.

    The page and its plots (next to it, in a folder named like it) are also logged to the MLflow parent
    run. Exit status 1 when an arm failed (the page lists it), 2 for a bad configuration.
    """
    page = out or Path(QUICK_OUT if quick else DEFAULT_OUT)
    if render:
        from flows.study import render as render_flow

        try:
            result = render_flow(render, str(page), tracking_uri)
        except ValueError as e:
            fail(str(e))
        console.print(f"Results page: [bold]{result['page']}[/] ({result['records']} arm runs, re-rendered).")
        return
    from flows.study import study as study_flow
    from reskd_core.study.plan import QUICK_OVERRIDES

    # the quick settings first, so that --set can change any of them
    cfg = command_config(
        config, (QUICK_OVERRIDES if quick else []) + (override or []), {"tracking.uri": tracking_uri}
    )
    command = "reskd " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    try:
        result = study_flow(config=cfg, recipe=config, quick=quick, out=str(page), command=command)
    except ValueError as e:
        fail(str(e))
    console.print(
        f"Results page: [bold]{result['page']}[/] ({result['records']} arm runs, "
        f"{result['wall_s'] / 60:.1f} min); MLflow parent run [bold]{result['parent_run_id']}[/]."
    )
    if result["failed"]:
        for name, reason in sorted(result["failed"].items()):
            console.print(f"[bold red]failed:[/] {name}: {reason}")
        raise typer.Exit(1)


COMMANDS = {"study": study}
