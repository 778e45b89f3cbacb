"""Training checkpoints: one ``checkpoint.pt`` holding everything needed to resume or to deploy.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so it loads with
``torch.load(weights_only=True)``: model, optimizer, scheduler and AMP scaler states, the epoch, RNG
states, the whole config as a plain dict, the class names and the last evaluation. It lives on local
disk or at an ``s3://`` URI; a directory (a Ray Train checkpoint) stands for its ``checkpoint.pt``.
"""

from __future__ import annotations

import copy
import io
import logging
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import ValidationError
from torch import nn

from reskd_core.config import Config
from reskd_core.data import storage
from reskd_core.models import VideoClassifier

log = logging.getLogger(__name__)

FORMAT = "reskd-checkpoint"
VERSION = 1
FILENAME = "checkpoint.pt"
REQUIRED = ("format", "version", "role", "model", "epoch", "config", "num_classes")


class CheckpointError(ValueError):
    """A file that is missing, unreadable, or not a reskd checkpoint; the message names it."""


def capture_rng() -> dict[str, Any]:
    """Python, NumPy and torch (CPU and CUDA) generator states, in weights_only-loadable types."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, py_state, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "python": [version, list(py_state), py_gauss],
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng` (CUDA states only when the device count matches)."""
    version, py_state, py_gauss = state["python"]
    random.setstate((version, tuple(py_state), py_gauss))
    n = state["numpy"]
    # .cpu(): a checkpoint loaded with map_location='cuda' has these tensors on the GPU
    keys = n["keys"].cpu().numpy().astype(np.uint32)
    np.random.set_state((n["kind"], keys, n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"].cpu())
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda])


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DDP (or similar) wrapper."""
    return getattr(model, "module", model)


def build_state(
    *,
    role: str,
    model: nn.Module,
    config: Config,
    epoch: int,
    num_classes: int,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    scaler: Any = None,
    class_names: list[str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The checkpoint dict; ``epoch`` is the number of finished epochs. ``extra`` must be plain data."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "role": role,
        "model": unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "epoch": int(epoch),
        "rng": capture_rng(),
        "config": config.model_dump(mode="json"),
        "num_classes": int(num_classes),
        "class_names": list(class_names or []),
        **extra,
    }


def checkpoint_file(uri: str) -> str:
    """``uri`` itself, or ``uri/checkpoint.pt`` when ``uri`` is a directory (a Ray checkpoint)."""
    if uri.endswith(".pt") or uri.endswith(".pth"):
        return uri
    try:
        fs, path = storage.filesystem(uri)
        if fs.isdir(path):
            return storage.join(uri, FILENAME)
    except (OSError, ValueError):
        pass
    return uri


def save_checkpoint(state: dict[str, Any], uri: str) -> str:
    """Write ``state`` to a file, a directory (as ``checkpoint.pt``) or ``s3://`` URI, whole or not at all."""
    target = uri if uri.endswith((".pt", ".pth")) else storage.join(uri, FILENAME)
    if storage.is_remote(target):
        fd, tmp = tempfile.mkstemp(suffix=".pt")
        os.close(fd)
        torch.save(state, tmp)
        storage.put_file(tmp, target)
    else:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        tmp = f"{target}.tmp-{os.getpid()}"
        torch.save(state, tmp)
        os.replace(tmp, target)
    return target


def load_checkpoint(uri: str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``; :class:`CheckpointError` names the file if it fails."""
    path = checkpoint_file(str(uri))
    try:
        data = storage.read_bytes(path)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} does not exist") from None
    except (OSError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path} could not be read: {e}") from None
    try:
        state = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types for damaged files (RuntimeError, UnpicklingError, ...)
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"checkpoint {path} is corrupt or not a PyTorch checkpoint ({len(data)} bytes): {reason}"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path} is not a reskd checkpoint (no format={FORMAT!r} marker)")
    missing = [k for k in REQUIRED if k not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} is incomplete: missing {', '.join(missing)}")
    if state["version"] > VERSION:
        raise CheckpointError(
            f"checkpoint {path} has version {state['version']}; this reskd reads <= {VERSION}"
        )
    return state


def checkpoint_config(state: dict[str, Any]) -> Config:
    """The config the checkpoint was trained with.

    Settings this version of reskd does not know (a checkpoint from a newer or older version) are
    dropped with a warning; any other mismatch raises :class:`CheckpointError`.
    """
    data = copy.deepcopy(state["config"])
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        errors = e.errors()
        unknown = [err["loc"] for err in errors if err["type"] == "extra_forbidden"]
        if len(unknown) != len(errors):
            raise CheckpointError(f"the checkpoint's config does not fit this reskd: {e}") from None
    for loc in unknown:
        node = data
        for key in loc[:-1]:
            node = node[key]
        node.pop(loc[-1], None)
    log.warning(
        "checkpoint config settings unknown to this reskd, ignored: %s",
        ", ".join(".".join(map(str, loc)) for loc in unknown),
    )
    return Config.model_validate(data)


def model_from_checkpoint(state: dict[str, Any]) -> tuple[VideoClassifier, int]:
    """Rebuild the network a checkpoint holds and load its weights; returns ``(model, resolution)``.

    The stored config's teacher or student section (by the checkpoint's role) names the architecture.
    """
    from reskd_core.job import model_for, spec_for  # job.py builds on this module: import at use

    cfg = checkpoint_config(state)
    spec = spec_for(cfg, state["role"])
    model = model_for(cfg, state["role"], state["num_classes"], pretrained=False)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        raise CheckpointError(
            f"checkpoint weights do not fit {spec.name}: {str(e).splitlines()[0]}"
        ) from None
    return model, spec.resolution
