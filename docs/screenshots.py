"""Regenerate the screenshots of docs/pipeline.md from an MLflow tracking database.

    python docs/screenshots.py --db mlflow.db --out docs/img
    python docs/screenshots.py --demo-runs --out docs/img     # no database: runs logged by demo_runs.py

writes, for the newest ``reskd/full`` pipeline run that trained models, ``mlflow-runs.png`` (the
experiment's runs table in the UI's *Model training* view: its teacher and student runs with their
resolution, KD method, test top-1, GFLOPs per video, videos/s and best epoch, grouped by resolution),
``mlflow_compare.png`` (the MLflow UI comparing those runs: a parallel-coordinates plot of role, KD
method, resolution, GFLOPs and test top-1, then the params and metrics that differ between the runs) and
``accuracy_vs_gflops.png`` (a copy of that pipeline run's plot artifact). With ``--demo-runs`` it starts
the server on an empty database, logs one demo-shaped pipeline run into it through reskd's tracking code
(``docs/demo_runs.py``: the README's demo numbers) and takes only ``mlflow-runs.png``.

It copies the database to a temporary folder (the original is never opened for writing), starts
``mlflow server`` on a free port of 127.0.0.1 against the copy, finds the runs through the REST API,
drives a headless Chromium with Playwright, and stops the server.

Needs, besides the project's venv: ``pip install playwright`` (not a project dependency; never run
``playwright install``: the browser is Debian's ``apt-get install chromium``, at /usr/bin/chromium).
The artifacts must still be where the runs recorded them (the runs' absolute ``artifact_uri``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
WIDTH = 1400
PLOT = "accuracy_vs_gflops.png"
# the compare page's parallel-coordinates axes (resolution_px: the resolution the model was evaluated at)
PLOT_PARAMS = ("reskd.role", "kd.method")
PLOT_METRICS = ("resolution_px", "gflops_per_video", "test_top1")
RUNS_SHOT = "mlflow-runs.png"
# the runs table's columns: tags first (resolution, KD), then the metrics, as they come out of the picker
TABLE_TAGS = ("reskd.resolution", "reskd.kd")
TABLE_METRICS = ("test_top1", "gflops_per_video", "videos_per_s", "best_epoch")
HIDDEN = ("Dataset", "Source", "Models")  # default attribute columns that say nothing here
GROUP_BY = "reskd.resolution"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def api(base: str, endpoint: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """One MLflow REST call: GET with ``body`` as the query when ``endpoint`` is a get, else POST JSON."""
    url = f"{base}/api/2.0/mlflow/{endpoint}"
    if endpoint.endswith(("get", "get-by-name")):
        req = urllib.request.Request(f"{url}?{urllib.parse.urlencode(body or {})}")
    else:
        req = urllib.request.Request(
            url, json.dumps(body or {}).encode(), {"Content-Type": "application/json"}, method="POST"
        )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def copy_db(src: Path, dst: Path) -> None:
    """A consistent copy of the SQLite database (the backup API: also what is still in a WAL file)."""
    source = sqlite3.connect(f"file:{src.resolve()}?mode=ro", uri=True)
    target = sqlite3.connect(dst)
    try:
        source.backup(target)
    finally:
        target.close()
        source.close()


def start_server(db: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    """``mlflow server`` on 127.0.0.1:``port`` over the SQLite file ``db``, once it answers /health."""
    mlflow = Path(sys.executable).with_name("mlflow")
    cmd = [
        str(mlflow) if mlflow.exists() else "mlflow",
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--backend-store-uri",
        f"sqlite:///{db}",
        "--default-artifact-root",
        str(db.parent / "mlruns"),
        "--workers",
        "1",
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
                if resp.status == 200:
                    return proc
        except OSError:
            pass
        time.sleep(1)
    stop_server(proc)
    raise TimeoutError(f"mlflow server did not answer on port {port}; see {log}")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's process group (its uvicorn and job-runner children), SIGKILL after 20 s."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def tags_of(run: dict[str, Any]) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run["data"].get("tags", [])}


def search(base: str, experiment_id: str, filter_string: str, **extra: Any) -> list[dict[str, Any]]:
    body = {"experiment_ids": [experiment_id], "filter": filter_string, "max_results": 200, **extra}
    return api(base, "runs/search", body).get("runs", [])


def pipeline_runs(base: str, experiment: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The newest finished pipeline (parent) run of ``experiment`` that trained models, and its teacher and
    student runs (a fully cached rerun has no child runs of its own: it is skipped)."""
    exp = api(base, "experiments/get-by-name", {"experiment_name": experiment})["experiment"]
    exp_id = exp["experiment_id"]
    parents = search(
        base,
        exp_id,
        "tags.`reskd.kind` = 'pipeline' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
    )

    def order(run: dict[str, Any]) -> tuple[bool, int, str]:
        t = tags_of(run)
        return (t.get("reskd.stage") != "teacher", -int(t.get("reskd.resolution", 0)), t.get("reskd.kd", ""))

    for parent in parents:
        children = search(base, exp_id, f"tags.`mlflow.parentRunId` = '{parent['info']['run_id']}'")
        models = [r for r in children if tags_of(r).get("reskd.stage") in ("teacher", "student")]
        if models:
            return parent, sorted(models, key=order)
    raise SystemExit(f"no finished pipeline run with teacher/student runs in experiment {experiment!r}")


