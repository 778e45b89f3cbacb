import sys
from pathlib import Path

import pytest

from tests.support.processes import free_port, start, stop, wait_http

BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory):
    """A ``prefect server start`` process (SQLite, no UI) on a free port; yields its API URL and env."""
    root = tmp_path_factory.mktemp("prefect")
    port = free_port()
    env = {
        "PREFECT_HOME": str(root / "home"),
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{root / 'prefect.db'}",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_API_URL": "",
    }
    proc = start(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui"],
        root / "server.log",
        env=env,
        cwd=root,
    )
    api = f"http://127.0.0.1:{port}/api"
    try:
        wait_http(api + "/health", timeout=180, proc=proc, log=root / "server.log")
        client_env = {"PREFECT_HOME": str(root / "client"), "PREFECT_API_URL": api}
        yield api, client_env  # point clients at it with PREFECT_API_URL (and a PREFECT_HOME of their own)
    finally:
        stop(proc)
