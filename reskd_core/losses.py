"""Classification and ResKD distillation losses, and the table from KD method name to loss.

Paper: Rethinking Resolution in the Context of Efficient Video Recognition (ResKD).
Total student loss: ``L = CE(student_logits, y) + lambda * KD(student, teacher)``.

KD losses take tensors wrapped in a :class:`Branch` (logits, last-stage map, the linear classifier);
the training step builds the two branches once and looks the method up once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class Branch:
    """One network's outputs on a clip: ``logits (N, K)``, ``features (N, T, C, h, w)``, its classifier."""

    logits: Tensor
    features: Tensor
    classifier: nn.Linear


def resize_map(features: Tensor, size: tuple[int, int, int]) -> Tensor:
    """Resize ``(N, T, C, h, w)`` to ``(N, T', C, H, W)``: (tri)linear, corners not aligned."""
    n, t, c, h, w = features.shape
    if (t, h, w) == size:
        return features
    if t == size[0]:
        out = F.interpolate(features.flatten(0, 1), size=size[1:], mode="bilinear", align_corners=False)
        return out.view(n, t, c, *size[1:])
    out = F.interpolate(features.transpose(1, 2), size=size, mode="trilinear", align_corners=False)
    return out.transpose(1, 2)


def align_maps(student: Tensor, teacher: Tensor, align: str = "up") -> tuple[Tensor, Tensor]:
    """Bring two maps to one size: ``up`` resizes the student's to the teacher's (the reference
    implementation's direction, e.g. 4x4 at 112px -> 7x7 at 224px); ``down`` resizes the teacher's."""
    if align == "up":
        return resize_map(student, _thw(teacher)), teacher
    if align == "down":
        return student, resize_map(teacher, _thw(student))
    raise ValueError(f"align must be 'up' or 'down', got {align!r}")


def _thw(x: Tensor) -> tuple[int, int, int]:
    return (x.shape[1], x.shape[3], x.shape[4])


def kl_with_temperature(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """Hinton et al. 2015: ``KL(softmax(t/T) || softmax(s/T)) * T^2``, averaged over the leading rows.

    Both inputs are ``(M, K)``; every row is one distribution (a clip, a frame or a pixel).
    """
    s = F.log_softmax(student_logits / temperature, dim=-1)
    t = F.log_softmax(teacher_logits / temperature, dim=-1)
    return F.kl_div(s, t, reduction="batchmean", log_target=True) * temperature**2


def clip_kl(student: Branch, teacher: Branch, *, temperature: float, align: str) -> Tensor:
    """Clip-level logit KD: KL between the video-level softmaxes."""
    return kl_with_temperature(student.logits, teacher.logits, temperature)


def frame_kl(student: Branch, teacher: Branch, *, temperature: float, align: str) -> Tensor:
    """Frame-level logit KD: each network's classifier on each frame's pooled feature, KL per frame."""
    if student.features.shape[1] != teacher.features.shape[1]:
        raise ValueError(
            f"frame_kl needs the same number of frames in both maps, got student "
            f"{student.features.shape[1]} and teacher {teacher.features.shape[1]}"
        )
    s = student.classifier(student.features.mean(dim=(3, 4)))
    t = teacher.classifier(teacher.features.mean(dim=(3, 4)))
    return kl_with_temperature(s.flatten(0, 1), t.flatten(0, 1), temperature)


def pixel_mse(student: Branch, teacher: Branch, *, temperature: float, align: str) -> Tensor:
    """Pixel-level feature KD (the paper's main loss): ``MSE(up(F_s), F_t)``.

    Bilinear alignment, then plain MSE averaged over every element: no normalisation, no adapter,
    which is why the default lambda is 100. Needs equal channel counts (use ``pixel_logit_kl`` otherwise).
    """
    s, t = align_maps(student.features, teacher.features, align)
    if s.shape[2] != t.shape[2]:
        raise ValueError(
            f"pixel_mse needs equal channel counts, got student {s.shape[2]} and teacher {t.shape[2]}; "
            "use pixel_logit_kl for such pairs"
        )
    return F.mse_loss(s, t)


def pixel_logit_kl(student: Branch, teacher: Branch, *, temperature: float, align: str) -> Tensor:
    """Pixel-level logit KD, for pairs whose channel counts differ (e.g. Swin-B -> Swin-S).

    Each network's own classifier (the teacher's frozen) is applied at every (t, h, w) location of the
    aligned maps, then ``KL(softmax(t/T) || softmax(s/T)) * T^2`` averaged over locations.
    """
    s, t = align_maps(student.features, teacher.features, align)
    s_logits = student.classifier(s.permute(0, 1, 3, 4, 2)).flatten(0, 3)
    t_logits = teacher.classifier(t.permute(0, 1, 3, 4, 2)).flatten(0, 3)
    return kl_with_temperature(s_logits, t_logits, temperature)


@dataclass(frozen=True)
class KDLoss:
    fn: Callable[..., Tensor] | None  # None: no distillation (the baseline)
    default_weight: float


KD_LOSSES: dict[str, KDLoss] = {
    "none": KDLoss(None, 0.0),
    "clip_kl": KDLoss(clip_kl, 1.0),
    "frame_kl": KDLoss(frame_kl, 1.0),
    "pixel_mse": KDLoss(pixel_mse, 100.0),
    "pixel_logit_kl": KDLoss(pixel_logit_kl, 200.0),
}


def kd_weight(method: str, weight: float | None) -> float:
    """The lambda in use: 0 without KD, else the configured one, else the method's default."""
    if KD_LOSSES[method].fn is None:
        return 0.0
    return KD_LOSSES[method].default_weight if weight is None else weight


def classification_loss(logits: Tensor, targets: Tensor, mode: str = "ce") -> Tensor:
    """Supervised loss.

    ``ce``: ``targets`` are class ids ``(N,)``. For multi-hot ``targets (N, K)`` (untrimmed video):
    ``random_ce`` draws one of each clip's labels at random every call (the reference behaviour),
    ``bce`` is binary cross-entropy over all classes.
    """
    if mode == "ce":
        return F.cross_entropy(logits, targets)
    if mode == "random_ce":
        weights = targets.float() + 1e-12 * (targets.float().sum(1, keepdim=True) == 0)
        return F.cross_entropy(logits, torch.multinomial(weights, 1).squeeze(1))
    if mode == "bce":
        return F.binary_cross_entropy_with_logits(logits, targets.float())
    raise ValueError(f"unknown classification loss {mode!r}")
