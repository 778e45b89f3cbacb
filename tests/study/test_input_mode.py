"""ModelConfig.input = 'down_up': the student sees a down-sampled clip up-sampled back to the loaded size,
in training (distill_loss, fit) and in evaluation (predict)."""

import pytest
import torch
import torch.nn.functional as F

from reskd_core.config import KDConfig, load_config
from reskd_core.distill import distill_loss, model_input
from reskd_core.evaluate import evaluate_model
from reskd_core.models import build_model
from reskd_core.train import fit
from tests.train.synthetic import ColourClips, loader


def _clip(res=64, n=2, t=2):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, t, 3, res, res, generator=g)


def test_down_up_keeps_the_size_and_loses_the_detail():
    clip = _clip()
    direct = model_input(clip, 16)
    down_up = model_input(clip, 16, "down_up")
    assert direct.shape[-2:] == (16, 16)
    assert down_up.shape == clip.shape
    # what is left is the 16 px content, brought back to the loaded size
    up = F.interpolate(direct.flatten(0, 1), size=(64, 64), mode="bilinear", align_corners=False)
    assert torch.allclose(down_up, up.view_as(clip))

    # and fine detail is gone: far less high-frequency energy than the original
    def detail(x):
        return (x[..., 1:, :] - x[..., :-1, :]).abs().mean()

    assert detail(down_up) < 0.5 * detail(clip)
    assert model_input(clip, 64, "down_up") is clip  # nothing to lose at the loaded size


def test_unknown_input_mode_is_refused():
    with pytest.raises(ValueError, match="direct.*down_up"):
        model_input(_clip(), 64, "sideways")
    with pytest.raises(ValueError):
        load_config(None, ["student.input=sideways"])


def _shapes_seen(model):
    seen = []
    model.register_forward_pre_hook(lambda _m, args: seen.append(tuple(args[0].shape[-2:])))
    return seen


def test_distill_loss_feeds_the_student_the_down_up_clip():
    torch.manual_seed(0)
    student = build_model("tsn_tiny", num_classes=3, num_frames=2)
    teacher = build_model("tsn_tiny", num_classes=3, num_frames=2)
    seen = _shapes_seen(student)
    y = torch.tensor([0, 1])
    out = distill_loss(
        student, teacher, _clip(), y, KDConfig(method="pixel_mse"), 32, student_input="down_up"
    )
    assert seen == [(64, 64)]
    assert out.kd.item() >= 0
    distill_loss(student, None, _clip(), y, KDConfig(method="none"), 32)
    assert seen[-1] == (32, 32)


def test_fit_and_evaluation_honour_the_student_input_mode():
    cfg = load_config(
        None,
        [
            "teacher.name=tsn_tiny",
            "teacher.resolution=64",
            "student.name=tsn_tiny",
            "student.resolution=32",
            "student.input=down_up",
            "kd.method=none",
            "data.num_segments=2",
            "data.batch_size=8",
            "optim.lr_batch=8",
            "schedule.student_epochs=1",
        ],
    )
    torch.manual_seed(0)
    model = build_model("tsn_tiny", num_classes=3, num_frames=2)
    seen = _shapes_seen(model)
    train, val = loader(ColourClips(n=16, res=64)), loader(ColourClips(n=8, res=64, seed=1))
    fit(cfg, "student", model, train, val, num_classes=3)
    assert seen and set(seen) == {(64, 64)}  # training steps and the epoch's evaluation
    seen.clear()
    direct = evaluate_model(model, val, device=torch.device("cpu"), resolution=32, multi_label=False)
    assert set(seen) == {(32, 32)}
    seen.clear()
    evaluate_model(
        model, val, device=torch.device("cpu"), resolution=32, multi_label=False, input_mode="down_up"
    )
    assert set(seen) == {(64, 64)}
    assert direct["n"] == 8
