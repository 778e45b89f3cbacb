"""Fixtures of the tracking tests: a real MLflow store in a SQLite file, one per module."""

from __future__ import annotations

import pytest

from reskd_core.config import Config, load_config


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('tracking') / 'mlflow.db'}"


@pytest.fixture
def cfg(tracking_uri, request) -> Config:
    """A config tracking into the module's store, in an experiment of the test's own."""
    return load_config(
        None,
        [
            f"tracking.uri={tracking_uri}",
            f"tracking.experiment={request.node.name[:60]}",
            "teacher.resolution=112",
            "student.resolution=56",
        ],
    )
