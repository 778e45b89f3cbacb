"""The landing watcher: emits ``reskd.dataset.arrived`` once for each new ready dataset.

``reskd/full`` carries a trigger on that event (see flows/deployments.py), so dropping a dataset into
the landing location starts a retraining run with ``dataset_uri`` set to it.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.events import emit_event

from reskd_core.landing import mark_picked, new_datasets

EVENT = "reskd.dataset.arrived"


@flow(name="reskd-landing")
def watch_landing(landing_uri: str = "landing") -> list[str]:
    """Scan ``landing_uri`` (local folder or s3:// prefix) and announce each new ready dataset once."""
    log = get_run_logger()
    fresh = new_datasets(landing_uri)
    for d in fresh:
        emit_event(
            event=EVENT,
            resource={"prefect.resource.id": f"reskd.dataset.{d.uri}", "prefect.resource.name": d.uri},
            payload={"dataset_uri": d.uri, "kind": d.kind},
        )
        log.info("announced %s (%s)", d.uri, d.kind)
    # The ledger is written after the events: a crash in between re-announces rather than loses a dataset.
    mark_picked(landing_uri, fresh)
    return [d.uri for d in fresh]
