"""The study configs and records the unit tests share: the full plan, and made-up records of every arm."""

import random

from reskd_core.config import Config, load_config, recipe_path
from reskd_core.study.arms import Arm
from reskd_core.study.plan import QUICK_OVERRIDES, Comparison, study_plan
from reskd_core.study.stats import Record

# The planner's tests cover every comparison: the recipe runs a subset (configs/study_cpu.yaml says why)
FULL_PLAN = [
    "study.groups=null",
    "study.resolutions=[80,56,40,32]",
    "study.diagnosis_resolutions=[56,32]",
    "study.stride_resolutions=[56,40,32]",
    "study.kd_weights=[1,10,100]",
    "kd.weight=null",
]


def full_plan(*overrides: str) -> Config:
    """The study recipe with every comparison planned, then ``overrides``."""
    return load_config(recipe_path("study_cpu"), [*FULL_PLAN, *overrides])


def made_up_records(
    kd_gain: float, seed: int = 0
) -> tuple[Config, list[Arm], list[Comparison], list[Record]]:
    """The quick full plan and random records of each arm at 3 seeds; pixel_mse arms gain ``kd_gain``."""
    cfg = full_plan(*QUICK_OVERRIDES)
    arms, comparisons = study_plan(cfg)
    rng = random.Random(seed)
    records = []
    for arm in arms:
        for s in (0, 1, 2):
            acc = rng.uniform(30, 60) + (kd_gain if arm.kd == "pixel_mse" else 0.0)
            metrics = {"gflops_per_video": 0.01 * arm.resolution, "feature_h": 2.0, "feature_w": 2.0}
            metrics["train_kd_share"] = 0.2 + 0.1 * s if arm.kd != "none" else 0.0
            records.append(Record(arm.key, s, acc, metrics))
    return cfg, arms, comparisons, records
