"""The landing watcher: emits ``reskd.dataset.arrived`` once for each new ready dataset whose
``dataset.yaml`` validates, and ``reskd.dataset.rejected`` (plus a markdown artifact) for one that does not.

``reskd/full`` carries a trigger on the arrival event (see flows/deployments.py), so dropping a dataset into
the landing location starts a retraining run with ``dataset_uri``, its name and version set. A rejected
dataset is not marked as seen: it is checked again at every scan until its file is fixed.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.events import emit_event

from reskd_core.landing import LandedDataset, checked, mark_picked, new_datasets

EVENT = "reskd.dataset.arrived"
REJECTED = "reskd.dataset.rejected"
REJECTED_ARTIFACT = "reskd-landing-rejected"


def _resource(uri: str) -> dict[str, str]:
    return {"prefect.resource.id": f"reskd.dataset.{uri}", "prefect.resource.name": uri}


@flow(name="reskd-landing")
def watch_landing(landing_uri: str = "landing") -> list[str]:
    """Scan ``landing_uri`` (local folder or s3:// prefix) and announce each new valid dataset once;
    returns the announced URIs."""
    log = get_run_logger()
    fresh: list[LandedDataset] = []
    rejected: dict[str, str] = {}
    for d in new_datasets(landing_uri):
        try:
            fresh.append(checked(d))
        except ValueError as e:
            rejected[d.uri] = str(e)
    for d in fresh:
        emit_event(
            event=EVENT,
            resource=_resource(d.uri),
            payload={"dataset_uri": d.uri, "kind": d.kind, "name": d.name, "version": d.version or ""},
        )
        log.info("announced %s (%s, %s %s)", d.uri, d.kind, d.name, d.version or "")
    for uri, reason in rejected.items():
        emit_event(event=REJECTED, resource=_resource(uri), payload={"dataset_uri": uri, "reason": reason})
        log.error("rejected %s: %s", uri, reason)
    if rejected:
        rows = "\n".join(f"| `{uri}` | {reason.replace('|', '/')} |" for uri, reason in rejected.items())
        create_markdown_artifact(
            markdown=f"# Rejected datasets in {landing_uri}\n\n| dataset | reason |\n|---|---|\n{rows}\n",
            key=REJECTED_ARTIFACT,
            description="datasets not started: fix their dataset.yaml",
        )
    # The ledger is written after the events: a crash in between re-announces rather than loses a dataset.
    mark_picked(landing_uri, fresh)
    return [d.uri for d in fresh]
