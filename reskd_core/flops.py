"""GFLOPs per video, counted by torch's maintained ``FlopCounterMode``, under one of two conventions.

``macs`` (the default): multiply-adds over the whole network (convolutions, linear layers, attention
matmuls), the one under which ResNet-50 at 224px is about 4.09 GFLOPs a frame. ``FlopCounterMode``
counts a multiply-add as two FLOPs, so its total is halved.

``fvcore``: what fvcore's ``FlopCountAnalysis`` counts by default, and so mmaction2's ``get_flops``
(through mmengine's copy of fvcore's handles): the same multiply-adds plus the normalisation layers,
per element of the normalised input ``x``:

- BatchNorm at inference: 2 per element with an affine scale and shift (``x * a + b``), 1 without;
  BatchNorm with batch statistics (training): 5 with affine, 4 without;
- LayerNorm and GroupNorm: 5 with affine, 4 without (fvcore's "rough estimate").

ResNet-50 at 224px is then 4.11 GFLOPs a frame (11.1M BatchNorm elements at 2 each). ReLU, pooling
and the residual additions count nothing in either convention. fvcore's other default handles (2-D
upsampling, ``adaptive_avg_pool2d``, ``grid_sampler``) are not counted: no model here calls those ops
(pooling is a ``mean``, which fvcore skips too).

The model runs on the ``meta`` device: shapes are propagated, nothing is computed, so counting a
16-frame R50 takes well under a second.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from torch.utils.flop_counter import FlopCounterMode

from reskd_core.models import build_model

aten = torch.ops.aten

Convention = Literal["macs", "fvcore"]
CONVENTIONS: tuple[Convention, ...] = ("macs", "fvcore")


def _norm_flops(x: Any, weight: Any, stored_stats: bool) -> int:
    """fvcore's rule, per element of ``x``: with stored statistics (BatchNorm at inference) 2, else 5;
    one less without an affine weight. Formulas get shapes: ``weight`` is None when there is none."""
    per = 2 if stored_stats else 5
    return math.prod(x) * (per if weight is not None else per - 1)


def _batch_norm(
    x: Any, weight: Any, bias: Any, mean: Any, var: Any, training: bool, *_: Any, **__: Any
) -> int:
    return _norm_flops(x, weight, stored_stats=not training)


def _batch_norm_no_training(x: Any, weight: Any, *_: Any, **__: Any) -> int:
    return _norm_flops(x, weight, stored_stats=True)


def _batch_norm_legit(x: Any, weight: Any, bias: Any, *args: Any, **__: Any) -> int:
    """``_native_batch_norm_legit``: ``(x, w, b, mean, var, training, ...)`` or, without running
    statistics, ``(x, w, b, training, ...)``."""
    training = args[2] if len(args) > 2 and isinstance(args[2], bool) else args[0]
    return _norm_flops(x, weight, stored_stats=not training)


def _layer_norm(x: Any, normalized_shape: Any, weight: Any, *_: Any, **__: Any) -> int:
    return _norm_flops(x, weight, stored_stats=False)


def _group_norm(x: Any, weight: Any, *_: Any, **__: Any) -> int:
    return _norm_flops(x, weight, stored_stats=False)


# The aten ops a norm layer dispatches to (CPU/meta, cuDNN, and the functional forms export and
# torch.compile trace to), each with fvcore's rule. Their counts are FLOPs as they stand (not halved).
NORM_FORMULAS: dict[Any, Any] = {
    aten.native_batch_norm: _batch_norm,
    aten.cudnn_batch_norm: _batch_norm,
    aten.miopen_batch_norm: _batch_norm,
    aten._native_batch_norm_legit: _batch_norm_legit,
    aten._native_batch_norm_legit_functional: _batch_norm,
    aten._native_batch_norm_legit_no_training: _batch_norm_no_training,
    aten.native_layer_norm: _layer_norm,
    aten.native_group_norm: _group_norm,
}


@dataclass(frozen=True)
class FlopsRow:
    model: str
    frames: int
    resolution: int
    gflops: float
    params_m: float
    convention: str = "macs"

    def as_dict(self) -> dict:
        return asdict(self)


def count_gflops(model: torch.nn.Module, frames: int, resolution: int, convention: str = "macs") -> float:
    """GFLOPs (in 1e9) of one inference forward pass on one ``frames x resolution^2`` video.

    ``convention``: ``macs`` (multiply-adds) or ``fvcore`` (multiply-adds plus normalisation layers,
    see the module docstring). The model runs in eval mode, as fvcore and ``get_flops`` count it.
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"FLOPs convention must be one of {', '.join(CONVENTIONS)}, got {convention!r}")
    device = next(model.parameters()).device
    x = torch.zeros(1, frames, 3, resolution, resolution, device=device)
    norms = NORM_FORMULAS if convention == "fvcore" else {}
    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=norms) as counter:
        model(x)
    model.train(was_training)
    by_op = counter.get_flop_counts().get("Global", {})
    macs = sum(n for op, n in by_op.items() if op not in NORM_FORMULAS) / 2
    return (macs + sum(n for op, n in by_op.items() if op in NORM_FORMULAS)) / 1e9


def flops_table(
    model: str,
    frames: int,
    resolutions: list[int],
    num_classes: int = 400,
    width: int | None = None,
    convention: str = "macs",
) -> list[FlopsRow]:
    """GFLOPs per video of ``model`` at each resolution (one row each), under ``convention``."""
    with torch.device("meta"):
        net = build_model(model, num_classes=num_classes, num_frames=frames, width=width)
    params = round(sum(p.numel() for p in net.parameters()) / 1e6, 2)
    return [
        FlopsRow(model, frames, r, round(count_gflops(net, frames, r, convention), 3), params, convention)
        for r in resolutions
    ]
