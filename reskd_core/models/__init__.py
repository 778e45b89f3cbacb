"""Model builders: one short function per architecture, looked up by name at the boundary only.

Every builder returns a :class:`VideoClassifier` whose ``forward`` gives ``(logits, features)``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from reskd_core.models.classifier import VideoClassifier
from reskd_core.models.resnet2d import BasicBlock, Bottleneck, ResNet2d
from reskd_core.models.resnet3d import ResNet3dSlowOnly
from reskd_core.models.swin import Swin3dBackbone

R50_LAYERS = (3, 4, 6, 3)
R50S_STRIDES = (1, 1, 2, 2)  # the paper's R50-S: no down-sampling in res2->res3, for super-low resolution


def _classifier(backbone, num_classes: int, dropout: float) -> VideoClassifier:
    return VideoClassifier(backbone, num_classes, dropout, min_resolution=backbone.total_stride)


def tsn_r18(*, num_classes: int, width: int = 64, dropout: float = 0.5) -> VideoClassifier:
    """TSN over a ResNet-18, average consensus."""
    return _classifier(ResNet2d(BasicBlock, (2, 2, 2, 2), width), num_classes, dropout)


def tsn_r50(*, num_classes: int, width: int = 64, dropout: float = 0.5) -> VideoClassifier:
    """TSN over a ResNet-50 (about 4.1 GFLOPs a frame at 224)."""
    return _classifier(ResNet2d(Bottleneck, R50_LAYERS, width), num_classes, dropout)


def tsn_r152(*, num_classes: int, width: int = 64, dropout: float = 0.5) -> VideoClassifier:
    """TSN over a ResNet-152 (the paper's large teacher for model distillation)."""
    return _classifier(ResNet2d(Bottleneck, (3, 8, 36, 3), width), num_classes, dropout)


def tsn_r50s(*, num_classes: int, width: int = 64, dropout: float = 0.5) -> VideoClassifier:
    """TSN over R50-S: ResNet-50 with stage strides (1, 1, 2, 2), a 2x larger last map."""
    return _classifier(ResNet2d(Bottleneck, R50_LAYERS, width, R50S_STRIDES), num_classes, dropout)


def tsm_r50(
    *, num_classes: int, num_frames: int = 8, width: int = 64, dropout: float = 0.5
) -> VideoClassifier:
    """TSM: ResNet-50 with a temporal shift (1/8 channels each way) in every residual branch."""
    backbone = ResNet2d(Bottleneck, R50_LAYERS, width, shift_segments=num_frames)
    return _classifier(backbone, num_classes, dropout)


def slowonly_r50(*, num_classes: int, width: int = 64, dropout: float = 0.5) -> VideoClassifier:
    """SlowOnly-R50: 3D ResNet-50, temporal kernels in res4/res5, no temporal stride."""
    return _classifier(ResNet3dSlowOnly(R50_LAYERS, width), num_classes, dropout)


def swin3d_t(*, num_classes: int, dropout: float = 0.5) -> VideoClassifier:
    """Video Swin-T (torchvision ``swin3d_t``)."""
    return _classifier(Swin3dBackbone("t"), num_classes, dropout)


def swin3d_s(*, num_classes: int, dropout: float = 0.5) -> VideoClassifier:
    """Video Swin-S (torchvision ``swin3d_s``)."""
    return _classifier(Swin3dBackbone("s"), num_classes, dropout)


def swin3d_b(*, num_classes: int, dropout: float = 0.5) -> VideoClassifier:
    """Video Swin-B (torchvision ``swin3d_b``)."""
    return _classifier(Swin3dBackbone("b"), num_classes, dropout)


# Tiny variants: the same code paths at a size that trains in seconds on a CPU.
def tsn_tiny(*, num_classes: int, width: int = 16, dropout: float = 0.0) -> VideoClassifier:
    """TSN over a 4-block ResNet (one BasicBlock a stage), base width 16."""
    return _classifier(ResNet2d(BasicBlock, (1, 1, 1, 1), width), num_classes, dropout)


def tsn_tiny_s(*, num_classes: int, width: int = 16, dropout: float = 0.0) -> VideoClassifier:
    """``tsn_tiny`` with the R50-S strides (1, 1, 2, 2)."""
    return _classifier(ResNet2d(BasicBlock, (1, 1, 1, 1), width, R50S_STRIDES), num_classes, dropout)


def tsm_tiny(
    *, num_classes: int, num_frames: int = 8, width: int = 16, dropout: float = 0.0
) -> VideoClassifier:
    """``tsn_tiny`` with TSM's temporal shift."""
    backbone = ResNet2d(BasicBlock, (1, 1, 1, 1), width, shift_segments=num_frames)
    return _classifier(backbone, num_classes, dropout)


def slowonly_tiny(*, num_classes: int, width: int = 8, dropout: float = 0.0) -> VideoClassifier:
    """SlowOnly with one bottleneck a stage, base width 8."""
    return _classifier(ResNet3dSlowOnly((1, 1, 1, 1), width), num_classes, dropout)


def swin3d_tiny(*, num_classes: int, dropout: float = 0.0) -> VideoClassifier:
    """Video Swin with one block a stage and 24 channels."""
    return _classifier(Swin3dBackbone("tiny"), num_classes, dropout)


MODELS: dict[str, Callable[..., VideoClassifier]] = {
    f.__name__: f
    for f in (
        tsn_r18,
        tsn_r50,
        tsn_r152,
        tsn_r50s,
        tsm_r50,
        slowonly_r50,
        swin3d_t,
        swin3d_s,
        swin3d_b,
        tsn_tiny,
        tsn_tiny_s,
        tsm_tiny,
        slowonly_tiny,
        swin3d_tiny,
    )
}


def build_model(
    name: str,
    *,
    num_classes: int,
    num_frames: int = 8,
    width: int | None = None,
    dropout: float | None = None,
) -> VideoClassifier:
    """Build an architecture by name; raises ``ValueError`` listing the known names for an unknown one."""
    try:
        builder = MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(MODELS)}") from None
    accepted = inspect.signature(builder).parameters
    kwargs: dict = {"num_classes": num_classes}
    if "num_frames" in accepted:
        kwargs["num_frames"] = num_frames
    if width is not None:
        if "width" not in accepted:
            raise ValueError(f"model {name!r} has no width option (ResNets only)")
        kwargs["width"] = width
    if dropout is not None:
        kwargs["dropout"] = dropout
    return builder(**kwargs)


def model_summary(name: str) -> str:
    """First docstring line of a builder (what ``reskd models`` prints)."""
    doc = MODELS[name].__doc__ or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


__all__ = ["MODELS", "VideoClassifier", "build_model", "model_summary"]
