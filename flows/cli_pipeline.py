"""``reskd demo``, ``reskd run``, ``reskd serve`` and ``reskd deploy``: the pipeline from the command line."""

from __future__ import annotations

import typer

from flows.cli import console, fail


def _run_flow(recipe: str, overrides: list[str], dataset_uri: str | None, tracking_uri: str | None) -> dict:
    from flows.full import full

    return full(dataset_uri=dataset_uri, tracking_uri=tracking_uri, recipe=recipe, overrides=overrides)


def run(
    dataset_uri: str | None = typer.Option(
        None,
        "--dataset",
        help="dataset folder/shards (local or s3://); default: the demo dataset, generated if missing",
    ),
    config: str = typer.Option(
        "demo_cpu", "--config", "-c", help="recipe name under configs/ or a YAML path"
    ),
    override: list[str] = typer.Option([], "--set", "-o", help="key.path=value (repeatable)"),
    tracking_uri: str | None = typer.Option(None, help="MLflow tracking URI (default from the config)"),
) -> None:
    """Run the reskd/full flow in this process (Prefect's ephemeral mode unless PREFECT_API_URL is set)."""
    try:
        result = _run_flow(config, override, dataset_uri, tracking_uri)
    except ValueError as e:
        fail(str(e))
    console.print(result["table"], soft_wrap=True)  # a markdown table must not be wrapped


def demo(
    override: list[str] = typer.Option([], "--set", "-o", help="key.path=value (repeatable)"),
) -> None:
    """The README's quick start: the whole pipeline on generated demo videos with the tiny CPU recipe."""
    from reskd_core.config import load_config, recipe_path

    cfg = load_config(recipe_path("demo_cpu"), override)
    console.rule("reskd demo: demo videos -> shards -> teacher -> students -> summary")
    result = _run_flow("demo_cpu", override, None, None)
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


def serve(
    landing_uri: str = typer.Option("landing", help="landing location watched for new datasets"),
    watch_interval: int = typer.Option(60, min=5, help="seconds between landing scans"),
) -> None:
    """Serve the reskd/full, reskd/study and reskd-landing/watch deployments from this process."""
    from flows.deployments import serve as serve_deployments

    serve_deployments(landing_uri, watch_interval)


def deploy(
    pool: str = typer.Option("reskd-process", help="work pool the deployments run on"),
    landing_uri: str = typer.Option("landing"),
    watch_interval: int = typer.Option(60, min=5),
) -> None:
    """Register the deployments on a work pool (run them with `prefect worker start --pool POOL`)."""
    from flows.deployments import deploy as deploy_deployments

    for dep_id in deploy_deployments(pool, landing_uri, watch_interval):
        console.print(f"deployment {dep_id} on pool {pool}")
