"""The study's arms and comparisons (reskd_core.study.study_plan / check_arms)."""

import pytest

from reskd_core.config import load_config, recipe_path
from reskd_core.study import GROUPS, QUICK_OVERRIDES, arm_config, check_arms, study_plan

# The planner's tests cover every comparison: the recipe runs a subset (configs/study_cpu.yaml says why)
FULL_PLAN = [
    "study.groups=null",
    "study.resolutions=[80,56,40,32]",
    "study.diagnosis_resolutions=[56,32]",
    "study.stride_resolutions=[56,40,32]",
    "study.kd_weights=[1,10,100]",
    "kd.weight=null",
]


def _cfg(*overrides):
    return load_config(recipe_path("study_cpu"), [*FULL_PLAN, *overrides])


def test_every_comparison_is_planned_and_each_arm_trained_once():
    cfg = _cfg()
    arms, comparisons = study_plan(cfg)
    keys = [a.key for a in arms]
    assert len(keys) == len(set(keys))
    assert [c.group for c in comparisons] == list(GROUPS)
    roles = [a.role for a in arms]
    assert roles == sorted(roles, key=lambda r: r != "teacher")  # teachers are trained first
    for comp in comparisons:
        for row in comp.rows:
            assert row.arm in keys and (row.baseline is None or row.baseline in keys)
    for arm in arms:
        assert (arm.teacher is None) == (arm.kd == "none")
        assert arm.teacher is None or arm.teacher in keys
    # the no-KD student at the low resolution serves the sweep, KD, BN and model-vs-resolution tables
    base = f"tsn_tiny@{cfg.study.low_resolution}"
    assert sum(row.baseline == base for c in comparisons for row in c.rows) >= 6
    by_key = {a.key: a for a in arms}
    assert {by_key[k].kd for k in keys} == {"none", "clip_kl", "frame_kl", "pixel_mse", "pixel_logit_kl"}
    assert any(a.input == "down_up" for a in arms)
    assert {a.model for a in arms} == {"tsn_tiny", "tsn_tiny_s"}
    # model distillation: a teacher at the low resolution; resolution distillation: the 112 px one
    teachers = {a.key: a for a in arms if a.role == "teacher"}
    assert sorted(a.resolution for a in teachers.values()) == [
        cfg.study.low_resolution,
        cfg.teacher.resolution,
    ]


def test_shapes_channels_and_the_down_up_flops_size():
    cfg = _cfg()
    arms, _ = study_plan(cfg)
    shapes = check_arms(arms, frames=2, num_classes=8, load_resolution=cfg.teacher.resolution)
    assert shapes["tsn_tiny@32"].feature_hw == (1, 1)
    assert shapes["tsn_tiny_s@32"].feature_hw == (2, 2)
    assert shapes["tsn_tiny@32-down_up"].feature_hw == shapes["tsn_tiny@112"].feature_hw
    down_up, full, low = (shapes[k].gflops for k in ("tsn_tiny@32-down_up", "tsn_tiny@112", "tsn_tiny@32"))
    assert down_up == full > low
    narrow = next(a for a in arms if a.kd == "pixel_logit_kl")
    assert shapes[narrow.key].channels != shapes[narrow.teacher].channels


def test_arms_that_cannot_run_are_refused_before_training():
    cfg = _cfg("study.super_low_resolution=16")
    arms, _ = study_plan(cfg)
    with pytest.raises(ValueError, match=r"study arm tsn_tiny@16\b.*too small"):
        check_arms(arms, 2, 8, cfg.teacher.resolution)
    cfg = _cfg("study.big_teacher=tsn_r50", "study.groups=[model_vs_resolution]")
    arms, _ = study_plan(cfg)
    with pytest.raises(ValueError, match="pixel_mse needs equal channels"):
        check_arms(arms, 2, 8, cfg.teacher.resolution)
    with pytest.raises(ValueError):
        _cfg("study.groups=[everything]")


def test_groups_select_comparisons_and_quick_keeps_them_all():
    arms, comps = study_plan(_cfg("study.groups=[kd]"))
    assert [c.group for c in comps] == ["kd"]
    assert len(arms) == 7  # teacher, 2 baselines, 4 KD students
    quick = _cfg(*QUICK_OVERRIDES)
    q_arms, q_comps = study_plan(quick)
    assert [c.group for c in q_comps] == list(GROUPS)
    assert len(q_arms) < len(study_plan(_cfg())[0])


def test_arm_config_puts_the_arm_in_the_right_section():
    cfg = _cfg()
    arms, _ = study_plan(cfg)
    by_key = {a.key: a for a in arms}
    frozen = next(a for a in arms if a.teacher_bn == "frozen")
    c = arm_config(cfg, frozen, 7, by_key[frozen.teacher])
    assert (c.seed, c.kd.method, c.kd.teacher_bn) == (7, "pixel_mse", "frozen")
    assert (c.student.name, c.student.resolution) == ("tsn_tiny", cfg.study.low_resolution)
    assert c.teacher.resolution == cfg.teacher.resolution
    big = next(a for a in arms if a.role == "teacher" and a.model == cfg.study.big_teacher)
    c = arm_config(cfg, big, 0, None)
    assert (c.teacher.name, c.teacher.resolution, c.teacher.width) == ("tsn_tiny_s", 56, 16)
    down_up = next(a for a in arms if a.input == "down_up")
    assert arm_config(cfg, down_up, 0, None).student.input == "down_up"
