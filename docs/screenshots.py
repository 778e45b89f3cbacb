"""Regenerate the screenshots of docs/pipeline.md from an MLflow tracking database.

    python docs/screenshots.py --db mlflow.db --out docs/img

writes ``mlflow_compare.png`` (the MLflow UI comparing the teacher and student runs of the newest
``reskd/full`` pipeline run that trained them: a parallel-coordinates plot of role, KD method,
resolution, GFLOPs and validation top-1, then the params and metrics that differ between the runs) and
``accuracy_vs_gflops.png`` (a copy of that pipeline run's plot artifact).

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
# the compare page's parallel-coordinates axes (eval_resolution: the resolution the model was evaluated at)
PLOT_PARAMS = ("reskd.role", "kd.method")
PLOT_METRICS = ("eval_resolution", "eval_gflops", "test_top1")


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


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--db", type=Path, default=Path("mlflow.db"), help="MLflow SQLite database")
    ap.add_argument("--out", type=Path, default=Path("docs/img"), help="folder for the PNGs")
    ap.add_argument("--experiment", default="reskd")
    args = ap.parse_args(argv)
    if not args.db.is_file():
        raise SystemExit(f"{args.db} is not a file")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="reskd-shots-") as tmp:
        db = Path(tmp) / "mlflow.db"
        copy_db(args.db, db)
        port = free_port()
        proc = start_server(db, port, Path(tmp) / "server.log")
        try:
            base = f"http://127.0.0.1:{port}"
            parent, runs = pipeline_runs(base, args.experiment)
            print(f"pipeline run {parent['info']['run_id']}: {len(runs)} teacher/student runs")
            print(copy_plot(parent, args.out))
            print(
                screenshot_compare(
                    base, parent["info"]["experiment_id"], runs, args.out / "mlflow_compare.png"
                )
            )
        finally:
            stop_server(proc)


if __name__ == "__main__":
    main()
