"""Fixtures of the data tests: a small generated demo dataset (real mp4 files) and its shards."""

from __future__ import annotations

import pytest

from reskd_core.config import ExtractConfig
from reskd_core.data.demo import make_demo_dataset
from reskd_core.data.extract import extract


@pytest.fixture(scope="session")
def small_videos(tmp_path_factory):
    """4 classes x 6 videos, 64x64, 8 frames: ``root`` with videos/, annotations.txt, classes.txt."""
    return make_demo_dataset(
        tmp_path_factory.mktemp("demo"), classes=4, videos_per_class=6, size=64, frames=8
    )


def demo_extract_config(root, **kw) -> ExtractConfig:
    fields = dict(
        annotations=str(root / "annotations.txt"),
        video_root=str(root / "videos"),
        labels_file=str(root / "classes.txt"),
        short_side=64,
        val_fraction=0.25,
        videos_per_shard=6,
        row_group_size=2,
        workers=2,
    )
    return ExtractConfig(**{**fields, **kw})


@pytest.fixture(scope="session")
def small_shards(small_videos, tmp_path_factory):
    """The demo videos extracted to local shards: 16 train and 8 val videos, 3 + 2 shards, row groups of 2."""
    out = tmp_path_factory.mktemp("shards") / "demo"
    report = extract(demo_extract_config(small_videos), str(out))
    assert report.ok and report.skipped == 0
    return out
