"""MLflow runs: created (or, for a rerun of a training job, reopened) and always ended.

The driver creates a training job's run and hands its id to the Ray workers, so rank 0 keeps logging into
the same run after a worker failure and restart; a rerun of the same job (tag ``reskd.run_name``) reopens
it, and its metrics continue the same history. Every run ends through :func:`end_run`: ``FINISHED``, or
``FAILED`` with the reason as tag ``reskd.error`` and ``error.txt``; :func:`run_context` does that
around a block, on any exception.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import yaml

from flows.tracking.client import client_for, experiment_id, find_run, log_params, resolve_uri, set_tags
from flows.tracking.names import ERROR_TAG, KIND_TAG, PARENT_TAG, ROLE_TAG, RUN_NAME_TAG, run_name
from flows.tracking.params import role_params
from reskd_core.config import Config

log = logging.getLogger(__name__)

FINISHED, FAILED = "FINISHED", "FAILED"
MAX_TAG = 5000  # MLflow's limit on a tag value's length


@dataclass(frozen=True)
class TrackedRun:
    """A run handed out by :func:`training_run`: its id, and whether it was reopened for a rerun."""

    run_id: str
    reopened: bool = False


def start_run(
    tracking_uri: str,
    experiment: str,
    name: str,
    *,
    parent_run_id: str | None = None,
    tags: dict[str, str] | None = None,
    params: dict[str, object] | None = None,
) -> str:
    """A new run ``name`` in ``experiment`` (created on first use, as a training experiment), nested under
    ``parent_run_id``, with ``tags`` and ``params``; returns its id."""
    client = client_for(tracking_uri)
    all_tags = {**(tags or {}), **({PARENT_TAG: parent_run_id} if parent_run_id else {})}
    run = client.create_run(experiment_id(client, experiment), run_name=name, tags=all_tags)
    if params:
        log_params(client, run.info.run_id, params)
    return run.info.run_id


def start_training_run(
    cfg: Config,
    role: str,
    job: str,
    *,
    parent_run_id: str | None = None,
    tags: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> tuple[str, bool]:
    """``(run_id, reopened)``: the MLflow run of training job ``job`` (its key, tag
    ``reskd.run_name``), named for the UI by :func:`~flows.tracking.names.run_name`, with the role's
    params (:func:`~flows.tracking.params.role_params`) plus ``params`` and ``config.yaml``.

    A rerun of the same job reopens its run instead of creating a second one (Ray resumes the job from its
    checkpoint, so its metrics continue the same history).
    """
    uri = resolve_uri(cfg.tracking.uri)
    client = client_for(uri)
    all_tags = {RUN_NAME_TAG: job, ROLE_TAG: role, **(tags or {})}
    previous = find_run(client, experiment_id(client, cfg.tracking.experiment), job)
    if previous is not None:
        run_id = previous.info.run_id
        client.update_run(run_id, status="RUNNING")
        set_tags(client, run_id, {**all_tags, **({PARENT_TAG: parent_run_id} if parent_run_id else {})})
        log.info("MLflow: reopened run %s of job %s", run_id, job)
        return run_id, True
    run_id = start_run(
        uri,
        cfg.tracking.experiment,
        run_name(cfg, role),
        parent_run_id=parent_run_id,
        tags=all_tags,
        params={**role_params(cfg, role), **(params or {})},
    )
    client.log_text(run_id, yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False), "config.yaml")
    log.info("MLflow: run %s for job %s at %s", run_id, job, uri)
    return run_id, False


def start_parent_run(cfg: Config, tags: dict[str, str], kind: str = "pipeline") -> str:
    """The parent run of a ``kind`` flow run (``pipeline`` or ``study``): its params are the config less
    what the child runs set one by one, the whole config is ``config.json``; returns its id."""
    run_id = start_run(
        cfg.tracking.uri,
        cfg.tracking.experiment,
        run_name(cfg, kind),
        tags={KIND_TAG: kind, "reskd.dataset": cfg.pipeline.dataset, **tags},
        params=role_params(cfg, kind),
    )
    client_for(cfg.tracking.uri).log_text(
        run_id, json.dumps(cfg.model_dump(mode="json"), indent=1), "config.json"
    )
    log.info("MLflow parent run %s at %s", run_id, cfg.tracking.uri)
    return run_id


def end_run(tracking_uri: str, run_id: str | None, status: str, error: str | None = None) -> None:
    """Close run ``run_id`` (None: nothing to close) ``FINISHED`` or ``FAILED``; a failure's reason is
    kept as tag ``reskd.error`` and as ``error.txt``."""
    if run_id is None:
        return
    client = client_for(tracking_uri)
    if error:
        client.set_tag(run_id, ERROR_TAG, error[:MAX_TAG])
        try:
            client.log_text(run_id, error, "error.txt")
        except Exception as e:  # the tag holds the reason; a failing artifact store must not hide it
            log.warning("MLflow: could not write error.txt of run %s: %s", run_id, e)
    client.set_terminated(run_id, status)


def end_parent_run(
    run_id: str | None, status: str, cfg_uri: str | None = None, error: str | None = None
) -> None:
    """:func:`end_run` for a parent run (``cfg_uri`` None: MLflow's current tracking URI)."""
    import mlflow

    end_run(cfg_uri or mlflow.get_tracking_uri(), run_id, status, error)


@contextmanager
def run_context(tracking_uri: str, run_id: str | None) -> Iterator[str | None]:
    """Ends run ``run_id`` when the block ends: ``FINISHED``, or ``FAILED`` with the exception as its
    ``reskd.error`` on any exception (re-raised), interrupts included."""
    try:
        yield run_id
    except BaseException as e:
        end_run(tracking_uri, run_id, FAILED, f"{type(e).__name__}: {e}")
        raise
    end_run(tracking_uri, run_id, FINISHED)


@contextmanager
def training_run(
    cfg: Config,
    role: str,
    job: str,
    *,
    parent_run_id: str | None = None,
    tags: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> Iterator[TrackedRun]:
    """The run of training job ``job`` (:func:`start_training_run`: new, or reopened for a rerun), ended
    by :func:`run_context` when the block ends."""
    run_id, reopened = start_training_run(
        cfg, role, job, parent_run_id=parent_run_id, tags=tags, params=params
    )
    with run_context(cfg.tracking.uri, run_id):
        yield TrackedRun(run_id, reopened)


@contextmanager
def parent_run(cfg: Config, tags: dict[str, str], kind: str = "pipeline") -> Iterator[str]:
    """The parent run of a flow run (:func:`start_parent_run`), ended by :func:`run_context`."""
    run_id = start_parent_run(cfg, tags, kind)
    with run_context(cfg.tracking.uri, run_id):
        yield run_id
