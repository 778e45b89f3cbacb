"""Retraining on dataset arrival, on a real Prefect server (its event system and automations):
``reskd deploy`` registers ``reskd/full`` with its trigger on a work pool that no worker serves (so the
triggered runs stay Scheduled: their parameters are what is checked), the ``reskd-landing`` flow scans
the landing folder, and each new ready dataset starts exactly one run with ``dataset_uri`` set to it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import Counter

import pytest

from tests.flows.helpers import BIN, PrefectServer, wait_for

pytestmark = pytest.mark.slow

POOL = "reskd-idle"
SCAN = (
    "import json, sys\n"
    "from flows.landing import watch_landing\n"
    "print('ANNOUNCED=' + json.dumps(watch_landing(sys.argv[1])))\n"
)


@pytest.fixture(scope="module")
def deployed(prefect_server: PrefectServer, tmp_path_factory) -> dict:
    """``reskd deploy --pool reskd-idle``; returns the ``reskd/full`` deployment."""
    root = tmp_path_factory.mktemp("deployed")
    made = prefect_server.cli("work-pool", "create", POOL, "--type", "process")
    assert made.returncode == 0, made.stdout + made.stderr
    landing = root / "landing"
    done = subprocess.run(
        [str(BIN / "reskd"), "deploy", "--pool", POOL, "--landing-uri", str(landing)],
        env=prefect_server.env(),
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    full = prefect_server.deployment("reskd/full")
    assert full["work_pool_name"] == POOL
    assert prefect_server.deployment("reskd-landing/watch")["parameters"] == {"landing_uri": str(landing)}
    return full


def scan(server: PrefectServer, landing) -> list[str]:
    """One run of the ``reskd-landing`` flow (a real process, like a worker's flow run)."""
    done = subprocess.run(
        [sys.executable, "-c", SCAN, str(landing)],
        env=server.env(),
        cwd=landing.parent,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    [line] = [ln for ln in done.stdout.splitlines() if ln.startswith("ANNOUNCED=")]
    return json.loads(line.removeprefix("ANNOUNCED="))


def triggered(server: PrefectServer, deployment_id: str) -> Counter:
    """How many runs of ``reskd/full`` there are per ``dataset_uri``."""
    return Counter(r["parameters"].get("dataset_uri") for r in server.flow_runs(deployment_id))


def wait_triggered(server: PrefectServer, deployment_id: str, n: int) -> Counter:
    """The runs per ``dataset_uri`` once there are at least ``n`` (the automation reacts in seconds)."""

    def enough():
        runs = triggered(server, deployment_id)
        return runs if sum(runs.values()) >= n else None

    return wait_for(f"{n} triggered runs of reskd/full", enough, timeout=90, every=1)


def test_dataset_arrival_starts_one_run_per_ready_dataset(prefect_server, deployed, demo_shards, tmp_path):
    from reskd_core.data.demo import make_demo_dataset

    landing = tmp_path / "landing"
    landing.mkdir()
    videos = make_demo_dataset(landing / "clips-2026-01", classes=2, videos_per_class=1, size=32, frames=4)
    (videos / "_READY").write_text("")
    shards = landing / "shards-2026-01"
    shutil.copytree(demo_shards, shards)
    half = make_demo_dataset(landing / "clips-uploading", classes=2, videos_per_class=1, size=32, frames=4)
    version = make_demo_dataset(landing / "named" / "v7", classes=2, videos_per_class=1, size=32, frames=4)
    (version / "_READY").write_text("")
    broken = make_demo_dataset(landing / "broken", classes=2, videos_per_class=1, size=32, frames=4)
    (broken / "dataset.yaml").write_text("recipe: demo_cpu\noverrides: {kd.method: magic}\n")
    (broken / "_READY").write_text("")

    assert scan(prefect_server, landing) == [str(videos), str(version), str(shards)]  # sorted by name
    runs = wait_triggered(prefect_server, deployed["id"], 3)
    assert runs == Counter({str(videos): 1, str(shards): 1, str(version): 1}), runs
    names = {}
    for run in prefect_server.flow_runs(deployed["id"]):
        assert run["state"]["type"] == "SCHEDULED"  # no worker on the pool: nothing executes
        assert run["work_pool_name"] == POOL
        assert run["created_by"]["type"] == "AUTOMATION"
        p = run["parameters"]
        names[p["dataset_uri"]] = (p["dataset_name"], p["dataset_version"])
    assert names == {
        str(videos): ("clips-2026-01", ""),
        str(shards): ("shards-2026-01", ""),
        str(version): ("named", "v7"),
    }

    def announced():  # the server stores events in batches, after its automations have seen them
        events = prefect_server.api(
            "events/filter", {"filter": {"event": {"name": ["reskd.dataset.arrived"]}}, "limit": 50}
        )["events"]
        uris = sorted(e["payload"]["dataset_uri"] for e in events)
        return uris if len(uris) >= 3 else None

    stored = wait_for("the stored events", announced, timeout=60)
    assert stored == sorted([str(shards), str(videos), str(version)])

    def rejected():  # the bad dataset.yaml: no run, its reason in an event
        return prefect_server.api(
            "events/filter", {"filter": {"event": {"name": ["reskd.dataset.rejected"]}}, "limit": 50}
        )["events"]

    [event, *_] = wait_for("the rejection event", rejected, timeout=60)
    assert event["payload"]["dataset_uri"] == str(broken)
    assert (
        f"{broken}/dataset.yaml" in event["payload"]["reason"] and "kd.method" in event["payload"]["reason"]
    )

    # the upload finishes: its marker appears; the next scan announces it and only it
    (half / "_READY").write_text("")
    assert scan(prefect_server, landing) == [str(half)]
    runs = wait_triggered(prefect_server, deployed["id"], 4)
    assert runs == Counter({str(videos): 1, str(shards): 1, str(version): 1, str(half): 1}), runs

    # nothing new: a scan announces nothing, and no run appears
    assert scan(prefect_server, landing) == []
    assert triggered(prefect_server, deployed["id"]) == runs
