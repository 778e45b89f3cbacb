"""``reskd/full`` and ``reskd/study``: two deployments of one flow name on a real Prefect server."""

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support.processes import stop

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def _get(url: str):
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


def _post(url: str, body: dict):
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def _run(cmd, env, tmp_path, timeout=240):
    import os

    done = subprocess.run(
        cmd, env={**os.environ, **env}, cwd=tmp_path, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_deploy_registers_study_beside_full(prefect_api, tmp_path):
    api, env = prefect_api
    _run([str(BIN / "prefect"), "work-pool", "create", "reskd-test", "--type", "process"], env, tmp_path)
    _run([str(BIN / "reskd"), "deploy", "--pool", "reskd-test"], env, tmp_path)
    full = _get(f"{api}/deployments/name/reskd/full")
    study = _get(f"{api}/deployments/name/reskd/study")
    assert full["flow_id"] == study["flow_id"]  # one flow named reskd, two deployments
    assert full["id"] != study["id"]
    assert study["entrypoint"] == "flows/study.py:study"
    assert full["entrypoint"] == "flows/full.py:full"
    assert study["work_pool_name"] == "reskd-test"
    schema = study["parameter_openapi_schema"]["properties"]
    assert {"quick", "out", "recipe", "overrides"} <= set(schema)
    assert _get(f"{api}/flows/{study['flow_id']}")["name"] == "reskd"


def test_serve_serves_study_beside_full(prefect_api, tmp_path):
    import os

    api, env = prefect_api
    proc = subprocess.Popen(
        [str(BIN / "reskd"), "serve", "--landing-uri", str(tmp_path / "landing")],
        env={**os.environ, **env},
        cwd=tmp_path,
        stdout=open(tmp_path / "serve.log", "wb"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        served = set()
        while time.monotonic() < deadline and proc.poll() is None:
            deps = _post(f"{api}/deployments/filter", {})
            flows = {f["id"]: f["name"] for f in _post(f"{api}/flows/filter", {})}
            served = {f"{flows.get(d['flow_id'])}/{d['name']}" for d in deps if d.get("status") == "READY"}
            if {"reskd/full", "reskd/study"} <= served:
                break
            time.sleep(1)
        log = (tmp_path / "serve.log").read_text(errors="replace")
        assert {"reskd/full", "reskd/study"} <= served, log[-3000:]
    finally:
        stop(proc)
