import shutil

import pytest
import torch

from reskd_core.checkpoint import load_checkpoint
from reskd_core.config import load_config
from reskd_core.models import build_model
from reskd_core.train import fit, train_one_epoch
from tests.train.synthetic import ColourClips, loader

BASE = [
    "teacher.name=tsn_tiny",
    "teacher.resolution=64",
    "teacher.dropout=0",
    "student.name=tsn_tiny",
    "student.resolution=32",
    "student.dropout=0",
    "data.num_segments=2",
    "data.batch_size=8",
    "optim.lr=0.05",
    "optim.lr_batch=8",
    "schedule.warmup_epochs=0.5",
    "schedule.teacher_epochs=4",
    "schedule.student_epochs=3",
]


def _cfg(*extra):
    return load_config(None, BASE + list(extra))


def _model(cfg, role="teacher", classes=3, seed=0):
    torch.manual_seed(seed)
    spec = cfg.teacher if role == "teacher" else cfg.student
    return build_model(spec.name, num_classes=classes, num_frames=2, dropout=0.0)


def _keep(tmp_path, saved):
    def on_epoch_end(epoch, metrics, ckpt_dir):
        assert ckpt_dir is not None
        shutil.copy(f"{ckpt_dir}/checkpoint.pt", tmp_path / f"epoch{epoch}.pt")
        saved.append((epoch, metrics))

    return on_epoch_end


def test_teacher_learns_and_checkpoints_every_epoch(tmp_path):
    cfg = _cfg()
    saved = []
    result = fit(
        cfg,
        "teacher",
        _model(cfg),
        loader(ColourClips(res=64)),
        loader(ColourClips(seed=9, res=64)),
        num_classes=3,
        on_epoch_end=_keep(tmp_path, saved),
        class_names=["r", "g", "b"],
    )
    losses = [m["train_loss"] for _, m in saved]
    assert [e for e, _ in saved] == [1, 2, 3, 4] and result.epochs_done == 4 and not result.resumed
    assert losses[-1] < losses[0] * 0.7, losses
    assert result.best_score is not None and result.best_score >= 90.0, result.history
    state = load_checkpoint(str(tmp_path / "epoch4.pt"))
    assert state["role"] == "teacher" and state["epoch"] == 4 and len(state["history"]) == 4
    assert state["evaluation"]["confusion"] and state["class_names"] == ["r", "g", "b"]


def test_resume_continues_exactly_where_it_stopped(tmp_path):
    """4 epochs straight == 2 epochs, then a resume from the epoch-2 checkpoint for the other 2."""
    cfg = _cfg()
    straight = _model(cfg)
    fit(
        cfg,
        "teacher",
        straight,
        loader(ColourClips(res=64)),
        None,
        num_classes=3,
        on_epoch_end=_keep(tmp_path, []),
    )
    first = tmp_path / "first"
    first.mkdir()
    # the job is killed after epoch 2 of 4 (the 4-epoch schedule), then resumed from that checkpoint
    interrupted = _model(cfg)

    class Stop(Exception):
        pass

    def stop_after_two(epoch, metrics, ckpt_dir):
        shutil.copy(f"{ckpt_dir}/checkpoint.pt", first / f"epoch{epoch}.pt")
        if epoch == 2:
            raise Stop

    with pytest.raises(Stop):
        fit(
            cfg,
            "teacher",
            interrupted,
            loader(ColourClips(res=64)),
            None,
            num_classes=3,
            on_epoch_end=stop_after_two,
        )
    resumed_model = _model(cfg, seed=123)  # different init: everything must come from the checkpoint
    result = fit(
        cfg,
        "teacher",
        resumed_model,
        loader(ColourClips(res=64)),
        None,
        num_classes=3,
        resume=load_checkpoint(str(first / "epoch2.pt")),
    )
    assert result.start_epoch == 2 and result.resumed and result.epochs_done == 4
    for a, b in zip(straight.state_dict().values(), resumed_model.state_dict().values(), strict=True):
        assert torch.allclose(a.float(), b.float(), atol=1e-6)
    # a finished job resumed again trains nothing
    again = fit(
        cfg,
        "teacher",
        _model(cfg),
        loader(ColourClips(res=64)),
        None,
        num_classes=3,
        resume=load_checkpoint(str(tmp_path / "epoch4.pt")),
    )
    assert again.start_epoch == 4 and len(again.history) == 4


