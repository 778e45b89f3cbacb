import math

import pytest
import torch

from reskd_core.config import load_config
from reskd_core.models import build_model
from reskd_core.optim import (
    build_optimizer,
    build_scheduler,
    optimizer_step,
    param_groups,
    scaled_lr,
    warmup_cosine,
)


def test_lr_scales_linearly_with_the_global_batch():
    cfg = load_config(None, ["optim.lr=0.01", "optim.lr_batch=64"])
    assert scaled_lr(cfg.optim, 64) == pytest.approx(0.01)
    assert scaled_lr(cfg.optim, 256) == pytest.approx(0.04)
    assert scaled_lr(cfg.optim, 16) == pytest.approx(0.0025)


def test_param_groups_split_decay_and_backbone_lr():
    model = build_model("tsn_tiny", num_classes=5)
    cfg = load_config(None, ["optim.backbone_lr_mult=0.1", "optim.weight_decay=1e-4"])
    groups = {g["name"]: g for g in param_groups(model, cfg.optim, lr=1.0)}
    assert set(groups) == {"backbone", "backbone_no_decay", "head", "head_no_decay"}
    assert groups["backbone"]["lr"] == pytest.approx(0.1) and groups["head"]["lr"] == 1.0
    assert groups["backbone_no_decay"]["weight_decay"] == 0 and groups["head"]["weight_decay"] == 1e-4
    # every norm scale/shift and bias is undecayed, every conv/linear weight decayed
    assert all(p.ndim == 1 for g in ("backbone_no_decay", "head_no_decay") for p in groups[g]["params"])
    assert all(p.ndim > 1 for g in ("backbone", "head") for p in groups[g]["params"])
    assert sum(len(g["params"]) for g in groups.values()) == len(list(model.parameters()))
    head = {id(p) for p in groups["head"]["params"] + groups["head_no_decay"]["params"]}
    assert head == {id(model.fc.weight), id(model.fc.bias)}


def test_decay_everywhere_when_asked():
    model = build_model("tsn_tiny", num_classes=5)
    cfg = load_config(None, ["optim.no_decay_norm_bias=false"])
    assert {g["name"] for g in param_groups(model, cfg.optim, 1.0)} == {"backbone", "head"}


def test_sgd_is_nesterov_with_momentum():
    model = build_model("tsn_tiny", num_classes=5)
    cfg = load_config(None, [])
    opt = build_optimizer(model, cfg.optim, global_batch=64)
    assert isinstance(opt, torch.optim.SGD)
    assert all(g["nesterov"] and g["momentum"] == 0.9 for g in opt.param_groups)
    adam = build_optimizer(model, load_config(None, ["optim.name=adamw"]).optim, 64)
    assert isinstance(adam, torch.optim.AdamW)


def test_warmup_then_cosine_per_iteration():
    f = warmup_cosine(warmup_iters=4, total_iters=14)
    assert [f(i) for i in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert f(4) == pytest.approx(1.0)
    assert f(9) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert f(14) == pytest.approx(0.0, abs=1e-12)
    values = [f(i) for i in range(4, 15)]
    assert values == sorted(values, reverse=True)


def test_scheduler_keeps_group_ratios():
    model = build_model("tsn_tiny", num_classes=3)
    cfg = load_config(None, ["optim.backbone_lr_mult=0.5", "optim.lr=0.64", "optim.lr_batch=64"])
    opt = build_optimizer(model, cfg.optim, global_batch=64)
    sched = build_scheduler(opt, warmup_iters=2, total_iters=10)
    seen = []
    for _ in range(10):
        seen.append({g["name"]: g["lr"] for g in opt.param_groups})
        opt.step()
        sched.step()
    assert seen[0]["head"] == pytest.approx(0.32) and seen[1]["head"] == pytest.approx(0.64)
    assert all(s["backbone"] == pytest.approx(0.5 * s["head"]) for s in seen)
    assert seen[-1]["head"] < 0.05


def test_optimizer_step_clears_clips_and_steps():
    model = torch.nn.Linear(3, 1, bias=False)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    params = list(model.parameters())
    model.weight.grad = torch.full_like(model.weight, 100.0)  # a stale gradient: cleared first
    before = model.weight.detach().clone()
    loss = (model(torch.ones(1, 3)) * 10).sum()  # gradient 10 on each weight, norm 10 * sqrt(3)
    optimizer_step(loss, opt, params, clip_grad=1.0)
    assert model.weight.grad.norm().item() == pytest.approx(1.0, rel=1e-5)
    assert torch.allclose(before - model.weight.detach(), torch.full((1, 3), 1 / math.sqrt(3)))


def test_optimizer_step_with_a_disabled_scaler_is_the_plain_step():
    steps = []
    for scaler in (None, torch.amp.GradScaler("cpu", enabled=False)):
        torch.manual_seed(0)
        model = torch.nn.Linear(3, 2)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        optimizer_step(model(torch.ones(4, 3)).pow(2).mean(), opt, list(model.parameters()), scaler=scaler)
        steps.append(model.weight.detach().clone())
    assert torch.equal(*steps)
