"""reskd_core.job: the role's spec and model, the loaders, and the checks that run before any work."""

from __future__ import annotations

import pytest
import torch

from reskd_core.checkpoint import CheckpointError, build_state, save_checkpoint
from reskd_core.config import load_config
from reskd_core.data.shards import read_manifest
from reskd_core.job import Job, check_job, make_loaders, model_for, spec_for
from reskd_core.models import build_model

BASE = [
    "data.num_segments=2",
    "data.batch_size=4",
    "teacher.name=tsn_tiny",
    "teacher.resolution=64",
    "student.name=tsn_tiny",
    "student.resolution=32",
]


def _cfg(shards: str = "nowhere", *extra: str):
    return load_config(None, [f"data.shards={shards}", *BASE, *extra])


def _teacher_checkpoint(path, shards: str, *, classes: list[str] | None = None, width: int | None = None):
    """A real teacher checkpoint (tsn_tiny at 64 px) trained 'on' the shards' classes, or on ``classes``."""
    names = classes if classes is not None else list(read_manifest(shards)["class_names"])
    cfg = _cfg(shards, *([f"teacher.width={width}"] if width else []))
    model = model_for(cfg, "teacher", len(names))
    state = build_state(
        role="teacher",
        model=model,
        config=cfg,
        epoch=1,
        num_classes=len(names),
        class_names=names,
        mlflow_run_id="teacher-run",
    )
    return save_checkpoint(state, str(path))


# ---------------------------------------------------------------- spec_for, model_for


def test_spec_for_picks_the_roles_section():
    cfg = _cfg()
    assert spec_for(cfg, "teacher") is cfg.teacher and spec_for(cfg, "student") is cfg.student
    with pytest.raises(ValueError, match="role must be"):
        spec_for(cfg, "tutor")


def test_model_for_builds_the_spec_with_width_dropout_and_frames():
    cfg = _cfg("x", "student.name=tsm_tiny", "student.width=8", "student.dropout=0.25", "data.num_segments=4")
    model = model_for(cfg, "student", 5)
    assert model.fc.out_features == 5 and model.dropout.p == 0.25
    assert model.feature_channels == 8 * 8  # BasicBlock stages: width x 8 channels at the end
    assert model.backbone.layer1[0].shift_segments == 4  # TSM shifts over data.num_segments frames
    logits, _ = model(torch.zeros(1, 4, 3, 32, 32))
    assert logits.shape == (1, 5)


def test_model_for_seed_fixes_the_initial_weights():
    cfg = _cfg()
    a, b = model_for(cfg, "teacher", 3, seed=7), model_for(cfg, "teacher", 3, seed=7)
    c = model_for(cfg, "teacher", 3, seed=8)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["backbone.conv1.weight"], sc["backbone.conv1.weight"])


def test_model_for_loads_the_pretrained_backbone_unless_asked_not_to(tmp_path):
    source = build_model("tsn_tiny", num_classes=3, num_frames=2)
    torch.save(source.state_dict(), tmp_path / "w.pt")
    cfg = _cfg("x", f"teacher.pretrained={tmp_path / 'w.pt'}")
    loaded = model_for(cfg, "teacher", 4, seed=1)
    fresh = model_for(cfg, "teacher", 4, seed=1, pretrained=False)
    key = "backbone.conv1.weight"
    assert torch.equal(loaded.state_dict()[key], source.state_dict()[key])
    assert not torch.equal(fresh.state_dict()[key], source.state_dict()[key])
    assert loaded.fc.out_features == 4  # the head keeps its fresh initialisation


# ---------------------------------------------------------------- make_loaders


def test_make_loaders_split_the_shards_between_ranks_at_the_load_resolution(demo_shards):
    cfg = _cfg(demo_shards)
    train0, val0 = make_loaders(cfg, 0, 2)
    train1, val1 = make_loaders(cfg, 1, 2)
    assert len(train0.dataset) == len(train1.dataset) == 12  # 24 train videos over 2 ranks
    assert len(val0.dataset) + len(val1.dataset) == 8  # each val video once
    assert train0.batch_size == 4 and not train0.persistent_workers
    batch = next(iter(train0))
    assert batch["clip"].shape == (4, 2, 3, 64, 64)  # the teacher's resolution: students down-sample
    ids = [i for loader in (val0, val1) for b in loader for i in b["id"]]
    assert len(ids) == len(set(ids)) == 8


# ---------------------------------------------------------------- check_job


