"""The study's results page (docs/results.md) written from its MLflow runs (the ``study-page`` Prefect
task), and what the page says about the run: the machine and the code version."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows import datasets
from flows.full import slug
from flows.study_records import log_study_record, read_records
from flows.tracking import client_for
from reskd_core.config import Config
from reskd_core.study.arms import Arm
from reskd_core.study.plan import study_plan
from reskd_core.study.stats import accuracy_metric

REPO_ROOT = Path(__file__).resolve().parents[1]
THROUGHPUT_JSON = REPO_ROOT / "benchmarks" / "results" / "throughput_cpu.json"
GPU_JSON = REPO_ROOT / "benchmarks" / "results" / "gpu.json"


def machine_description(threads: int) -> str:
    """CPU, cores, GPU and torch of this machine, for the page's header."""
    import torch

    from reskd_core.throughput import cpu_name

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu_name()}, {os.cpu_count()} cores, {gpu}; torch {torch.__version__} with {threads} threads"


def git_commit() -> str:
    """The checkout's short commit hash ('' outside a git checkout)."""
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def provenance(cfg: Config) -> list[str]:
    """Code version of the run: commit, files changed against it, the demo generator's digest."""
    out = []
    try:
        commit = git_commit()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "reskd_core", "flows", "configs"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.split("\n")
        changed = sorted(line[3:] for line in dirty if line.strip())
        if commit:
            out.append(
                f"git commit `{commit}`"
                + (f" plus uncommitted changes to {len(changed)} file(s)" if changed else "")
                + ";"
            )
    except (OSError, subprocess.SubprocessError):
        pass
    out.append(f"demo generator + settings digest `{datasets.generator_digest(cfg)}`.")
    return out


def _json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


@task(name="study-page", cache_policy=NO_CACHE)
def render_study(
    cfg: Config,
    parent_run_id: str,
    arms: list[Arm],
    info: dict,
    meta: dict,
    out: str | None,
) -> dict:
    """Read the arm runs back from MLflow, write the page and its plots (``out`` and ``<out stem>/``),
    and log the same files to the parent run."""
    from reskd_core.evaluate import report_split
    from reskd_core.flops import flops_table
    from reskd_core.study.efficiency import EFFICIENCY_MODELS, EFFICIENCY_RESOLUTIONS
    from reskd_core.study.page import PageInfo, render_page
    from reskd_core.study.plots import plot_study

    split = report_split(cfg, info.get("splits", {}))
    records = read_records(cfg.tracking.uri, parent_run_id, accuracy_metric(cfg, split))
    _, comparisons = study_plan(cfg)
    flops = {}
    for label, model, frames in EFFICIENCY_MODELS:
        rows = flops_table(model, frames, list(EFFICIENCY_RESOLUTIONS))
        flops[label] = {r.resolution: r.gflops for r in rows}
    page_path = Path(out).resolve() if out else None
    with tempfile.TemporaryDirectory() as tmp:
        plot_dir = page_path.with_suffix("") if page_path else Path(tmp) / "results"
        plot_dir.mkdir(parents=True, exist_ok=True)
        plots = plot_study(cfg, arms, records, plot_dir, split)
        page = PageInfo(
            plots={name: f"{plot_dir.name}/{p.name}" for name, p in plots.items()},
            dataset=info,
            val_split=cfg.data.val_split,
            report_split=split,
            stride_model=cfg.study.stride_model,
            **meta,
        )
        text = render_page(page, arms, comparisons, records, flops, _json(THROUGHPUT_JSON), _json(GPU_JSON))
        if page_path:
            page_path.parent.mkdir(parents=True, exist_ok=True)
            page_path.write_text(text)
        client = client_for(cfg.tracking.uri)
        client.log_text(parent_run_id, text, "results.md")
        log_study_record(cfg.tracking.uri, parent_run_id, cfg, info, meta)
        for p in plots.values():
            client.log_artifact(parent_run_id, str(p), "results")
    create_markdown_artifact(
        markdown=text, key=f"reskd-study-{slug(cfg.name, 'study')}", description="ResKD study results"
    )
    return {"page": str(page_path) if page_path else None, "records": len(records), "markdown": text}
