"""Loading pretrained backbone weights from a file the user gives (nothing is downloaded).

Accepts a torchvision ImageNet ResNet state dict, a torchvision ``swin3d_*`` state dict, or either
wrapped as ``{"state_dict": ...}`` / ``{"model": ...}``. 2D convolution kernels are inflated to 3D
for SlowOnly (I3D inflation: repeat along time, divide by the temporal size).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import Tensor

from reskd_core.models.classifier import VideoClassifier

log = logging.getLogger(__name__)

_HEAD_PREFIXES = ("fc.", "head.")
_WRAPPER_PREFIXES = ("module.", "backbone.")


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Read a state dict with ``weights_only=True``; unwraps common containers and prefixes."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"weights file {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad file for the user
        raise ValueError(f"weights file {path} could not be read as a PyTorch state dict: {e}") from None
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ValueError(f"weights file {path} does not hold a state dict (name -> tensor)")
    out = {}
    for k, v in obj.items():
        for p in _WRAPPER_PREFIXES:
            if k.startswith(p):
                k = k[len(p) :]
        out[k] = v
    return out


def inflate(weight: Tensor, target_shape: torch.Size) -> Tensor:
    """Inflate ``(O, I, kh, kw)`` to ``(O, I, kt, kh, kw)``, keeping the response to a static clip."""
    kt = target_shape[2]
    return weight.unsqueeze(2).repeat(1, 1, kt, 1, 1) / kt


def load_pretrained(model: VideoClassifier, path: str | Path) -> None:
    """Load backbone weights into ``model`` in place; the classifier keeps its fresh initialisation.

    Raises ``ValueError`` naming the file and the keys that do not fit (missing, unexpected, or of the
    wrong shape), so a wrong file never half-loads silently.
    """
    source = {k: v for k, v in read_state_dict(path).items() if not k.startswith(_HEAD_PREFIXES)}
    target = model.backbone.state_dict()
    # Older torchvision files lack BN's num_batches_tracked counters; they are not weights.
    missing = sorted(k for k in set(target) - set(source) if not k.endswith("num_batches_tracked"))
    unexpected = sorted(set(source) - set(target))
    if missing or unexpected:
        raise ValueError(
            f"weights file {path} does not fit this model's backbone: "
            f"{len(missing)} missing keys {missing[:5]}, {len(unexpected)} unexpected keys {unexpected[:5]}"
        )
    fitted: dict[str, Tensor] = {}
    for k, v in source.items():
        want = target[k].shape
        if v.dim() == 4 and len(want) == 5:
            v = inflate(v, want)
        if v.shape != want:
            raise ValueError(
                f"weights file {path}: {k} has shape {tuple(v.shape)}, the model needs {tuple(want)}"
            )
        fitted[k] = v
    model.backbone.load_state_dict(fitted, strict=False)
    log.info("loaded %d backbone tensors from %s", len(fitted), path)
