"""The ``reskd/study`` flow: the paper's comparisons on one dataset, 3 seeds each, as MLflow child runs
of one parent run, then the results page (docs/results.md) rendered from those runs.

The flow is named ``reskd`` like ``reskd/full``: the two are deployments ``full`` and ``study`` of one
flow name. Arms are tiny and many (about 20 per seed), so each is trained in this process by
:func:`reskd_core.train.fit` inside a Prefect task (a Ray Train job costs 15-20 s of start-up per job).
What can be shared is: one demo dataset and one extraction, the loaded batches of a seed (replayed to
every arm of it, see :class:`reskd_core.study.EpochBatches`), the val and test batches, and each teacher,
trained once per seed and copied fresh into every arm that distils from it.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import subprocess
import tempfile
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import deployment, flow_run

from flows import datasets
from flows.full import extracted, resolve_config, slug
from flows.pipeline_tracking import start_parent_run
from flows.tracking import client_for, log_params
from reskd_core.config import Config, flatten
from reskd_core.study import (
    ACCURACY,
    QUICK_OVERRIDES,
    Arm,
    ArmShape,
    EpochBatches,
    Record,
    accuracy_metric,
    arm_config,
    build_arm_model,
    check_arms,
    loader_batches,
    study_plan,
)

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
THROUGHPUT_JSON = REPO_ROOT / "benchmarks" / "results" / "throughput_cpu.json"
GPU_JSON = REPO_ROOT / "benchmarks" / "results" / "gpu.json"
ARM_KIND = "study-arm"
STUDY_RECORD = "study.json"  # parent-run artifact: config, dataset info and page metadata


# ---------------------------------------------------------------- data


@task(name="study-data", cache_policy=NO_CACHE)
def study_data(cfg: Config) -> str:
    """The study's demo dataset in ``demo.root``, (re)generated unless the current generator made it."""
    return datasets.ensure_demo_dataset(cfg)


# ---------------------------------------------------------------- MLflow


def read_records(tracking_uri: str, parent_run_id: str, metric: str = ACCURACY) -> list[Record]:
    """Every finished arm run of the study, as the page's tables use them (accuracy: ``metric``)."""
    client = client_for(tracking_uri)
    parent = client.get_run(parent_run_id)
    runs = client.search_runs(
        [parent.info.experiment_id],
        filter_string=(
            f"tags.mlflow.parentRunId = '{parent_run_id}' and tags.`reskd.kind` = '{ARM_KIND}' "
            "and attributes.status = 'FINISHED'"
        ),
        max_results=5000,
    )
    return [
        Record(
            arm=r.data.tags["reskd.study.arm"],
            seed=int(r.data.tags["reskd.seed"]),
            accuracy=float(r.data.metrics[metric]),
            metrics=dict(r.data.metrics),
            params={k: v for k, v in r.data.params.items() if k.startswith("study.arm")},
        )
        for r in runs
        if metric in r.data.metrics
    ]


# ---------------------------------------------------------------- one arm


