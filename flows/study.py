"""The ``reskd/study`` flow: the paper's comparisons on one dataset, 3 seeds each, as MLflow child runs
of one parent run, then the results page (docs/results.md) rendered from those runs.

The flow is named ``reskd`` like ``reskd/full``: the two are deployments ``full`` and ``study`` of one
flow name. Arms are tiny and many (about 20 per seed), so each is trained in this process
(:func:`flows.study_arm.train_arm`). What can be shared is: one demo dataset and one extraction, the
loaded batches of a seed (replayed to every arm of it, see
:class:`reskd_core.study.batches.EpochBatches`), the val and test batches, and each teacher, trained once
per seed and copied fresh into every arm that distils from it. The page is written by
:func:`flows.study_page.render_study`; :func:`render` writes it again from a finished study's runs.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import deployment, flow_run

from flows import datasets
from flows.full import extracted, resolve_config
from flows.study_arm import train_arm
from flows.study_page import git_commit, machine_description, provenance, render_study
from flows.study_records import load_study_record
from flows.tracking import FAILED, FINISHED, client_for, end_run, start_parent_run
from reskd_core.config import Config
from reskd_core.study.arms import Arm, ArmShape, check_arms
from reskd_core.study.batches import EpochBatches, loader_batches
from reskd_core.study.plan import QUICK_OVERRIDES, study_plan


@task(name="study-data", cache_policy=NO_CACHE)
def study_data(cfg: Config) -> str:
    """The study's demo dataset in ``demo.root``, (re)generated unless the current generator made it."""
    return datasets.ensure_demo_dataset(cfg)


def evaluation_batches(cfg: Config, splits: dict, load_res: int) -> tuple[str, list[dict], list[dict] | None]:
    """``(report split, val batches, test batches)``, loaded once for every arm; the test batches are
    None when the shards have no test split (the best validation score is then what there is to report)."""
    from reskd_core.data.dataset import ClipDataset
    from reskd_core.evaluate import report_split

    val = ClipDataset(cfg.data.shards, cfg.data.val_split, cfg.data, load_res, train=False)
    val_batches = loader_batches(val, cfg.data.batch_size)(0)
    split = report_split(cfg, splits)
    test_batches = None
    if split != cfg.data.val_split:
        test = ClipDataset(cfg.data.shards, split, cfg.data, load_res, train=False)
        test_batches = loader_batches(test, cfg.data.batch_size)(0)
    return split, val_batches, test_batches


def train_seed(
    cfg: Config,
    arms: list[Arm],
    shapes: dict[str, ArmShape],
    seed: int,
    evaluation: tuple[str, list[dict], list[dict] | None],
    parent_run_id: str,
    load_res: int,
) -> dict[str, str]:
    """Train every arm at ``seed`` (teachers first) on the same replayed batches; returns the arms that
    failed or were skipped (``"arm seed N"`` -> reason). One failed arm does not stop the others."""
    from reskd_core.data.dataset import ClipDataset

    logger = get_run_logger()
    split, val_batches, test_batches = evaluation
    train = ClipDataset(cfg.data.shards, cfg.data.train_split, cfg.data, load_res, train=True, seed=seed)
    steps = -(-len(train) // cfg.data.batch_size)
    batches = EpochBatches(loader_batches(train, cfg.data.batch_size), steps)
    by_key = {a.key: a for a in arms}
    states: dict[str, dict] = {}  # a teacher's reported weights, handed to the students distilling from it
    failed: dict[str, str] = {}
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
                parent_run_id,
                load_res,
            )
        except Exception as e:  # one failed arm must not lose the others
            failed[name] = f"{type(e).__name__}: {e}"
            logger.error("%s failed: %s", name, failed[name])
            continue
        if "state" in res:
            states[arm.key] = res["state"]
    return failed


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
        config: the whole configuration, final (the CLI has applied the quick settings and overrides);
            None takes ``recipe`` plus ``overrides``.
        recipe: a recipe name under configs/ or a YAML path (default: ``study_cpu``); with ``config``,
            the name the page records.
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
    if config is None:  # a deployment run: the recipe with the quick settings first, then the overrides
        overrides = (QUICK_OVERRIDES if quick else []) + (overrides or [])
    cfg = resolve_config(config, recipe, overrides or [], tracking_uri)  # a given config is final
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
        evaluation = evaluation_batches(cfg, info["splits"], load_res)
        for seed in seeds:
            failed |= train_seed(cfg, arms, shapes, seed, evaluation, parent, load_res)
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
            recipe=str(recipe),
            epochs=(cfg.schedule.teacher_epochs, cfg.schedule.student_epochs),
            seeds=seeds,
            frames=cfg.data.num_segments,
            load_resolution=load_res,
            provenance=provenance(cfg),
            failed=failed,
            quick=quick,
        )
        page = render_study(cfg, parent, arms, info, meta, out)
        error = f"{len(failed)} arm run(s) failed: " + "; ".join(failed) if failed else None
        end_run(cfg.tracking.uri, parent, FAILED if failed else FINISHED, error)
        return {"parent_run_id": parent, "failed": failed, "wall_s": wall, **page}
    except BaseException as e:
        end_run(cfg.tracking.uri, parent, FAILED, f"{type(e).__name__}: {e}")
        raise
    finally:
        torch.set_num_threads(threads_before)


@flow(name="reskd-study-render")
def render(run_id: str, out: str | None = None, tracking_uri: str | None = None) -> dict:
    """Write the results page again from a finished study's MLflow runs, without training: after a
    change to the page or its plots, or after new benchmark JSON. The page says it was re-rendered."""
    from reskd_core.config import with_overrides

    uri = tracking_uri or Config().tracking.uri
    record = load_study_record(uri, run_id)
    cfg = with_overrides(Config.model_validate(record["config"]), [f"tracking.uri={uri}"])
    arms, _ = study_plan(cfg)
    meta = dict(record["meta"])
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    meta["provenance"] = list(meta.get("provenance", [])) + [
        f"Page re-rendered from these runs by `reskd study --render {run_id}` on {when} with the code of "
        f"git commit `{git_commit() or '?'}`."
    ]
    return render_study(cfg, run_id, arms, record["info"], meta, out)
