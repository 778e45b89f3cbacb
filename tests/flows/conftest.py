"""Fixtures of the pipeline-service tests: a real Prefect server per module, a local Ray cleaned up after."""

from __future__ import annotations

import pytest

from tests.flows.helpers import PrefectServer, start_prefect_server
from tests.support.processes import stop


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory) -> PrefectServer:
    """A real ``prefect server start`` process on SQLite, stopped after the module."""
    server = start_prefect_server(tmp_path_factory.mktemp("prefect-server"))
    try:
        yield server
    finally:
        stop(server.proc, timeout=30)


@pytest.fixture(scope="module")
def local_ray_cleanup():
    """Shut down a local Ray that flow runs in this process started (``flows.ray_train.ensure_ray``)."""
    yield
    from flows import ray_train

    if ray_train._ray_address == ["local"]:
        import ray

        ray.shutdown()
        ray_train._ray_address.clear()


@pytest.fixture(scope="module")
def restore_mlflow_uri():
    """Put MLflow's global tracking URI and MLFLOW_TRACKING_URI back after the module: registering a model
    or logging one in this process sets both (``mlflow.set_tracking_uri`` exports the variable), which
    would point later tests' configs and subprocesses at this module's store."""
    import os

    import mlflow
    from mlflow.tracking._tracking_service import utils

    env, uri = os.environ.get("MLFLOW_TRACKING_URI"), utils._tracking_uri
    yield
    mlflow.set_tracking_uri(uri)
    if env is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = env