@task(name="study-arm", task_run_name="{arm.key} seed {seed}", cache_policy=NO_CACHE)
def train_arm(
    cfg: Config,
    arm: Arm,
    seed: int,
    shape: ArmShape,
    train_batches: EpochBatches,
    val_batches: list[dict],
    test_batches: list[dict] | None,
    split: str,
    teacher: Arm | None,
    teacher_state: dict | None,
    parent_run_id: str,
    load_resolution: int,
) -> dict:
    """Train one arm at one seed as an MLflow child run; returns its reported accuracy (and weights, for
    a teacher). The epoch is chosen on ``val_batches``; that epoch's model is evaluated on
    ``test_batches`` (split ``split``; None: the shards have no test split, and the best validation
    score is reported). The run is closed FAILED with the reason when training fails."""
    import torch

    from flows.tracking import REPORT_SPLIT_TAG, log_metrics
    from reskd_core.evaluate import evaluate_model, report_prefix, scalar_metrics
    from reskd_core.losses import kd_weight
    from reskd_core.train import fit, use_amp

    logger = _logger()
    acfg = arm_config(cfg, arm, seed, teacher)
    spec = acfg.teacher if arm.role == "teacher" else acfg.student
    frames, num_classes = cfg.data.num_segments, int(cfg.num_classes)
    client = client_for(cfg.tracking.uri)
    run = client.create_run(
        client.get_run(parent_run_id).info.experiment_id,
        run_name=f"{arm.key} seed {seed}",
        tags={
            "mlflow.parentRunId": parent_run_id,
            "reskd.kind": ARM_KIND,
            "reskd.study.arm": arm.key,
            "reskd.seed": str(seed),
            "reskd.role": arm.role,
            "reskd.study.teacher": arm.teacher or "",
            REPORT_SPLIT_TAG: split,
        },
    )
    run_id = run.info.run_id
    metric = accuracy_metric(cfg, split)
    try:
        arm_params = {f"study.arm.{k}": v for k, v in asdict(arm).items()}
        if arm.role == "student":  # kd.weight is null for the method's default: the lambda in use
            arm_params["kd.weight_effective"] = kd_weight(acfg.kd.method, acfg.kd.weight)
        log_params(client, run_id, {**flatten(acfg), **arm_params, "study.load_resolution": load_resolution})
        device = torch.device("cuda" if cfg.resources.use_gpu and torch.cuda.is_available() else "cpu")
        model = build_arm_model(spec, num_classes, frames, seed).to(device)
        teacher_net = None
        if teacher is not None:
            teacher_net = build_arm_model(acfg.teacher, num_classes, frames)
            teacher_net.load_state_dict(teacher_state)  # a fresh copy: BN in train mode updates its stats
            teacher_net.to(device)
        best: dict = {"score": -math.inf, "state": None}

        def on_epoch_end(epoch: int, metrics: dict[str, float], _dir: str | None) -> None:
            log_metrics(cfg.tracking.uri, run_id, metrics, epoch)
            # the same rule as fit's best epoch: the first of the highest val scores (-1: not evaluated)
            if metrics["val_score"] >= 0 and metrics["val_score"] > best["score"]:
                best.update(score=metrics["val_score"], state=copy.deepcopy(model.state_dict()))

        start = time.perf_counter()
        result = fit(
            acfg,
            arm.role,
            model,
            train_batches,
            val_batches,
            num_classes=num_classes,
            device=device,
            teacher=teacher_net,
            on_epoch_end=on_epoch_end,
        )
        seconds = time.perf_counter() - start
        model.load_state_dict(best["state"])  # the reported model (and a teacher's distilled one)
        final = {
            "final_val_top1": result.last_metrics["val_top1"],
            "best_val_top1": result.best_score,
            "best_epoch": result.best_epoch,
            "gflops": shape.gflops,
            "params_m": shape.params_m,
            "feature_h": shape.feature_hw[0],
            "feature_w": shape.feature_hw[1],
            "epochs": result.epochs_done,
            "train_seconds": seconds,
        }
        if test_batches is not None:
            tested = evaluate_model(
                model,
                test_batches,
                device=device,
                resolution=spec.resolution,
                multi_label=cfg.data.multi_label,
                amp=use_amp(cfg.resources, device),
                input_mode=spec.input,
            )
            final.update(scalar_metrics(tested, report_prefix(cfg, split)))
        log_metrics(cfg.tracking.uri, run_id, final, result.epochs_done)
        client.set_terminated(run_id, "FINISHED")
    except Exception as e:
        client.set_tag(run_id, "reskd.error", f"{type(e).__name__}: {e}"[:5000])
        client.set_terminated(run_id, "FAILED")
        raise
    logger.info(
        "%s seed %d: %s top-1 %.1f (epoch %s of %d) in %.0f s",
        arm.key,
        seed,
        split,
        final[metric],
        result.best_epoch,
        result.epochs_done,
        seconds,
    )
    out = {"run_id": run_id, "accuracy": final[metric], "seconds": seconds}
    if arm.role == "teacher":  # students distil from the teacher's reported (best-val) weights
        out["state"] = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return out


# ---------------------------------------------------------------- the page


def machine_description(threads: int) -> str:
    import torch

    from reskd_core.throughput import cpu_name

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu_name()}, {os.cpu_count()} cores, {gpu}; torch {torch.__version__} with {threads} threads"


