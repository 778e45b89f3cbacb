"""``reskd study --quick`` end to end: a real subprocess, a real MLflow server over HTTP, and the page's
numbers checked against the arm runs read back through MLflow's REST API."""

import json
import os
import re
import statistics
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from reskd_core.config import load_config, recipe_path
from reskd_core.study.plan import QUICK_OVERRIDES, study_plan
from reskd_core.study.stats import ACCURACY, accuracy_metric
from tests.fixtures.mlflow import rest

pytestmark = pytest.mark.slow
RESKD = str(Path(sys.executable).parent / "reskd")


def _reskd(env: dict, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([RESKD, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=500)


def _runs(url: str, experiment_id: str, filter_string: str) -> list[dict]:
    body = {"experiment_ids": [experiment_id], "filter": filter_string, "max_results": 1000}
    return rest(url, "runs/search", body=body).get("runs", [])


def _metrics(run: dict) -> dict[str, float]:
    return {m["key"]: m["value"] for m in run["data"].get("metrics", [])}


def _tags(run: dict) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run["data"].get("tags", [])}


def test_quick_study_writes_the_page_from_its_mlflow_runs(tmp_path, mlflow_server, prefect_api):
    page = tmp_path / "docs" / "results.md"
    api, prefect_env = prefect_api
    env = {
        **os.environ,
        **prefect_env,  # the flow run is recorded on a real Prefect server
        "MLFLOW_TRACKING_URI": mlflow_server,
        "RESKD_STORAGE_ROOT": str(tmp_path / "runs"),
    }
    done = _reskd(env, tmp_path, "study", "--quick", "--out", str(page))
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    text = page.read_text()
    pngs = sorted(p.name for p in (tmp_path / "docs" / "results").glob("*.png"))
    assert pngs == ["accuracy_vs_gflops.png", "accuracy_vs_resolution.png"]
    assert "(results/accuracy_vs_resolution.png)" in text
    assert (tmp_path / "demo" / "study-quick" / "data" / "annotations.txt").exists()

    parent_id = re.search(r"parent run `([0-9a-f]{32})`", text).group(1)
    parent = rest(mlflow_server, "runs/get", params={"run_id": parent_id})["run"]
    assert parent["info"]["status"] == "FINISHED"
    flow_run_id = {t["key"]: t["value"] for t in parent["data"]["tags"]}["prefect.flow_run_id"]
    with urllib.request.urlopen(f"{api}/flow_runs/{flow_run_id}", timeout=30) as r:
        flow_run = json.loads(r.read())
    assert flow_run["state"]["type"] == "COMPLETED"
    exp = parent["info"]["experiment_id"]
    children = _runs(mlflow_server, exp, f"tags.mlflow.parentRunId = '{parent_id}'")
    arms_runs = [r for r in children if _tags(r).get("reskd.kind") == "study-arm"]
    assert any(_tags(r).get("reskd.stage") == "extract" for r in children)

    cfg = load_config(recipe_path("study_cpu"), QUICK_OVERRIDES)
    arms, comparisons = study_plan(cfg)
    assert len(arms_runs) == len(arms) * cfg.study.seeds
    assert {r["info"]["status"] for r in arms_runs} == {"FINISHED"}
    acc: dict[str, list[float]] = {}
    for run in arms_runs:
        metrics, tags = _metrics(run), _tags(run)
        logged = {
            "gflops_per_video",
            "feature_h",
            "val_top1",
            "train_loss",
            "train_kd_share",
            "best_val_top1",
            "best_epoch",
        }
        assert logged <= set(metrics)
        if cfg.extract.test_fraction > 0:  # the epoch chosen on val, reported on test
            assert tags["reskd.report_split"] == "test" and ACCURACY in metrics and metrics["test_n"] > 0
        else:  # no test split: the best val score is what the tables report
            assert tags["reskd.report_split"] == "val" and ACCURACY not in metrics
        params = {p["key"]: p["value"] for p in run["data"]["params"]}
        assert params["seed"] == tags["reskd.seed"] and params["study.arm.model"] in {a.model for a in arms}
        acc.setdefault(tags["reskd.study.arm"], []).append(
            metrics[accuracy_metric(cfg, tags["reskd.report_split"])]
        )
    # per-epoch history of one run: one epoch in quick mode
    hist = rest(
        mlflow_server,
        "metrics/get-history",
        params={"run_id": arms_runs[0]["info"]["run_id"], "metric_key": "val_top1"},
    )
    assert [m["step"] for m in hist["metrics"]] == [1]

    # every table row shows mean ± std of exactly the MLflow values of its arm
    lines = text.splitlines()
    checked = 0
    for comp in comparisons:
        start = lines.index(f"## {comp.title}")
        table = [line for line in lines[start:] if line.startswith("| ")][1 : 1 + len(comp.rows)]
        for row, line in zip(comp.rows, table, strict=True):
            vals = acc[row.arm]
            expected = f"{statistics.fmean(vals):.1f} ± {statistics.stdev(vals):.1f}"
            assert line.startswith(f"| {row.label} |") and f"| {expected} | {len(vals)} |" in line, (
                row,
                line,
            )
            checked += 1
    assert checked >= len(arms)

    # the same page and plots are logged to the parent run
    listed = rest(mlflow_server, "artifacts/list", params={"run_id": parent_id})
    assert {"results.md", "results"} <= {f["path"] for f in listed.get("files", [])}
    from mlflow.tracking import MlflowClient

    logged = MlflowClient(mlflow_server).download_artifacts(parent_id, "results.md", str(tmp_path / "dl"))
    assert Path(logged).read_text() == text

    # the page is written again from the same runs, without training, and says so
    again = tmp_path / "again.md"
    done = _reskd(env, tmp_path, "study", "--render", parent_id, "--out", str(again))
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    rerendered = again.read_text()
    assert f"re-rendered from these runs by `reskd study --render {parent_id}`" in rerendered
    assert (
        rerendered.split("## Findings")[1].split("Provenance:")[0]
        == text.split("## Findings")[1].split("Provenance:")[0]
    )
    assert len(_runs(mlflow_server, exp, f"tags.mlflow.parentRunId = '{parent_id}'")) == len(children)
    bad = _reskd(env, tmp_path, "study", "--render", "0" * 32, "--out", str(tmp_path / "x.md"))
    assert bad.returncode == 2 and "0" * 32 in bad.stdout + bad.stderr
