"""The deployments: ``reskd/full`` (one dataset; runs on dataset arrival), ``reskd-retrain/registered``
(cron retraining of every registered dataset, inactive by default), ``reskd-landing/watch`` (scans the
landing location and announces new datasets), ``reskd/study`` (the ablation study behind
docs/results.md; run on demand) and ``reskd/predict`` (batch inference).

``reskd serve`` serves them all from one process; ``reskd deploy --pool NAME`` registers them on a work
pool for workers (``prefect worker start --pool NAME``).
"""

from __future__ import annotations

from pathlib import Path

from prefect.events import DeploymentEventTrigger
from prefect.schedules import Cron

from flows.full import full
from flows.landing import EVENT, watch_landing
from flows.predict import predict
from flows.retrain import retrain_registered
from flows.study import study

REPO_ROOT = Path(__file__).resolve().parents[1]
RETRAIN_CRON = "0 3 * * 1"  # Mondays 03:00 UTC; switch on with `prefect deployment schedule resume`
RETRAIN_DEPLOYMENT = "reskd-retrain/registered"


def retrain_trigger() -> DeploymentEventTrigger:
    """Run ``reskd/full`` on the dataset named in each ``reskd.dataset.arrived`` event."""
    return DeploymentEventTrigger(
        name="reskd-retrain-on-dataset-arrival",
        description="New dataset in the landing location -> retrain on it",
        expect={EVENT},
        match={"prefect.resource.id": "reskd.dataset.*"},
        parameters={
            "dataset_uri": "{{ event.payload.dataset_uri }}",
            "dataset_name": "{{ event.payload.name }}",
            "dataset_version": "{{ event.payload.version }}",
        },
    )


# key -> (flow, its entrypoint for a work pool's workers)
FLOWS = {
    "full": (full, "flows/full.py:full"),
    "retrain": (retrain_registered, "flows/retrain.py:retrain_registered"),
    "study": (study, "flows/study.py:study"),
    "watch": (watch_landing, "flows/landing.py:watch_landing"),
    "predict": (predict, "flows/predict.py:predict"),
}


def deployment_kwargs(landing_uri: str, watch_interval_s: int) -> dict[str, dict]:
    """Keyword arguments of each deployment in ``FLOWS``, shared by ``serve`` and ``deploy``."""
    return {
        "full": dict(
            name="full",
            triggers=[retrain_trigger()],
            description=(
                "ResKD pipeline: extract -> teacher -> students per resolution -> evaluate -> registry. "
                "A dataset_uri trains with its dataset.yaml's recipe; no parameters: the demo dataset "
                "with the tiny CPU recipe."
            ),
            tags=["reskd"],
        ),
        "retrain": dict(
            name="registered",
            schedules=[Cron(RETRAIN_CRON, timezone="UTC", active=False)],
            description=(
                "Retrain the latest version of every registered dataset (or the named ones), each with "
                "its own recipe: one reskd/full run each. Cron inactive until resumed."
            ),
            tags=["reskd"],
        ),
        "study": dict(
            name="study",
            description=(
                "ResKD ablation study: the paper's comparisons, 3 seeds each, as MLflow child runs of one "
                "parent, with the results page logged to it. No parameters: the demo data, configs/study_cpu."
            ),
            tags=["reskd"],
        ),
        "predict": dict(
            name="predict",
            description=(
                "Batch inference: label every video of a dataset (annotations + videos, or shards; local "
                "or S3) with a model: Parquet shards of predictions, an MLflow run with throughput and "
                "accuracy. No parameters: the demo data with models:/reskd-demo@champion."
            ),
            tags=["reskd"],
        ),
        "watch": dict(
            name="watch",
            interval=watch_interval_s,
            parameters={"landing_uri": landing_uri},
            description="Announce new ready datasets in the landing location (reskd.dataset.arrived).",
            tags=["reskd"],
        ),
    }


def serve(landing_uri: str = "landing", watch_interval_s: int = 60, limit: int | None = 1) -> None:
    """Serve every deployment from this process until interrupted."""
    from prefect import serve as prefect_serve

    kw = deployment_kwargs(landing_uri, watch_interval_s)
    prefect_serve(*(fl.to_deployment(**kw[key]) for key, (fl, _) in FLOWS.items()), limit=limit)


def deploy(pool: str, landing_uri: str = "landing", watch_interval_s: int = 60) -> list[str]:
    """Register every deployment on work pool ``pool``, code pulled from this checkout."""
    kw = deployment_kwargs(landing_uri, watch_interval_s)
    ids = []
    for key, (fl, entry) in FLOWS.items():
        source = fl.from_source(source=str(REPO_ROOT), entrypoint=entry)
        ids.append(str(source.deploy(work_pool_name=pool, print_next_steps=False, **kw[key])))
    return ids