def copy_plot(parent: dict[str, Any], out: Path) -> Path:
    """The parent run's accuracy-vs-GFLOPs plot, copied from its (local) artifact location."""
    uri = parent["info"]["artifact_uri"]
    root = Path(urllib.parse.urlparse(uri).path if uri.startswith("file:") else uri)
    src = root / PLOT
    if not src.exists():
        raise SystemExit(f"{src} is missing: the run's artifacts must be on this machine")
    dst = out / PLOT
    shutil.copyfile(src, dst)
    return dst


def screenshot_compare(base: str, experiment_id: str, runs: list[dict[str, Any]], dst: Path) -> Path:
    """The MLflow compare page of ``runs``: the parallel-coordinates plot (role, KD method, resolution,
    GFLOPs, top-1), then the run details and the params and metrics that differ between the runs."""
    from playwright.sync_api import sync_playwright

    ids = json.dumps([r["info"]["run_id"] for r in runs], separators=(",", ":"))
    url = f"{base}/#/compare-runs?runs={ids}&experiments={json.dumps([experiment_id])}"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            # tall enough that nothing scrolls: the page is cut below the metrics afterwards
            page = browser.new_page(viewport={"width": WIDTH, "height": 3000})
            page.goto(url, wait_until="load")  # the UI keeps polling: "networkidle" never comes
            page.get_by_role("tab", name="Parallel Coordinates Plot").wait_for(timeout=60_000)
            page.get_by_role("button", name="Toggle sidebar").click()
            close = page.locator('[data-component-id="mlflow.assistant.chat_panel.close"]')
            if close.count():
                close.first.click()
            page.get_by_test_id("clear-button").click()
            pickers = page.get_by_role("tabpanel").locator(".du-bois-light-select-selector")
            for picker, names in zip(pickers.all(), (PLOT_PARAMS, PLOT_METRICS), strict=True):
                for name in names:
                    picker.click()
                    page.keyboard.type(name)
                    page.locator(f'.du-bois-light-select-item-option[title="{name}"]').click()
                page.keyboard.press("Escape")
                chosen = picker.locator(".du-bois-light-select-selection-item").all_inner_texts()
                if [c.strip() for c in chosen] != list(names):
                    raise RuntimeError(f"plot axes {chosen}, wanted {list(names)}")
            for section in ("Parameters", "Metrics"):
                page.get_by_role("switch", name=f"{section} - Show diff only").click()
            page.wait_for_timeout(2000)  # plotly redraws
            metrics = page.locator(".du-bois-light-collapse-item").filter(
                has=page.get_by_role("switch", name="Metrics - Show diff only")
            )
            box = metrics.bounding_box()
            if box is None:
                raise RuntimeError("the compare page has no Metrics section")
            page.screenshot(
                path=str(dst), clip={"x": 0, "y": 0, "width": WIDTH, "height": box["y"] + box["height"]}
            )
        finally:
            browser.close()
    return dst


