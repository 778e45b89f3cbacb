"""Readable run names and the role's params: what the MLflow UI shows and filters on."""

from __future__ import annotations

from flows.tracking import role_params, run_name
from reskd_core.config import load_config


def test_runs_are_named_by_role_resolution_and_kd():
    cfg = load_config(None, ["name=demo", "teacher.resolution=112", "student.resolution=56"])
    assert run_name(cfg, "teacher") == "teacher 112px"
    assert run_name(cfg, "student") == "student 56px pixel_mse"
    baseline = load_config(None, ["student.resolution=40", "kd.method=none"])
    assert run_name(baseline, "student") == "student 40px no KD"
    assert run_name(cfg, "pipeline") == "demo pipeline"


def test_a_teacher_logs_no_student_or_kd_params():
    params = role_params(load_config(None, ["teacher.resolution=112"]), "teacher")
    assert params["teacher.resolution"] == "112" and "optim.lr" in params and "data.num_segments" in params
    assert not [k for k in params if k.startswith(("student.", "kd.", "pipeline.", "study.", "demo."))]


def test_a_student_logs_its_sections_the_teachers_and_the_lambda_in_use():
    params = role_params(load_config(None, ["student.resolution=56", "kd.method=pixel_mse"]), "student")
    assert params["student.resolution"] == "56" and params["teacher.resolution"] == "224"
    assert params["kd.method"] == "pixel_mse" and params["kd.weight"] == "100.0"  # the config said null
    assert role_params(load_config(None, ["kd.method=none"]), "student")["kd.weight"] == "0.0"
    assert role_params(load_config(None, ["kd.weight=7"]), "student")["kd.weight"] == "7.0"


def test_a_parent_run_logs_the_config_but_what_its_children_set():
    params = role_params(load_config(None, ["pipeline.resolutions=[112,56]"]), "pipeline")
    assert params["pipeline.resolutions"] == "[112, 56]" and "teacher.name" in params
    assert not [k for k in params if k.startswith(("student.", "kd."))]
