"""A student trained for a few epochs on the session's demo shards, saved as a reskd checkpoint: the model
the prediction tests label the demo videos with (trained, so its scores differ between videos)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from reskd_core.config import Config
from tests.support.demo_config import demo_shards_config


@dataclass(frozen=True)
class Trained:
    cfg: Config
    shards: str
    videos: Path  # the demo mp4 files the shards were extracted from
    checkpoint: str


@pytest.fixture(scope="session")
def trained_student(demo_shards, tmp_path_factory) -> Trained:
    """tsn_tiny at 32 px (clips read at 64 px and down-sampled), no KD, 12 epochs on 24 videos."""
    from reskd_core.job import make_loaders, model_for
    from reskd_core.train import fit

    tmp = tmp_path_factory.mktemp("trained-student")
    cfg = demo_shards_config(
        demo_shards,
        tmp,
        "student.name=tsn_tiny",
        "student.resolution=32",
        "kd.method=none",
        "data.batch_size=8",
        "optim.lr=0.01",
        "optim.lr_batch=8",
        "schedule.warmup_epochs=0",
        "schedule.student_epochs=12",
        "extract.short_side=64",
    )
    train, val = make_loaders(cfg)
    model = model_for(cfg, "student", 4, pretrained=False, seed=0)
    target = tmp / "checkpoint.pt"

    def keep(_epoch: int, _metrics: dict, ckpt_dir: str | None) -> None:
        shutil.copy(f"{ckpt_dir}/checkpoint.pt", target)

    names = list(train.dataset.class_names)
    fit(cfg, "student", model, train, val, num_classes=4, class_names=names, on_epoch_end=keep)
    torch.set_num_threads(1)
    return Trained(cfg, demo_shards, Path(demo_shards).parent / "data" / "videos", str(target))