def screenshot_runs(base: str, experiment_id: str, parent_id: str, dst: Path) -> Path:
    """The experiment's runs table (the UI's *Model training* view) showing the teacher and student runs
    of pipeline run ``parent_id``: resolution and KD (tags), test top-1, GFLOPs per video, videos/s and
    the chosen epoch, grouped by resolution."""
    from playwright.sync_api import sync_playwright

    query = urllib.parse.urlencode(
        {"workflowType": "machine_learning", "searchFilter": f"tags.mlflow.parentRunId = '{parent_id}'"}
    )
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = browser.new_page(viewport={"width": WIDTH, "height": 900})
            page.goto(f"{base}/#/experiments/{experiment_id}/runs?{query}", wait_until="load")
            page.get_by_text("pipeline", exact=False).first.wait_for(timeout=60_000)
            close = page.locator('[data-component-id="mlflow.assistant.chat_panel.close"]')
            if close.count():
                close.first.click()
            page.get_by_role("button", name="Columns").click()
            search = page.get_by_placeholder("Search columns")
            for name, on in [(n, False) for n in HIDDEN] + [(n, True) for n in TABLE_TAGS + TABLE_METRICS]:
                search.fill(name)  # the picker lists only the matches, the match in bold
                node = page.locator(".du-bois-light-tree-treenode").filter(
                    has_text=re.compile(f"^{re.escape(name)}$")
                )
                node.first.wait_for(timeout=10_000)
                checked = "treenode-checkbox-checked" in (node.first.get_attribute("class") or "")
                if checked != on:
                    node.first.locator(".du-bois-light-tree-checkbox").click()
            search.fill("")
            page.keyboard.press("Escape")
            page.get_by_role("button", name="Group by").click()
            page.get_by_role("menuitemcheckbox", name=GROUP_BY).click()
            page.keyboard.press("Escape")
            page.wait_for_timeout(2000)
            last = page.get_by_text("Additional runs").bounding_box()  # the parent run, below the groups
            height = last["y"] + last["height"] + 24 if last else 900
            page.screenshot(path=str(dst), clip={"x": 0, "y": 0, "width": WIDTH, "height": height})
        finally:
            browser.close()
    return dst


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--db", type=Path, default=Path("mlflow.db"), help="MLflow SQLite database")
    ap.add_argument("--out", type=Path, default=Path("docs/img"), help="folder for the PNGs")
    ap.add_argument("--experiment", default="reskd")
    ap.add_argument(
        "--demo-runs",
        action="store_true",
        help=f"no database: log demo-shaped runs (docs/demo_runs.py) and take only {RUNS_SHOT}",
    )
    args = ap.parse_args(argv)
    if not args.demo_runs and not args.db.is_file():
        raise SystemExit(f"{args.db} is not a file")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="reskd-shots-") as tmp:
        db = Path(tmp) / "mlflow.db"
        if not args.demo_runs:
            copy_db(args.db, db)
        port = free_port()
        proc = start_server(db, port, Path(tmp) / "server.log")
        try:
            base = f"http://127.0.0.1:{port}"
            if args.demo_runs:
                from demo_runs import log_demo_runs  # beside this script

                log_demo_runs(base, args.experiment)
            parent, runs = pipeline_runs(base, args.experiment)
            exp_id, parent_id = parent["info"]["experiment_id"], parent["info"]["run_id"]
            print(f"pipeline run {parent_id}: {len(runs)} teacher/student runs")
            print(screenshot_runs(base, exp_id, parent_id, args.out / RUNS_SHOT))
            if not args.demo_runs:
                print(copy_plot(parent, args.out))
                print(screenshot_compare(base, exp_id, runs, args.out / "mlflow_compare.png"))
        finally:
            stop_server(proc)


if __name__ == "__main__":
    main()
