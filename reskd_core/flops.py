"""GFLOPs per video, counted by torch's maintained ``FlopCounterMode``.

Convention: multiply-adds over the whole network (convolutions, linear layers, attention matmuls),
the one under which ResNet-50 at 224px is about 4.1 GFLOPs a frame. ``FlopCounterMode`` counts a
multiply-add as two FLOPs, so its total is halved. The model runs on the ``meta`` device: shapes are
propagated, nothing is computed, so counting a 16-frame R50 takes well under a second.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from reskd_core.models import build_model


@dataclass(frozen=True)
class FlopsRow:
    model: str
    frames: int
    resolution: int
    gflops: float
    params_m: float

    def as_dict(self) -> dict:
        return asdict(self)


def count_gflops(model: torch.nn.Module, frames: int, resolution: int) -> float:
    """Multiply-adds (in 1e9) of one forward pass on one ``frames x resolution^2`` video."""
    device = next(model.parameters()).device
    x = torch.zeros(1, frames, 3, resolution, resolution, device=device)
    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    model.train(was_training)
    return counter.get_total_flops() / 2 / 1e9


def flops_table(
    model: str, frames: int, resolutions: list[int], num_classes: int = 400, width: int | None = None
) -> list[FlopsRow]:
    """GFLOPs per video of ``model`` at each resolution (one row each)."""
    with torch.device("meta"):
        net = build_model(model, num_classes=num_classes, num_frames=frames, width=width)
    params = sum(p.numel() for p in net.parameters()) / 1e6
    return [
        FlopsRow(model, frames, r, round(count_gflops(net, frames, r), 3), round(params, 2))
        for r in resolutions
    ]