def provenance(cfg: Config) -> list[str]:
    """Code version of the run: commit, files changed against it, the demo generator's digest."""
    out = []
    try:
        commit = _commit()
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
    from reskd_core.study_plots import plot_study
    from reskd_core.study_report import (
        EFFICIENCY_MODELS,
        EFFICIENCY_RESOLUTIONS,
        PageInfo,
        render_page,
    )

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
            **meta,
        )
        text = render_page(page, arms, comparisons, records, flops, _json(THROUGHPUT_JSON), _json(GPU_JSON))
        if page_path:
            page_path.parent.mkdir(parents=True, exist_ok=True)
            page_path.write_text(text)
        client = client_for(cfg.tracking.uri)
        client.log_text(parent_run_id, text, "results.md")
        # what a later `reskd study --render RUN_ID` needs to write the page again from the same runs
        record = {"config": cfg.model_dump(mode="json"), "info": info, "meta": meta}
        client.log_text(parent_run_id, json.dumps(record, indent=1, default=str), STUDY_RECORD)
        for p in plots.values():
            client.log_artifact(parent_run_id, str(p), "results")
    create_markdown_artifact(
        markdown=text, key=f"reskd-study-{slug(cfg.name, 'study')}", description="ResKD study results"
    )
    return {"page": str(page_path) if page_path else None, "records": len(records), "markdown": text}


# ---------------------------------------------------------------- the flow


