"""One ResKD step: the teacher sees the high-resolution clip, the student the same clip down-sampled."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from reskd_core.config import KDConfig
from reskd_core.losses import KD_LOSSES, Branch, classification_loss, kd_weight
from reskd_core.models import VideoClassifier


def downsample(clip: Tensor, resolution: int) -> Tensor:
    """Bilinear (anti-aliased) resize of a normalised ``(N, T, C, H, W)`` clip to ``resolution`` px square.

    Used both to make the student's input inside the distillation step and at test time, so training
    and evaluation see the same kind of low-resolution frames.
    """
    if clip.shape[-1] == resolution and clip.shape[-2] == resolution:
        return clip
    n, t = clip.shape[:2]
    out = F.interpolate(
        clip.flatten(0, 1),
        size=(resolution, resolution),
        mode="bilinear",
        align_corners=False,
        antialias=True,
    )
    return out.view(n, t, *out.shape[1:])


def model_input(clip: Tensor, resolution: int, mode: str = "direct") -> Tensor:
    """A model's input made from a loaded clip: ``direct`` resizes it to ``resolution``; ``down_up``
    resizes it there and back to the loaded size (the paper's diagnosis: detail lost, scale kept)."""
    if mode not in ("direct", "down_up"):
        raise ValueError(f"model input must be 'direct' or 'down_up', got {mode!r}")
    low = downsample(clip, resolution)
    if mode == "direct" or low is clip:
        return low
    n, t = clip.shape[:2]
    up = F.interpolate(low.flatten(0, 1), size=clip.shape[-2:], mode="bilinear", align_corners=False)
    return up.view(n, t, *up.shape[1:])


def prepare_teacher(teacher: VideoClassifier, bn_mode: str = "train") -> VideoClassifier:
    """Teacher for distillation: never trained (no grads), BN and dropout in train mode by default.

    The paper keeps the teacher's BatchNorm in train mode (batch statistics, running stats updated);
    ``bn_mode='frozen'`` uses its running statistics instead.
    """
    teacher.requires_grad_(False)
    teacher.train(bn_mode == "train")
    return teacher


@dataclass
class StepLoss:
    total: Tensor
    ce: Tensor
    kd: Tensor
    logits: Tensor


def distill_loss(
    student: VideoClassifier,
    teacher: VideoClassifier | None,
    clip: Tensor,
    targets: Tensor,
    kd: KDConfig,
    student_resolution: int,
    cls_mode: str = "ce",
    student_input: str = "direct",
) -> StepLoss:
    """``CE(student(down(clip)), y) + lambda * KD(student, teacher(clip))`` on one batch.

    ``clip`` is the teacher-resolution normalised crop; with ``kd.method == 'none'`` the teacher is
    not run (the no-KD baseline) and may be None. ``student_input`` is the student's
    :func:`model_input` mode.
    """
    spec = KD_LOSSES[kd.method]
    s_logits, s_feats = student(model_input(clip, student_resolution, student_input))
    ce = classification_loss(s_logits, targets, cls_mode)
    if spec.fn is None:
        zero = ce.new_zeros(())
        return StepLoss(ce, ce.detach(), zero, s_logits)
    if teacher is None:
        raise ValueError(f"kd.method={kd.method!r} needs a teacher")
    with torch.no_grad():
        t_logits, t_feats = teacher(clip)
    term = spec.fn(
        Branch(s_logits, s_feats, student.fc),
        Branch(t_logits, t_feats, teacher.fc),
        temperature=kd.temperature,
        align=kd.align,
    )
    total = ce + kd_weight(kd.method, kd.weight) * term
    return StepLoss(total, ce.detach(), term.detach(), s_logits)
