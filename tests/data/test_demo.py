"""The demo data: deterministic real mp4 files, three disjoint splits, no colour shortcut (the
full-vs-quarter resolution check is in test_demo_resolution.py)."""

from __future__ import annotations

import hashlib
from collections import Counter

import decord
import pytest

from reskd_core.config import DataConfig
from reskd_core.data.dataset import ClipDataset
from reskd_core.data.demo import class_names, make_demo_dataset
from reskd_core.data.extract import extract
from tests.data.conftest import demo_extract_config
from tests.data.test_extract import reskd


def _digest(root) -> str:
    h = hashlib.sha256()
    for p in sorted((root / "videos").glob("*.mp4")):
        h.update(decord.VideoReader(str(p)).get_batch(list(range(4))).asnumpy().tobytes())
    return h.hexdigest()


def test_demo_data_is_deterministic_from_the_seed(tmp_path):
    a = make_demo_dataset(tmp_path / "a", classes=3, videos_per_class=2, size=40, frames=4, seed=7)
    b = make_demo_dataset(tmp_path / "b", classes=3, videos_per_class=2, size=40, frames=4, seed=7, workers=1)
    c = make_demo_dataset(tmp_path / "c", classes=3, videos_per_class=2, size=40, frames=4, seed=8)
    assert (a / "annotations.txt").read_text() == (b / "annotations.txt").read_text()
    assert (a / "annotations.txt").read_text().splitlines()[-1] == "letter-H_001.mp4 2"
    assert (a / "classes.txt").read_text().split() == ["letter-A", "letter-E", "letter-H"]
    assert _digest(a) == _digest(b) != _digest(c)
    assert [p.read_bytes() for p in sorted((a / "videos").glob("*.mp4"))] == [
        p.read_bytes() for p in sorted((b / "videos").glob("*.mp4"))
    ]  # byte for byte, not only the decoded frames, and whatever the number of worker processes
    frames = decord.VideoReader(str(a / "videos" / "letter-A_000.mp4"))
    assert len(frames) == 4 and frames[0].shape == (40, 40, 3)


def test_no_colour_tells_the_class():
    """No shortcut: the letter's colour and the background's are drawn independently of the class."""
    import numpy as np

    from reskd_core.data.demo import render_video

    means = {}
    for name in class_names(4):
        videos = [render_video(name, np.random.default_rng([0, i]), 64, 64, 2) for i in range(24)]
        means[name] = np.mean([v.mean(axis=(0, 1, 2)) for v in videos], axis=0)
    spread = np.ptp(np.stack(list(means.values())), axis=0)
    assert (spread < 25).all(), means  # class-mean colours within noise of each other (0-255 scale)


def test_extraction_gives_three_disjoint_splits_fixed_by_the_file_names(tmp_path):
    root = make_demo_dataset(tmp_path / "d", classes=2, videos_per_class=10, size=32, frames=2)
    cfg = demo_extract_config(root, short_side=32, val_fraction=0.2, test_fraction=0.3, videos_per_shard=8)
    report = extract(cfg, str(tmp_path / "s"))
    assert report.rows == {"train": 10, "val": 4, "test": 6}, report  # 5 / 2 / 3 of each class
    again = extract(cfg, str(tmp_path / "s2"))
    assert again.rows == report.rows
    ids = {}
    for split in ("train", "val", "test"):
        ds = ClipDataset(str(tmp_path / "s"), split, DataConfig(num_segments=1), 32, train=False)
        ids[split] = {item["id"] for item in ds}
        assert sorted(Counter(i.split("_")[0] for i in ids[split]).values()) == [len(ids[split]) // 2] * 2
    assert (
        not (ids["train"] & ids["val"])
        and not (ids["train"] & ids["test"])
        and not (ids["val"] & ids["test"])
    )
    with pytest.raises(ValueError, match="val_fraction \\+ extract.test_fraction must be below 1"):
        demo_extract_config(root, val_fraction=0.5, test_fraction=0.5)


def test_class_names_and_cli(tmp_path):
    assert class_names(8)[-2:] == ["letter-T", "letter-X"] and class_names(16)[-1] == "letter-Y"
    with pytest.raises(ValueError, match="2 to 16 classes"):
        class_names(17)
    run = reskd(
        "demo-data",
        str(tmp_path / "d"),
        "--classes",
        "2",
        "--videos-per-class",
        "2",
        "--size",
        "32",
        "--frames",
        "3",
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert len(list((tmp_path / "d" / "videos").glob("*.mp4"))) == 4
    assert (tmp_path / "d" / "annotations.txt").read_text().splitlines() == [
        "letter-A_000.mp4 0",
        "letter-A_001.mp4 0",
        "letter-E_000.mp4 1",
        "letter-E_001.mp4 1",
    ]
