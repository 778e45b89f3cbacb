"""The study's arms and comparisons (reskd_core.study.plan.study_plan)."""

from reskd_core.study.plan import GROUPS, QUICK_OVERRIDES, study_plan
from tests.study.plans import full_plan


def test_every_comparison_is_planned_and_each_arm_trained_once():
    cfg = full_plan()
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


def test_groups_select_comparisons_and_quick_keeps_them_all():
    arms, comps = study_plan(full_plan("study.groups=[kd]"))
    assert [c.group for c in comps] == ["kd"]
    assert len(arms) == 7  # teacher, 2 baselines, 4 KD students
    quick = full_plan(*QUICK_OVERRIDES)
    q_arms, q_comps = study_plan(quick)
    assert [c.group for c in q_comps] == list(GROUPS)
    assert len(q_arms) < len(study_plan(full_plan())[0])
