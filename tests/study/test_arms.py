"""One arm's shapes, its refusal before training, and its config (reskd_core.study.arms)."""

import pytest

from reskd_core.study.arms import arm_config, check_arms
from reskd_core.study.plan import study_plan
from tests.study.plans import full_plan


def test_shapes_channels_and_the_down_up_flops_size():
    cfg = full_plan()
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
    cfg = full_plan("study.super_low_resolution=16")
    arms, _ = study_plan(cfg)
    with pytest.raises(ValueError, match=r"study arm tsn_tiny@16\b.*too small"):
        check_arms(arms, 2, 8, cfg.teacher.resolution)
    cfg = full_plan("study.big_teacher=tsn_r50", "study.groups=[model_vs_resolution]")
    arms, _ = study_plan(cfg)
    with pytest.raises(ValueError, match="pixel_mse needs equal channels"):
        check_arms(arms, 2, 8, cfg.teacher.resolution)
    with pytest.raises(ValueError):
        full_plan("study.groups=[everything]")


def test_arm_config_puts_the_arm_in_the_right_section():
    cfg = full_plan()
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