def test_check_job_of_a_teacher_returns_the_datasets_classes(demo_shards):
    job = check_job(_cfg(demo_shards), "teacher")
    assert isinstance(job, Job) and job.role == "teacher" and job.spec is job.cfg.teacher
    assert job.num_classes == 4 and list(job.class_names) == read_manifest(demo_shards)["class_names"]
    assert job.teacher_checkpoint is None and job.teacher_run_id is None
    with pytest.raises(AttributeError):
        job.num_classes = 5  # frozen


def test_check_job_of_a_student_takes_the_teacher_from_its_checkpoint(demo_shards, tmp_path):
    ckpt = _teacher_checkpoint(tmp_path / "t.pt", demo_shards)
    # the config names another teacher: the checkpoint's architecture and resolution win
    cfg = _cfg(demo_shards, "teacher.name=tsn_r18", "teacher.resolution=96", f"teacher.checkpoint={ckpt}")
    job = check_job(cfg, "student")
    assert job.teacher_checkpoint == ckpt and job.teacher_run_id == "teacher-run"
    assert (job.cfg.teacher.name, job.cfg.teacher.resolution, job.cfg.teacher.checkpoint) == (
        "tsn_tiny",
        64,
        ckpt,
    )
    # without KD the student needs no teacher
    baseline = check_job(_cfg(demo_shards, "kd.method=none"), "student")
    assert baseline.teacher_checkpoint is None and baseline.cfg.teacher.name == "tsn_tiny"


def test_a_down_up_student_sees_the_load_size_so_a_tiny_resolution_passes(demo_shards):
    job = check_job(
        _cfg(demo_shards, "kd.method=none", "student.resolution=16", "student.input=down_up"), "student"
    )
    assert job.spec.resolution == 16


@pytest.mark.parametrize(
    ("extra", "role", "field"),
    [
        (["teacher.resolution=16"], "teacher", "teacher.resolution 16 is too small for tsn_tiny"),
        (["kd.method=none", "student.resolution=16"], "student", "student.resolution 16 is too small"),
        (["student.name=tsn_nope"], "student", "student.name: unknown model 'tsn_nope'"),
        (["data.val_split=holdout"], "teacher", "data: split 'holdout'"),
        (["num_classes=7"], "teacher", "num_classes is 7"),
        (["kd.method=pixel_mse"], "student", "teacher.checkpoint"),
        (["kd.method=none", "student.resolution=128"], "student", "student.resolution 128 is above"),
    ],
)
def test_each_bad_input_fails_in_one_line_naming_the_field(demo_shards, extra, role, field):
    with pytest.raises(ValueError) as e:
        check_job(_cfg(demo_shards, *extra), role)
    assert field in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_missing_shards_name_data_shards(tmp_path):
    with pytest.raises(ValueError, match=r"^data\.shards: .*nowhere") as e:
        check_job(_cfg(str(tmp_path / "nowhere")), "teacher")
    assert "\n" not in str(e.value)


def test_pixel_mse_needs_equal_feature_channels(demo_shards, tmp_path):
    ckpt = _teacher_checkpoint(tmp_path / "wide.pt", demo_shards, width=32)  # 256 channels
    cfg = _cfg(demo_shards, "kd.method=pixel_mse", f"teacher.checkpoint={ckpt}")
    with pytest.raises(ValueError, match=r"^kd\.method=pixel_mse needs equal feature channels") as e:
        check_job(cfg, "student")
    assert "student tsn_tiny has 128" in str(e.value) and "256" in str(e.value)
    # a logit-level method has no such constraint
    assert check_job(
        cfg.model_copy(update={"kd": cfg.kd.model_copy(update={"method": "pixel_logit_kl"})}), "student"
    )


def test_a_teacher_of_other_classes_is_refused(demo_shards, tmp_path):
    names = list(read_manifest(demo_shards)["class_names"])
    fewer = _teacher_checkpoint(tmp_path / "three.pt", demo_shards, classes=names[:3])
    with pytest.raises(ValueError, match=r"^teacher\.checkpoint .*three\.pt has 3 classes, the shards 4"):
        check_job(_cfg(demo_shards, f"teacher.checkpoint={fewer}"), "student")
    other = _teacher_checkpoint(tmp_path / "other.pt", demo_shards, classes=[*names[:3], "zebra"])
    with pytest.raises(
        ValueError, match=r"^teacher\.checkpoint .*other\.pt was trained on other classes"
    ) as e:
        check_job(_cfg(demo_shards, f"teacher.checkpoint={other}"), "student")
    assert "'zebra' in the checkpoint" in str(e.value) and "\n" not in str(e.value)


def test_an_unreadable_teacher_checkpoint_names_the_file(demo_shards, tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x80\x02not really")
    with pytest.raises(CheckpointError, match=r"junk\.pt is corrupt"):
        check_job(_cfg(demo_shards, f"teacher.checkpoint={junk}"), "student")
