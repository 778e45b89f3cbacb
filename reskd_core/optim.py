"""Optimizer and learning-rate schedule: SGD or AdamW over backbone/head x decay groups, at the linearly
scaled lr, with a per-iteration warm-up then cosine decay; and the backward pass plus optimizer step that
training (:mod:`reskd_core.train`) and the step benchmark (:mod:`reskd_core.bench_distill`) share."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from reskd_core.checkpoint import unwrap
from reskd_core.config import OptimConfig


def scaled_lr(optim: OptimConfig, global_batch: int) -> float:
    """Linear scaling rule: ``lr * global_batch / lr_batch``."""
    return optim.lr * global_batch / optim.lr_batch


def param_groups(model: nn.Module, optim: OptimConfig, lr: float) -> list[dict[str, Any]]:
    """Up to four groups: backbone vs head (``backbone_lr_mult``) x decayed vs not.

    With ``no_decay_norm_bias``, 1-d parameters (norm scales and shifts, biases) get no weight decay.
    """
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, p in unwrap(model).named_parameters():
        if not p.requires_grad:
            continue
        backbone = name.startswith("backbone.")
        decay = not (optim.no_decay_norm_bias and p.ndim <= 1)
        groups.setdefault((backbone, decay), []).append(p)
    out = []
    for (backbone, decay), params in sorted(groups.items()):
        out.append(
            {
                "params": params,
                "lr": lr * (optim.backbone_lr_mult if backbone else 1.0),
                "weight_decay": optim.weight_decay if decay else 0.0,
                "name": f"{'backbone' if backbone else 'head'}{'' if decay else '_no_decay'}",
            }
        )
    return out


def build_optimizer(model: nn.Module, optim: OptimConfig, global_batch: int) -> torch.optim.Optimizer:
    """SGD (Nesterov momentum) or AdamW over :func:`param_groups` at the linearly scaled lr."""
    groups = param_groups(model, optim, scaled_lr(optim, global_batch))
    if optim.name == "sgd":
        return torch.optim.SGD(
            groups,
            lr=groups[0]["lr"],
            momentum=optim.momentum,
            nesterov=optim.nesterov and optim.momentum > 0,
        )
    return torch.optim.AdamW(groups, lr=groups[0]["lr"])


def optimizer_step(
    loss: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    params: list[nn.Parameter],
    *,
    scaler: torch.amp.GradScaler | None = None,
    clip_grad: float | None = None,
) -> None:
    """Backward of ``loss`` and one optimizer step: gradients cleared first, scaled by ``scaler`` when it is
    enabled (fp16 autocast), clipped to a total norm of ``clip_grad`` over ``params`` when set."""
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None and scaler.is_enabled():
        scaler.scale(loss).backward()
        if clip_grad:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, clip_grad)
        scaler.step(optimizer)
        scaler.update()
        return
    loss.backward()
    if clip_grad:
        torch.nn.utils.clip_grad_norm_(params, clip_grad)
    optimizer.step()


def warmup_cosine(warmup_iters: int, total_iters: int) -> Callable[[int], float]:
    """lr factor at iteration ``i``: linear up to 1 over ``warmup_iters``, then cosine down to 0."""
    total_iters = max(total_iters, 1)

    def factor(i: int) -> float:
        if i < warmup_iters:
            return (i + 1) / warmup_iters
        progress = (i - warmup_iters) / max(total_iters - warmup_iters, 1)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return factor


def build_scheduler(
    optimizer: torch.optim.Optimizer, warmup_iters: int, total_iters: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-iteration warm-up + cosine schedule (call ``step()`` after every optimizer step)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(warmup_iters, total_iters))