def test_student_distils_from_a_frozen_teacher(tmp_path):
    cfg = _cfg("kd.method=pixel_mse")
    teacher = _model(cfg, seed=1)
    before = {k: v.clone() for k, v in teacher.named_parameters()}
    student = _model(cfg, "student")
    saved = []
    result = fit(
        cfg,
        "student",
        student,
        loader(ColourClips(res=64)),
        loader(ColourClips(seed=9, res=64)),
        num_classes=3,
        teacher=teacher,
        on_epoch_end=_keep(tmp_path, saved),
    )
    assert result.epochs_done == 3
    assert all(m["train_kd"] > 0 for _, m in saved)
    assert saved[-1][1]["train_loss"] > saved[-1][1]["train_ce"]  # CE + lambda * KD
    # kd.weight is null: the method's default lambda is in use, and the fit metrics say so
    assert all(m["train_kd_weight"] == 100.0 and 0 < m["train_kd_share"] < 1 for _, m in saved)
    assert all(torch.equal(before[k], v) for k, v in teacher.named_parameters())  # never updated
    assert not any(p.requires_grad for p in teacher.parameters())


def test_baseline_student_needs_no_teacher_and_kd_student_does(tmp_path):
    cfg = _cfg("kd.method=none")
    result = fit(cfg, "student", _model(cfg, "student"), loader(ColourClips(res=64)), None, num_classes=3)
    assert all(h["train_kd"] == 0 for h in result.history)
    assert all(h["train_kd_share"] == 0 and h["train_kd_weight"] == 0 for h in result.history)
    with pytest.raises(ValueError, match="needs a teacher"):
        fit(
            _cfg("kd.method=pixel_mse"),
            "student",
            _model(cfg, "student"),
            loader(ColourClips(res=64)),
            None,
            num_classes=3,
        )
    with pytest.raises(ValueError, match="role must be"):
        fit(cfg, "pupil", _model(cfg), loader(ColourClips(res=64)), None, num_classes=3)


@pytest.mark.parametrize("loss", ["random_ce", "bce"])
def test_multi_label_training_reports_map(loss):
    cfg = _cfg("data.multi_label=true", f"data.multi_label_loss={loss}", "schedule.teacher_epochs=2")
    result = fit(
        cfg,
        "teacher",
        _model(cfg, classes=4),
        loader(ColourClips(classes=4, res=64, multi_label=True)),
        loader(ColourClips(classes=4, res=64, seed=5, multi_label=True)),
        num_classes=4,
    )
    assert 0 < result.last_metrics["val_mAP"] <= 100
    assert result.last_metrics["val_score"] == result.last_metrics["val_mAP"]


def test_one_epoch_student_sees_the_downsampled_teacher_clip():
    """The student's input is the teacher-resolution clip down-sampled: 64px clips train a 32px student."""
    cfg = _cfg("kd.method=pixel_mse")
    student, teacher = _model(cfg, "student"), _model(cfg, seed=3)
    from reskd_core.distill import prepare_teacher
    from reskd_core.optim import build_optimizer, build_scheduler

    prepare_teacher(teacher)
    seen = []
    student.backbone.register_forward_pre_hook(lambda m, a: seen.append(a[0].shape[-1]))
    teacher.backbone.register_forward_pre_hook(lambda m, a: seen.append(a[0].shape[-1]))
    opt = build_optimizer(student, cfg.optim, 8)
    stats = train_one_epoch(
        student,
        loader(ColourClips(n=8, res=64)),
        opt,
        build_scheduler(opt, 0, 1),
        device=torch.device("cpu"),
        resolution=32,
        kd=cfg.kd,
        teacher=teacher,
    )
    assert seen == [32, 64] and stats["steps"] == 1 and stats["videos"] == 8


@pytest.mark.parametrize(
    ("method", "weight", "expected"),
    [("pixel_mse", None, 100.0), ("pixel_mse", 10.0, 10.0), ("clip_kl", None, 1.0), ("none", 50.0, 0.0)],
)
def test_one_epoch_reports_the_kd_share_of_the_loss_and_the_lambda_in_use(method, weight, expected):
    """``kd_weight`` is the lambda training used (the method's default when kd.weight is null, 0 without
    KD); ``kd_share`` is lambda * KD over the epoch's mean loss (CE + lambda * KD)."""
    from reskd_core.distill import prepare_teacher
    from reskd_core.optim import build_optimizer, build_scheduler

    cfg = _cfg(f"kd.method={method}", f"kd.weight={'null' if weight is None else weight}")
    student, teacher = _model(cfg, "student"), prepare_teacher(_model(cfg, seed=3))
    opt = build_optimizer(student, cfg.optim, 8)
    stats = train_one_epoch(
        student,
        loader(ColourClips(n=16, res=64)),
        opt,
        build_scheduler(opt, 0, 2),
        device=torch.device("cpu"),
        resolution=32,
        kd=cfg.kd,
        teacher=teacher if method != "none" else None,
    )
    assert stats["kd_weight"] == expected
    assert stats["loss"] == pytest.approx(stats["ce"] + expected * stats["kd"], rel=1e-5)
    assert stats["kd_share"] == pytest.approx(expected * stats["kd"] / stats["loss"], rel=1e-9)
    if method == "none":
        assert stats["kd"] == 0 and stats["kd_share"] == 0
    else:
        assert 0 < stats["kd_share"] < 1
