"""Two versions of one user dataset, end to end on a real Prefect server (``reskd serve``, the landing
watcher, the arrival trigger) and a real MLflow server: each ``dataset.yaml`` names a recipe beside it
(not the demo's), the second version is compared with the first's champion on the first's pinned test split
in its own run, and, trained with a learning rate too small to learn, it keeps the champion. Then the
scheduled-retraining deployment starts a run on the latest registered version, with its recipe."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from tests.flows.helpers import (
    PrefectServer,
    Served,
    alias_version,
    model_versions,
    pipeline_runs,
    serving,
    wait_for,
)

pytestmark = pytest.mark.slow

MODEL = "reskd-colours"
COLOURS = [(220, 40, 40), (40, 200, 60), (50, 70, 230), (230, 210, 40)]
RECIPE = """\
name: colours_tiny
extract: {format: mmaction, annotations: annotations.txt, video_root: videos, labels_file: classes.txt,
          val_fraction: 0.25, test_fraction: 0.25, short_side: 64, workers: 1}
data: {num_segments: 2, batch_size: 8, loader_workers: 0, flip: false}
teacher: {name: tsn_tiny, resolution: 64, dropout: 0.0}
student: {name: tsn_tiny, resolution: 32, dropout: 0.0}
kd: {method: pixel_mse, weight: 1.0}
optim: {name: adamw, lr: 0.01, lr_batch: 8}
schedule: {teacher_epochs: 1, student_epochs: 4, warmup_epochs: 0}
resources: {workers: 1, cpus_per_worker: 1, amp: false, channels_last: false}
pipeline: {resolutions: [32], kd_methods: [pixel_mse], baseline: false}
"""


def land_colours(folder: Path, seed: int, dataset_yaml: str, per_class: int = 8) -> Path:
    """A dataset whose class is the colour of its frames (learnable in a few steps): mp4 videos,
    annotations, class names, the recipe beside ``dataset.yaml``, then the ``_READY`` marker."""
    from reskd_core.data.demo import write_mp4

    rng = np.random.default_rng(seed)
    (folder / "videos").mkdir(parents=True)
    lines = []
    for label, colour in enumerate(COLOURS):
        for j in range(per_class):
            frames = np.clip(
                np.array(colour) * rng.uniform(0.7, 1.1) + rng.normal(0, 12, (4, 64, 64, 3)), 0, 255
            ).astype(np.uint8)
            name = f"s{seed}_c{label}_{j}.mp4"
            write_mp4(folder / "videos" / name, frames)
            lines.append(f"{name} {label}")
    (folder / "annotations.txt").write_text("\n".join(lines) + "\n")
    (folder / "classes.txt").write_text("\n".join(f"colour-{i}" for i in range(len(COLOURS))) + "\n")
    (folder / "recipe.yaml").write_text(RECIPE)
    (folder / "dataset.yaml").write_text(dataset_yaml)
    (folder / "_READY").write_text("")
    return folder


@pytest.fixture(scope="module")
def served(prefect_server: PrefectServer, mlflow_server, tmp_path_factory) -> Served:
    """``reskd serve`` tracking to the MLflow server (as a deployed service is configured)."""
    with serving(prefect_server, tmp_path_factory.mktemp("versions"), MLFLOW_TRACKING_URI=mlflow_server) as s:
        yield s


def scan_and_finish(server: PrefectServer, served: Served, before: int) -> dict:
    """Run the landing watcher, wait for the one ``reskd/full`` run it triggers to finish; returns it."""
    done = server.cli(
        "deployment", "run", "reskd-landing/watch", "--watch", "--watch-timeout", "300", timeout=360
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return finish_new_run(server, served, before)


def finish_new_run(server: PrefectServer, served: Served, before: int) -> dict:
    """Wait for the one ``reskd/full`` run after the first ``before`` to finish; returns it."""

    def finished():
        runs = server.flow_runs(served.full_id)
        if len(runs) <= before:
            return None
        assert len(runs) == before + 1, [r["parameters"] for r in runs]
        newest = max(runs, key=lambda r: r["created"])
        return newest if newest["state"]["type"] in {"COMPLETED", "FAILED", "CRASHED"} else None

    run = wait_for("the triggered reskd/full run", finished, timeout=900, every=3)
    assert run["state"]["type"] == "COMPLETED", (
        run["state"],
        (served.root / "serve.log").read_text()[-3000:],
    )
    return run


def parent_of(client: MlflowClient, run: dict):
    [parent] = [p for p in pipeline_runs(client) if p.data.tags["prefect.flow_run_id"] == run["id"]]
    return parent


@pytest.fixture(scope="module")
def first(prefect_server, served, mlflow_server) -> dict:
    land_colours(served.landing / "colours" / "v1", 1, "recipe: recipe.yaml\n")
    return scan_and_finish(prefect_server, served, 0)


@pytest.fixture(scope="module")
def second(first, prefect_server, served) -> dict:
    """Version 2 (other videos) trained with lr 1e-7: it cannot learn. A broken version 3 lands beside it."""
    land_colours(served.landing / "colours" / "v2", 2, "recipe: recipe.yaml\noverrides: {optim.lr: 1.0e-7}\n")
    land_colours(served.landing / "colours" / "v3", 3, "recipe: recipe.yaml\noverrides: {optim.lr: -1}\n")
    return scan_and_finish(prefect_server, served, 1)


def test_first_version_trains_with_its_recipe_and_pins_its_test_split(first, served, mlflow_server):
    assert first["parameters"]["dataset_name"] == "colours" and first["parameters"]["dataset_version"] == "v1"
    client = MlflowClient(mlflow_server)
    parent = parent_of(client, first)
    params = parent.data.params
    assert params["name"] == "colours_tiny" and params["pipeline.resolutions"] == "[32]"  # not demo_cpu
    assert params["pipeline.dataset"] == "colours" and params["pipeline.dataset_version"] == "v1"
    assert params["optim.lr"] == "0.01"
    assert parent.data.tags["reskd.promotion"] == "promoted"  # no champion yet
    [v1] = model_versions(client, MODEL)
    assert alias_version(client, MODEL, "champion") == "1"
    tags = client.get_registered_model(MODEL).tags
    assert tags["reskd.test_split"] == "test" and "v1" in tags["reskd.test_shards"]
    assert tags["reskd.latest_version"] == "v1" and tags["reskd.latest_uri"] == str(
        served.landing / "colours" / "v1"
    )
    assert v1.tags["reskd.test_set"] == f"{tags['reskd.test_shards']}#test"


def test_worse_second_version_is_compared_on_the_pinned_split_and_keeps_the_champion(
    second, first, prefect_server, served, mlflow_server
):
    client = MlflowClient(mlflow_server)
    pinned = client.get_registered_model(MODEL).tags["reskd.test_shards"]
    parent = parent_of(client, second)
    assert (
        parent.data.params["pipeline.dataset_version"] == "v2" and parent.data.params["optim.lr"] == "1e-07"
    )
    assert parent.data.tags["reskd.promotion_test_set"] == f"{pinned}#test"  # the first version's, not v2's
    m = parent.data.metrics
    assert m["promotion_challenger_accuracy"] < m["promotion_champion_accuracy"], m
    assert {"promotion_challenger_gflops", "promotion_champion_gflops"} <= set(m)
    files = {f.path for f in client.list_artifacts(parent.info.run_id)}
    assert {"promotion.md", "promotion.json"} <= files
    assert parent.data.tags["reskd.promotion"] == "kept"
    assert alias_version(client, MODEL, "champion") == "1"
    assert alias_version(client, MODEL, "challenger") == "2"
    assert model_versions(client, MODEL)[1].tags["reskd.test_set"] == f"{pinned}#test"
    assert client.get_registered_model(MODEL).tags["reskd.latest_version"] == "v2"

    # the Prefect artifact of the same verdict: champion vs challenger, accuracy and GFLOPs
    query = {"artifacts": {"key": {"any_": ["reskd-promotion-colours"]}}, "sort": "CREATED_DESC", "limit": 1}
    [artifact] = prefect_server.api("artifacts/filter", query)
    assert "champion kept" in artifact["data"] and "GFLOPs" in artifact["data"] and pinned in artifact["data"]

    # the broken v3 started nothing and is not marked seen
    assert len(prefect_server.flow_runs(served.full_id)) == 2
    ledger = (served.landing / ".reskd" / "seen.json").read_text()
    assert "colours/v2" in ledger and "colours/v3" not in ledger


def test_scheduled_retraining_targets_the_registered_datasets(second, prefect_server, served, mlflow_server):
    retrain = prefect_server.deployment("reskd-retrain/registered")
    [schedule] = retrain["schedules"]
    assert schedule["active"] is False  # inactive until resumed (docs/pipeline.md)
    done = prefect_server.cli(
        "deployment", "run", "reskd-retrain/registered", "--watch", "--watch-timeout", "300", timeout=360
    )
    assert done.returncode == 0, done.stdout + done.stderr
    run = finish_new_run(prefect_server, served, 2)
    assert run["parameters"]["dataset_uri"] == str(served.landing / "colours" / "v2")
    assert run["parameters"]["dataset_name"] == "colours" and run["parameters"]["dataset_version"] == "v2"
    parent = parent_of(MlflowClient(mlflow_server), run)
    assert parent.data.params["name"] == "colours_tiny"  # the dataset's own recipe, not the demo's
    assert parent.data.params["optim.lr"] == "1e-07"