@flow(name="reskd")
def study(
    config: Config | None = None,
    recipe: str = "study_cpu",
    overrides: list[str] | None = None,
    quick: bool = False,
    out: str | None = None,
    tracking_uri: str | None = None,
    command: str | None = None,
) -> dict:
    """Run the ablation study and render its results page.

    Args:
        config: the whole configuration; None takes ``recipe`` plus ``overrides``.
        recipe: a recipe name under configs/ or a YAML path (default: ``study_cpu``).
        overrides: ``key.path=value`` settings applied on top (after the quick ones).
        quick: the smoke run of the test suite (a tiny dataset, one epoch, two seeds).
        out: where to write the page (its plots go to the folder named like it without ``.md``);
            None: only to the MLflow parent run and a Prefect artifact.
        tracking_uri: MLflow tracking URI (overrides ``config.tracking.uri``).
        command: the command line to record on the page.
    """
    import torch

    logger = get_run_logger()
    started = time.perf_counter()
    cfg = resolve_config(config, recipe, (QUICK_OVERRIDES if quick else []) + (overrides or []), tracking_uri)
    threads_before = torch.get_num_threads()
    threads = max(1, int(cfg.resources.cpus_per_worker))
    torch.set_num_threads(threads)
    dataset_uri = study_data(cfg)
    parent = start_parent_run(
        cfg,
        tags={
            "prefect.flow_run_id": str(flow_run.id or ""),
            "prefect.deployment": deployment.name or "local",
            "reskd.quick": str(quick).lower(),
        },
        kind="study",
    )
    client = client_for(cfg.tracking.uri)
    failed: dict[str, str] = {}
    try:
        cfg, info, _ = extracted(cfg, dataset_uri, parent)
        arms, _ = study_plan(cfg)
        load_res = cfg.teacher.resolution
        shapes = check_arms(arms, cfg.data.num_segments, int(cfg.num_classes), load_res)
        seeds = [cfg.seed + i for i in range(cfg.study.seeds)]
        logger.info(
            "study: %d arms x %d seeds on %s (%s videos)",
            len(arms),
            len(seeds),
            info["shards_uri"],
            info["videos"],
        )
        client.log_text(parent, "\n".join(a.key for a in arms), "arms.txt")

        from reskd_core.data.dataset import ClipDataset
        from reskd_core.evaluate import report_split

        val = ClipDataset(cfg.data.shards, cfg.data.val_split, cfg.data, load_res, train=False)
        val_batches = loader_batches(val, cfg.data.batch_size)(0)
        split = report_split(cfg, info["splits"])
        test_batches = None  # no test split: the best validation score is what there is to report
        if split != cfg.data.val_split:
            test = ClipDataset(cfg.data.shards, split, cfg.data, load_res, train=False)
            test_batches = loader_batches(test, cfg.data.batch_size)(0)
        by_key = {a.key: a for a in arms}
        for seed in seeds:
            train = ClipDataset(
                cfg.data.shards, cfg.data.train_split, cfg.data, load_res, train=True, seed=seed
            )
            steps = -(-len(train) // cfg.data.batch_size)
            batches = EpochBatches(loader_batches(train, cfg.data.batch_size), steps)
            states: dict[str, dict] = {}
            for arm in arms:
                name = f"{arm.key} seed {seed}"
                if arm.teacher is not None and arm.teacher not in states:
                    failed[name] = f"skipped: its teacher {arm.teacher} did not finish"
                    continue
                try:
                    res = train_arm(
                        cfg,
                        arm,
                        seed,
                        shapes[arm.key],
                        batches,
                        val_batches,
                        test_batches,
                        split,
                        by_key.get(arm.teacher) if arm.teacher else None,
                        states.get(arm.teacher) if arm.teacher else None,
                        parent,
                        load_res,
                    )
                except Exception as e:  # one failed arm must not lose the others
                    failed[name] = f"{type(e).__name__}: {e}"
                    logger.error("%s failed: %s", name, failed[name])
                    continue
                if "state" in res:
                    states[arm.key] = res["state"]
            del batches, states
        wall = time.perf_counter() - started
        client.log_metric(parent, "wall_seconds", wall)
        meta = dict(
            command=command or f"study(recipe={recipe!r}, quick={quick}, out={out!r})",
            date=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            machine=machine_description(threads),
            wall_s=wall,
            tracking_uri=cfg.tracking.uri,
            experiment=cfg.tracking.experiment,
            parent_run_id=parent,
            recipe=str(recipe) if config is None else "(config given)",
            epochs=(cfg.schedule.teacher_epochs, cfg.schedule.student_epochs),
            seeds=seeds,
            frames=cfg.data.num_segments,
            load_resolution=load_res,
            provenance=provenance(cfg),
            failed=failed,
            quick=quick,
        )
        page = render_study(cfg, parent, arms, info, meta, out)
        client.set_terminated(parent, "FINISHED" if not failed else "FAILED")
        if failed:
            client.set_tag(
                parent, "reskd.error", f"{len(failed)} arm run(s) failed: " + "; ".join(failed)[:4000]
            )
        return {"parent_run_id": parent, "failed": failed, "wall_s": wall, **page}
    except BaseException as e:
        client.set_tag(parent, "reskd.error", f"{type(e).__name__}: {e}"[:5000])
        client.set_terminated(parent, "FAILED")
        raise
    finally:
        torch.set_num_threads(threads_before)


@flow(name="reskd-study-render")
def render(run_id: str, out: str | None = None, tracking_uri: str | None = None) -> dict:
    """Write the results page again from a finished study's MLflow runs, without training: after a
    change to the page or its plots, or after new benchmark JSON. The page says it was re-rendered."""

    from mlflow.exceptions import MlflowException

    from reskd_core.config import with_overrides

    uri = tracking_uri or Config().tracking.uri
    client = client_for(uri)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(run_id, STUDY_RECORD, tmp)
        except (MlflowException, OSError) as e:
            raise ValueError(
                f"run {run_id} at {uri} has no {STUDY_RECORD}: not a study parent run, or one from before "
                f"the page could be re-rendered ({e})"
            ) from None
        record = json.loads(Path(path).read_text())
    cfg = with_overrides(Config.model_validate(record["config"]), [f"tracking.uri={uri}"])
    arms, _ = study_plan(cfg)
    meta = dict(record["meta"])
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    meta["provenance"] = list(meta.get("provenance", [])) + [
        f"Page re-rendered from these runs by `reskd study --render {run_id}` on {when} with the code of "
        f"git commit `{_commit() or '?'}`."
    ]
    return render_study(cfg, run_id, arms, record["info"], meta, out)


def _commit() -> str:
    """The checkout's short commit hash ('' outside a git checkout)."""
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _logger():
    """The Prefect run logger inside a run, else this module's (tasks called as plain functions)."""
    from prefect.exceptions import MissingContextError

    try:
        return get_run_logger()
    except MissingContextError:
        return log
