"""Scheduled retraining of what is registered: one ``reskd/full`` run per known dataset.

The ``reskd-retrain/registered`` deployment carries the cron schedule (inactive until resumed). Each run
reads the datasets the service knows from the MLflow registry (:func:`flows.tracking.catalog.known_datasets`:
every dataset registered from a URI, with its latest version), or only those named in ``datasets``, and
starts a ``reskd/full`` run on each latest version. That run builds its config from the version's
``dataset.yaml``, so each dataset trains with its own recipe; none of them is the demo.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.deployments import run_deployment

from flows.run_config import build_config
from flows.tracking import catalog

FULL_DEPLOYMENT = "reskd/full"
HEADER = "| dataset | version | folder | flow run |\n|---|---|---|---|\n"


@flow(name="reskd-retrain")
def retrain_registered(datasets: list[str] | None = None, tracking_uri: str | None = None) -> list[dict]:
    """Start a ``reskd/full`` run on the latest version of each known dataset (or of ``datasets``, by
    name); returns ``{name, version, dataset_uri, flow_run_id}`` per run started. The runs are queued,
    not waited for: they run wherever ``reskd/full`` runs (``reskd serve``, a work pool's workers)."""
    log = get_run_logger()
    uri = build_config(None, values={"tracking.uri": tracking_uri} if tracking_uri else None).tracking.uri
    known = catalog.known_datasets(uri)
    if datasets is not None:
        missing = sorted(set(datasets) - {d.name for d in known})
        if missing:
            names = ", ".join(d.name for d in known) or "none"
            raise ValueError(f"not registered from a dataset URI: {', '.join(missing)} (known: {names})")
        known = [d for d in known if d.name in datasets]
    started = []
    for d in known:
        params = {"dataset_uri": d.uri, "dataset_name": d.name, "dataset_version": d.version or None}
        if tracking_uri:
            params["tracking_uri"] = tracking_uri
        run = run_deployment(FULL_DEPLOYMENT, parameters=params, timeout=0, as_subflow=False)
        log.info("retraining %s %s (%s): flow run %s", d.name, d.version, d.uri, run.id)
        started.append(
            {"name": d.name, "version": d.version, "dataset_uri": d.uri, "flow_run_id": str(run.id)}
        )
    if not started:
        log.info("no registered dataset to retrain (tracking %s)", uri)
    rows = "\n".join(
        f"| {s['name']} | {s['version']} | `{s['dataset_uri']}` | {s['flow_run_id']} |" for s in started
    )
    create_markdown_artifact(
        markdown=f"# reskd scheduled retraining\n\n{HEADER}{rows}\n",
        key="reskd-retrain",
        description="reskd/full runs started on the registered datasets",
    )
    return started
