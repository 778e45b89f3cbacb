"""The datasets the service knows, kept as tags of their registered models ``reskd-<name>``.

- ``reskd.dataset``, ``reskd.latest_uri``, ``reskd.latest_version``, ``reskd.versions`` (a JSON list, in
  the order they were first registered): what the scheduled retraining retrains (:func:`known_datasets`).
  A version registered for the first time becomes the latest; retraining an older one leaves it.
  Only datasets given by URI are known: the generated demo data is not.
- ``reskd.test_shards``, ``reskd.test_split``: the test set promotion compares on, pinned by the first
  registration and kept for every later version (:func:`pinned_test_set`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from mlflow.exceptions import MlflowException

from flows.tracking.client import client_for

DATASET, LATEST_URI, LATEST_VERSION, VERSIONS = (
    "reskd.dataset",
    "reskd.latest_uri",
    "reskd.latest_version",
    "reskd.versions",
)
TEST_SHARDS, TEST_SPLIT = "reskd.test_shards", "reskd.test_split"


@dataclass(frozen=True)
class KnownDataset:
    name: str
    uri: str  # its latest version's folder
    version: str  # "" for an unversioned dataset


def _tags(tracking_uri: str, model: str) -> dict[str, str] | None:
    try:
        return dict(client_for(tracking_uri).get_registered_model(model).tags or {})
    except MlflowException:
        return None


def pinned_test_set(tracking_uri: str, model: str) -> tuple[str, str] | None:
    """``(shards_uri, split)`` pinned on registered model ``model``, None before its first version."""
    tags = _tags(tracking_uri, model) or {}
    return (tags[TEST_SHARDS], tags[TEST_SPLIT]) if TEST_SHARDS in tags and TEST_SPLIT in tags else None


def record(
    tracking_uri: str,
    model: str,
    test_set: tuple[str, str],
    dataset: str,
    dataset_uri: str | None,
    version: str | None,
) -> None:
    """After a registration: pin ``test_set`` unless one is pinned; with ``dataset_uri`` (not the demo),
    record the version, and make it the latest when it is new."""
    client = client_for(tracking_uri)
    tags = _tags(tracking_uri, model) or {}
    if TEST_SHARDS not in tags:
        client.set_registered_model_tag(model, TEST_SHARDS, test_set[0])
        client.set_registered_model_tag(model, TEST_SPLIT, test_set[1])
    if dataset_uri is None:
        return
    versions = json.loads(tags.get(VERSIONS, "[]"))
    version = version or ""
    if version in versions and version:
        return
    client.set_registered_model_tag(model, DATASET, dataset)
    client.set_registered_model_tag(
        model, VERSIONS, json.dumps([*[v for v in versions if v != version], version])
    )
    client.set_registered_model_tag(model, LATEST_URI, dataset_uri)
    client.set_registered_model_tag(model, LATEST_VERSION, version)


def known_datasets(tracking_uri: str) -> list[KnownDataset]:
    """Every dataset with a registered model and a recorded latest version, by name."""
    client = client_for(tracking_uri)
    out = []
    for model in client.search_registered_models("name LIKE 'reskd-%'"):
        tags = model.tags or {}
        if LATEST_URI in tags:
            out.append(KnownDataset(tags[DATASET], tags[LATEST_URI], tags.get(LATEST_VERSION, "")))
    return sorted(out, key=lambda d: d.name)
