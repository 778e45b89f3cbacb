"""CUDA paths of the training core: AMP (fp16 + GradScaler) and channels_last, which run only on a GPU.

Skipped without CUDA. On a GPU machine: ``python -m pytest tests/train/test_cuda.py -q -s``.
"""

from __future__ import annotations

import shutil
import time

import pytest
import torch

from reskd_core.checkpoint import load_checkpoint
from reskd_core.config import KDConfig, load_config
from reskd_core.distill import prepare_teacher
from reskd_core.evaluate import evaluate_model
from reskd_core.export import export_model
from reskd_core.models import build_model
from reskd_core.optim import build_optimizer, build_scheduler
from reskd_core.train import fit, place_model, train_one_epoch, use_amp
from tests.train.synthetic import ColourClips, loader

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

BASE = [
    "teacher.name=tsn_tiny",
    "teacher.resolution=64",
    "student.name=tsn_tiny",
    "student.resolution=32",
    "data.num_segments=2",
    "data.batch_size=8",
    "optim.lr=0.05",
    "optim.lr_batch=8",
    "schedule.warmup_epochs=0.5",
    "schedule.teacher_epochs=4",
    "schedule.student_epochs=3",
    "resources.amp=true",
    "resources.channels_last=true",
]


def test_teacher_then_student_with_amp_and_channels_last(tmp_path):
    cfg = load_config(None, BASE + ["kd.method=pixel_mse"])
    dev = torch.device("cuda")
    assert use_amp(cfg.resources, dev) and not use_amp(cfg.resources, torch.device("cpu"))
    torch.manual_seed(0)
    teacher = place_model(build_model("tsn_tiny", num_classes=3, num_frames=2), dev, cfg.resources)
    conv = next(m for m in teacher.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_cuda and conv.weight.is_contiguous(memory_format=torch.channels_last)
    saved = []

    def keep(epoch, metrics, ckpt_dir):
        shutil.copy(f"{ckpt_dir}/checkpoint.pt", tmp_path / f"t{epoch}.pt")
        saved.append(metrics)

    result = fit(
        cfg,
        "teacher",
        teacher,
        loader(ColourClips(res=64)),
        loader(ColourClips(seed=9, res=64)),
        num_classes=3,
        device=dev,
        on_epoch_end=keep,
    )
    losses = [m["train_loss"] for m in saved]
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0], losses
    assert result.best_score >= 90.0, result.history
    state = load_checkpoint(str(tmp_path / "t4.pt"), map_location=dev)
    assert state["scaler"] and state["scaler"]["scale"] > 0  # the AMP scaler state is kept
    assert "cuda" in state["rng"]

    # resume on the GPU from epoch 2: same schedule position, scaler state restored
    again = place_model(build_model("tsn_tiny", num_classes=3, num_frames=2), dev, cfg.resources)
    resumed = fit(
        cfg,
        "teacher",
        again,
        loader(ColourClips(res=64)),
        None,
        num_classes=3,
        device=dev,
        resume=load_checkpoint(str(tmp_path / "t2.pt"), map_location=dev),
    )
    assert resumed.start_epoch == 2 and resumed.epochs_done == 4

    student = place_model(build_model("tsn_tiny", num_classes=3, num_frames=2), dev, cfg.resources)
    s = fit(
        cfg,
        "student",
        student,
        loader(ColourClips(res=64)),
        loader(ColourClips(seed=9, res=64)),
        num_classes=3,
        device=dev,
        teacher=teacher,
    )
    assert (
        all(h["train_kd"] > 0 for h in s.history) and s.history[-1]["train_loss"] < s.history[0]["train_loss"]
    )
    metrics = evaluate_model(
        student, loader(ColourClips(seed=4, res=64)), device=dev, resolution=32, multi_label=False, amp=True
    )
    assert metrics["n"] == 32 and 0 <= metrics["top1"] <= 100
    report = export_model(student, tmp_path / "export", frames=2, resolution=32)  # a CUDA model exports
    assert report.ok, report


def test_r50_teacher_224_to_student_112_steps_with_amp():
    """Real sizes: ResNet-50 TSN, 8 segments, teacher at 224 and student at 112, pixel_mse, AMP."""
    cfg = load_config(None, ["resources.amp=true", "resources.channels_last=true"])
    dev = torch.device("cuda")
    teacher = prepare_teacher(
        place_model(build_model("tsn_r50", num_classes=400, num_frames=8), dev, cfg.resources)
    )
    student = place_model(build_model("tsn_r50", num_classes=400, num_frames=8), dev, cfg.resources)
    opt = build_optimizer(student, cfg.optim, 8)
    clips = ColourClips(n=8 * 6, classes=400, frames=8, res=224)
    batches = [{k: v.to(dev) if torch.is_tensor(v) else v for k, v in b.items()} for b in loader(clips, 8)]
    torch.cuda.reset_peak_memory_stats()
    stats = []
    for _ in range(2):  # the first pass warms cuDNN up; the second is timed
        torch.cuda.synchronize()
        t = time.perf_counter()
        out = train_one_epoch(
            student,
            batches,
            opt,
            build_scheduler(opt, 0, 100),
            device=dev,
            resolution=112,
            kd=KDConfig(method="pixel_mse"),
            teacher=teacher,
            scaler=torch.amp.GradScaler("cuda"),
            amp=True,
            clip_grad=20.0,
        )
        torch.cuda.synchronize()
        stats.append((out, time.perf_counter() - t))
    out, seconds = stats[-1]
    assert out["kd"] > 0 and torch.isfinite(torch.tensor(out["loss"]))
    print(
        f"\ntsn_r50 8x112 student, 8x224 teacher, batch 8, AMP: {1000 * seconds / out['steps']:.0f} ms/step, "
        f"{out['videos'] / seconds:.0f} videos/s, peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB "
        f"on {torch.cuda.get_device_name()}"
    )
