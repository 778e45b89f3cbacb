"""``reskd run``, ``reskd demo``, ``reskd serve`` and ``reskd deploy``: the pipeline from the command line."""

from __future__ import annotations

from typing import Annotated

import typer

from flows.cli.common import ConfigOption, SetOption, TrackingOption, command_config, console, fail
from reskd_core.config import Config

LandingOption = Annotated[str, typer.Option(help="landing location watched for new datasets")]
WatchOption = Annotated[int, typer.Option(min=5, help="seconds between landing scans")]


def _run_flow(cfg: Config, dataset_uri: str | None) -> dict:
    from flows.full import full

    try:
        return full(config=cfg, dataset_uri=dataset_uri)
    except ValueError as e:
        fail(str(e))


def run(
    dataset_uri: str | None = typer.Option(
        None,
        "--dataset",
        help="dataset folder/shards (local or s3://); default: the demo dataset, generated if missing",
    ),
    config: ConfigOption = "demo_cpu",
    override: SetOption = None,
    tracking_uri: TrackingOption = None,
) -> None:
    """Run the reskd/full flow in this process (Prefect's ephemeral mode unless PREFECT_API_URL is set)."""
    cfg = command_config(config, override, {"tracking.uri": tracking_uri})
    result = _run_flow(cfg, dataset_uri)
    console.print(result["table"], soft_wrap=True)  # a markdown table must not be wrapped


def demo(override: SetOption = None) -> None:
    """The README's quick start: the whole pipeline on generated demo videos with the tiny CPU recipe."""
    cfg = command_config("demo_cpu", override)
    console.rule("reskd demo: demo videos -> shards -> teacher -> students -> summary")
    result = _run_flow(cfg, None)
    console.rule("results")
    console.print(result["table"], soft_wrap=True)  # a markdown table must not be wrapped
    reg = result.get("registered")
    if reg:
        console.print(
            f"Registered [bold]{reg['name']}[/] v{reg['version']} as [bold]{reg['alias']}[/] "
            f"({reg['reason']})."
        )
    uri = cfg.tracking.uri
    ui = f"mlflow ui --backend-store-uri {uri}" if not uri.startswith("http") else uri
    console.print(
        f"Compare the runs in the MLflow UI: [bold].venv/bin/{ui}[/] "
        f"(experiment '{cfg.tracking.experiment}')."
    )


def serve(landing_uri: LandingOption = "landing", watch_interval: WatchOption = 60) -> None:
    """Serve the reskd/full, reskd-retrain/registered, reskd/study, reskd/predict and reskd-landing/watch
    deployments from here."""
    from flows.deployments import serve as serve_deployments

    serve_deployments(landing_uri, watch_interval)


def deploy(
    pool: str = typer.Option("reskd-process", help="work pool the deployments run on"),
    landing_uri: LandingOption = "landing",
    watch_interval: WatchOption = 60,
) -> None:
    """Register the deployments on a work pool (run them with `prefect worker start --pool POOL`)."""
    from flows.deployments import deploy as deploy_deployments

    for dep_id in deploy_deployments(pool, landing_uri, watch_interval):
        console.print(f"deployment {dep_id} on pool {pool}")


COMMANDS = {"run": run, "demo": demo, "serve": serve, "deploy": deploy}
