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
