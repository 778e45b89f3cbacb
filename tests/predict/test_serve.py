"""The registered video model behind a real ``mlflow models serve`` process: a generated mp4 POSTed to
``/invocations`` comes back with the labels ``reskd predict`` gives it."""

from __future__ import annotations

import base64
import json
import os
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from reskd_core.data.demo import render_video, write_mp4
from reskd_core.predict import TorchClassifier, VideoItem, predict_items, top_k
from tests.fixtures.trained_student import register_champion
from tests.support.processes import free_port, start, stop, wait_http

MLFLOW = str(Path(sys.executable).parent / "mlflow")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def registered(trained_student, mlflow_server, restore_mlflow_uri):
    """The trained student registered as ``reskd-serve-test@champion`` (the pipeline's registration)."""
    return register_champion(trained_student, mlflow_server, "serve-test")


@pytest.fixture(scope="module")
def server(registered, mlflow_server, tmp_path_factory):
    """``mlflow models serve -m models:/reskd-serve-test@champion --env-manager local`` on a free port."""
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    port = free_port()
    cmd = [MLFLOW, "models", "serve", "-m", "models:/reskd-serve-test@champion", "--env-manager", "local"]
    env = {
        "MLFLOW_TRACKING_URI": mlflow_server,
        "PYTHONPATH": str(REPO),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",  # its uvicorn
        "OMP_NUM_THREADS": "1",
    }
    proc = start([*cmd, "-h", "127.0.0.1", "-p", str(port), "-w", "1"], log, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/ping", timeout=180, proc=proc, log=log)
        yield url
    finally:
        stop(proc)


def _post(url: str, body: dict) -> dict:
    req = urllib.request.Request(
        url + "/invocations",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())


def test_registered_model_is_the_video_model(registered, mlflow_server):
    version = MlflowClient(mlflow_server).get_model_version_by_alias("reskd-serve-test", "champion")
    assert version.tags["reskd.checkpoint"] and version.run_id == registered
    run = MlflowClient(mlflow_server).get_run(registered)
    assert run.data.tags["reskd.video_model_uri"].startswith("models:/m-")
    assert run.info.status == "FINISHED"


def test_served_model_labels_a_generated_mp4(server, trained_student, tmp_path):
    video = tmp_path / "letter-E.mp4"
    write_mp4(video, render_video("letter-E", np.random.default_rng(123), 64, 64, 8))
    broken = video.read_bytes()[:200]
    body = {
        "dataframe_records": [
            {"video": base64.b64encode(video.read_bytes()).decode(), "id": "generated"},
            {"uri": str(trained_student.videos / "letter-A_000.mp4")},  # a path the server reads
            {"video": base64.b64encode(broken).decode(), "id": "broken"},
        ]
    }
    rows = _post(server, body)["predictions"]
    known = str(trained_student.videos / "letter-A_000.mp4")
    assert [r["id"] for r in rows] == ["generated", known, "broken"]
    clf = TorchClassifier(trained_student.checkpoint)
    items = [VideoItem("g", str(video)), VideoItem("a", known)]
    for row, want in zip(rows, predict_items(clf, items), strict=False):
        expected = top_k(want.scores, clf.class_names, 5)
        assert row["labels"] == [n for n, _ in expected] and row["label"] in clf.class_names
        assert np.allclose(row["scores"], [s for _, s in expected], atol=1e-5) and not row["error"]
    assert "not a readable video" in rows[2]["error"] and not rows[2]["labels"]


def test_served_model_answers_the_readmes_curl_command(server, trained_student):
    """The README's ``curl`` command as written there (its port and video swapped for the test's), in bash."""
    import subprocess

    readme = (REPO / "README.md").read_text()
    start = readme.index("curl -s -X POST http://127.0.0.1:5001/invocations")
    end = readme.index("\n", readme.index('-d "', start))
    video = trained_student.videos / "letter-H_000.mp4"
    command = readme[start:end].replace("\\\n", " ").replace("http://127.0.0.1:5001", server)
    command = command.replace("demo/data/videos/letter-A_000.mp4", str(video))
    assert str(video) in command and server in command, command
    out = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60, check=True)
    (row,) = json.loads(out.stdout)["predictions"]
    assert row["id"] == "video-0" and row["label"] in TorchClassifier(trained_student.checkpoint).class_names
    assert len(row["labels"]) == 4 and row["error"] is None
