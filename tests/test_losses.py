import pytest
import torch

from reskd_core.config import KDConfig
from reskd_core.distill import distill_loss, downsample, prepare_teacher
from reskd_core.losses import KD_LOSSES, Branch, align_maps, classification_loss, pixel_logit_kl, pixel_mse
from reskd_core.models import build_model


def branch(feats, classes=5, logits=None):
    fc = torch.nn.Linear(feats.shape[2], classes)
    return Branch(logits if logits is not None else feats.mean((1, 3, 4)) @ fc.weight.T, feats, fc)


def test_pixel_mse_zero_for_identical_and_positive_otherwise():
    f = torch.randn(2, 4, 8, 7, 7)
    assert pixel_mse(branch(f), branch(f.clone()), temperature=1, align="up") == 0
    assert pixel_mse(branch(f + 0.1), branch(f), temperature=1, align="up") > 0


def test_pixel_mse_upsamples_student_map_to_teacher_size():
    s = torch.randn(2, 4, 8, 4, 4)
    t = torch.randn(2, 4, 8, 7, 7)
    up, same = align_maps(s, t, "up")
    assert up.shape == t.shape and same is t
    st, down = align_maps(s, t, "down")
    assert down.shape == s.shape and st is s
    # a constant map stays constant under bilinear resizing: its loss against the same constant is 0
    c = torch.full((1, 2, 3, 4, 4), 2.0)
    assert pixel_mse(branch(c), branch(torch.full((1, 2, 3, 7, 7), 2.0)), temperature=1, align="up") < 1e-12


def test_pixel_mse_refuses_channel_mismatch_and_points_to_logit_kl():
    with pytest.raises(ValueError, match="pixel_logit_kl"):
        pixel_mse(
            branch(torch.randn(1, 2, 8, 4, 4)), branch(torch.randn(1, 2, 16, 7, 7)), temperature=1, align="up"
        )


def test_pixel_logit_kl_handles_different_channels():
    torch.manual_seed(0)
    s, t = branch(torch.randn(2, 2, 8, 4, 4)), branch(torch.randn(2, 2, 16, 7, 7))
    loss = pixel_logit_kl(s, t, temperature=2.0, align="up")
    assert loss > 0
    # identical pixel logits give zero
    fc = torch.nn.Linear(8, 5)
    f = torch.randn(2, 2, 8, 4, 4)
    assert pixel_logit_kl(Branch(None, f, fc), Branch(None, f, fc), temperature=2.0, align="up").abs() < 1e-6


@pytest.mark.parametrize("method", ["clip_kl", "frame_kl"])
def test_logit_kd_zero_for_identical(method):
    f = torch.randn(2, 3, 8, 4, 4)
    a = branch(f)
    b = Branch(a.logits.clone(), f.clone(), a.classifier)
    assert KD_LOSSES[method].fn(a, b, temperature=2.0, align="up").abs() < 1e-6


def test_classification_losses_for_multi_label():
    logits = torch.randn(4, 6, requires_grad=True)
    multi_hot = torch.zeros(4, 6)
    multi_hot[0, [1, 3]] = 1
    multi_hot[1:, 2] = 1
    for mode in ("random_ce", "bce"):
        loss = classification_loss(logits, multi_hot, mode)
        loss.backward()
        assert loss > 0 and logits.grad is not None
    # random_ce only ever picks a positive label: with one label per clip it equals plain CE
    one = torch.zeros(4, 6)
    one[torch.arange(4), torch.tensor([0, 1, 2, 3])] = 1
    assert torch.isclose(
        classification_loss(logits, one, "random_ce"),
        classification_loss(logits, torch.tensor([0, 1, 2, 3]), "ce"),
    )


def pair(classes=4):
    torch.manual_seed(0)
    return (
        build_model("tsn_tiny", num_classes=classes, num_frames=2),
        build_model("tsn_tiny", num_classes=classes, num_frames=2),
    )


def test_gradients_reach_student_never_teacher():
    student, teacher = pair()
    prepare_teacher(teacher, "train")
    clip, y = torch.randn(2, 2, 3, 64, 64), torch.tensor([0, 3])
    out = distill_loss(student, teacher, clip, y, KDConfig(method="pixel_mse"), student_resolution=32)
    out.total.backward()
    assert all(p.grad is not None for p in student.parameters() if p.requires_grad)
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    assert out.kd > 0


@pytest.mark.parametrize(("mode", "moves"), [("train", True), ("frozen", False)])
def test_teacher_bn_running_stats_move_only_in_train_mode(mode, moves):
    student, teacher = pair()
    prepare_teacher(teacher, mode)
    before = teacher.backbone.bn1.running_mean.clone()
    clip, y = torch.randn(2, 2, 3, 64, 64) + 3.0, torch.tensor([0, 1])
    distill_loss(student, teacher, clip, y, KDConfig(method="pixel_mse"), student_resolution=32)
    moved = not torch.equal(before, teacher.backbone.bn1.running_mean)
    assert moved is moves


def test_baseline_does_not_run_the_teacher():
    student, _ = pair()
    out = distill_loss(
        student, None, torch.randn(2, 2, 3, 64, 64), torch.tensor([0, 1]), KDConfig(method="none"), 32
    )
    assert out.kd == 0 and torch.isclose(out.total, out.ce)


def test_student_input_is_downsampled_teacher_crop():
    clip = torch.rand(1, 2, 3, 64, 64)
    low = downsample(clip, 32)
    assert low.shape == (1, 2, 3, 32, 32)
    # a linear filter: constants stay, and the mean brightness is kept
    assert torch.allclose(downsample(torch.full_like(clip, 0.3), 32), torch.full_like(low, 0.3))
    assert torch.isclose(low.mean(), clip.mean(), atol=1e-2)
    assert downsample(clip, 64) is clip


@pytest.mark.parametrize("method", ["clip_kl", "frame_kl", "pixel_mse", "pixel_logit_kl"])
def test_one_distillation_step_lowers_the_loss(method):
    student, teacher = pair()
    prepare_teacher(teacher, "train")
    torch.manual_seed(1)
    clip, y = torch.randn(4, 2, 3, 64, 64), torch.tensor([0, 1, 2, 3])
    kd = KDConfig(method=method)
    opt = torch.optim.SGD(student.parameters(), lr=1e-3, momentum=0.0)
    first = distill_loss(student, teacher, clip, y, kd, 32)
    opt.zero_grad()
    first.total.backward()
    opt.step()
    second = distill_loss(student, teacher, clip, y, kd, 32)
    assert second.total < first.total
