"""One arm of the study at one seed, trained in this process as an MLflow child run of the study's parent
run (the ``study-arm`` Prefect task): the epoch is chosen on val, that epoch's model is reported on test.

Arms are tiny and many, so each is trained by :func:`reskd_core.train.fit` here rather than as a Ray Train
job (15-20 s of start-up per job); it is fed the seed's replayed batches
(:class:`reskd_core.study.batches.EpochBatches`) and, when it distils, a fresh copy of its teacher.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import asdict

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.study_records import ARM_KIND
from flows.tracking import (
    REPORT_SPLIT_TAG,
    log_metrics,
    role_params,
    run_context,
    start_run,
)
from reskd_core.config import Config
from reskd_core.study.arms import Arm, ArmShape, arm_config
from reskd_core.study.batches import EpochBatches
from reskd_core.study.stats import accuracy_metric

log = logging.getLogger(__name__)


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

    from reskd_core.evaluate import evaluate_model, report_prefix, scalar_metrics
    from reskd_core.job import model_for, spec_for
    from reskd_core.train import fit, use_amp

    logger = _logger()
    acfg = arm_config(cfg, arm, seed, teacher)
    spec = spec_for(acfg, arm.role)
    num_classes = int(cfg.num_classes)
    run_id = start_run(
        cfg.tracking.uri,
        cfg.tracking.experiment,  # the parent's
        f"{arm.key} seed {seed}",  # arms differ in more than role, resolution and KD
        parent_run_id=parent_run_id,
        tags={
            "reskd.kind": ARM_KIND,
            "reskd.study.arm": arm.key,
            "reskd.seed": str(seed),
            "reskd.role": arm.role,
            "reskd.study.teacher": arm.teacher or "",
            REPORT_SPLIT_TAG: split,
        },
        params={
            **role_params(acfg, arm.role),
            **{f"study.arm.{k}": v for k, v in asdict(arm).items()},
            "study.load_resolution": load_resolution,
        },
    )
    metric = accuracy_metric(cfg, split)
    with run_context(cfg.tracking.uri, run_id):
        device = torch.device("cuda" if cfg.resources.use_gpu and torch.cuda.is_available() else "cpu")
        model = model_for(acfg, arm.role, num_classes, seed=seed).to(device)
        teacher_net = None
        if teacher is not None:
            teacher_net = model_for(acfg, "teacher", num_classes)
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
            "gflops_per_video": shape.gflops,
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


def _logger():
    """The Prefect run logger inside a run, else this module's (tasks called as plain functions)."""
    from prefect.exceptions import MissingContextError

    try:
        return get_run_logger()
    except MissingContextError:
        return log
