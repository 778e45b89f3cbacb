"""One arm of the study: a model trained one way (architecture, width, resolution, input mode, KD method
and teacher), its whole config at a seed, its network, and the shapes a meta-device pass tells before
training it."""

from __future__ import annotations

import inspect
from dataclasses import dataclass

from reskd_core.config import Config, ModelConfig


@dataclass(frozen=True)
class Arm:
    """One training job of the study (trained once per seed)."""

    model: str
    resolution: int
    width: int | None = None
    input: str = "direct"
    kd: str = "none"
    teacher: str | None = None  # key of the arm it distils from
    teacher_bn: str = "train"
    kd_weight: float | None = None  # lambda; None: the method's default
    role: str = "student"  # "teacher": trained with schedule.teacher_epochs, distilled from by others

    @property
    def key(self) -> str:
        """A readable unique name, e.g. ``tsn_tiny@56+pixel_mse<tsn_tiny@112``."""
        key = f"{self.model}{f'-w{self.width}' if self.width else ''}@{self.resolution}"
        if self.input != "direct":
            key += f"-{self.input}"
        if self.kd != "none":
            key += f"+{self.kd}<{self.teacher}"
            if self.teacher_bn != "train":
                key += f"[bn={self.teacher_bn}]"
            if self.kd_weight is not None:
                key += f"[lambda={self.kd_weight:g}]"
        return key

    def spec(self, dropout: float) -> ModelConfig:
        """The arm's model section (``teacher`` or ``student``) of its config."""
        return ModelConfig(
            name=self.model, resolution=self.resolution, width=self.width, dropout=dropout, input=self.input
        )


def default_width(model: str) -> int | None:
    """The builder's default base width (the big teacher gets the student's, so channels match)."""
    from reskd_core.models import MODELS

    param = inspect.signature(MODELS[model]).parameters.get("width") if model in MODELS else None
    return None if param is None else param.default


def arm_config(cfg: Config, arm: Arm, seed: int, teacher: Arm | None) -> Config:
    """The whole config of one arm at one seed (what its MLflow run records as params)."""
    update: dict = {
        "seed": seed,
        "kd": cfg.kd.model_copy(
            update={"method": arm.kd, "teacher_bn": arm.teacher_bn, "weight": arm.kd_weight or cfg.kd.weight}
        ),
    }
    if arm.role == "teacher":
        update["teacher"] = arm.spec(cfg.teacher.dropout)
    else:
        update["student"] = arm.spec(cfg.student.dropout)
        if teacher is not None:
            update["teacher"] = teacher.spec(cfg.teacher.dropout)
    return cfg.model_copy(update=update)


@dataclass(frozen=True)
class ArmShape:
    """What a meta-device forward pass tells about an arm before training it."""

    channels: int
    feature_hw: tuple[int, int]
    gflops: float  # per video at the arm's input size (a down-up arm pays the loaded size)
    params_m: float


def check_arms(arms: list[Arm], frames: int, num_classes: int, load_resolution: int) -> dict[str, ArmShape]:
    """Shapes of every arm's last map; ``ValueError`` naming the arm when one cannot run as planned
    (input below the network's minimum, pixel_mse between different channel counts, unknown teacher)."""
    import torch

    from reskd_core.flops import count_gflops
    from reskd_core.models import build_model

    shapes: dict[str, ArmShape] = {}
    keys = {a.key for a in arms}
    for arm in arms:
        size = load_resolution if arm.input == "down_up" else arm.resolution
        try:
            with torch.device("meta"):
                net = build_model(arm.model, num_classes=num_classes, num_frames=frames, width=arm.width)
                _, feats = net(torch.zeros(1, frames, 3, size, size))
        except ValueError as e:
            raise ValueError(f"study arm {arm.key}: {e}") from None
        shapes[arm.key] = ArmShape(
            int(feats.shape[2]),
            (int(feats.shape[3]), int(feats.shape[4])),
            round(count_gflops(net, frames, size), 3),
            round(sum(p.numel() for p in net.parameters()) / 1e6, 2),
        )
    for arm in arms:
        if arm.kd == "none":
            continue
        if arm.teacher not in keys:
            raise ValueError(f"study arm {arm.key}: its teacher {arm.teacher} is not an arm of the study")
        if arm.kd == "pixel_mse" and shapes[arm.key].channels != shapes[arm.teacher].channels:
            raise ValueError(
                f"study arm {arm.key}: pixel_mse needs equal channels, student {shapes[arm.key].channels} "
                f"vs teacher {shapes[arm.teacher].channels}"
            )
    return shapes
