"""Frame sampling, transforms and the ClipDataset over real shards: items, ranks, loader workers, epochs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from reskd_core.config import DataConfig
from reskd_core.data.dataset import ClipDataset
from reskd_core.data.sampling import dense_indices, tsn_indices
from reskd_core.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    eval_short_side,
    eval_transform,
    train_transform,
)


def test_tsn_indices():
    assert tsn_indices(16, 8, train=False).tolist() == [1, 3, 5, 7, 9, 11, 13, 15]
    assert tsn_indices(80, 8, train=False).tolist() == [5, 15, 25, 35, 45, 55, 65, 75]
    rng = np.random.default_rng(0)
    draws = np.stack([tsn_indices(80, 8, train=True, rng=rng) for _ in range(200)])
    assert (draws // 10 == np.arange(8)).all()  # one frame inside each segment
    assert len({tuple(d) for d in draws}) > 150  # and a different one each time
    assert tsn_indices(5, 8, train=False).tolist() == [0, 0, 1, 2, 2, 3, 4, 4]  # short videos repeat frames
    assert tsn_indices(5, 8, train=True, rng=rng).tolist() == [0, 0, 1, 1, 2, 3, 3, 4]


def test_dense_indices():
    assert dense_indices(100, 8, 8, train=False).tolist() == list(range(18, 82, 8))
    starts = {int(dense_indices(100, 8, 8, train=True, rng=np.random.default_rng(s))[0]) for s in range(50)}
    assert min(starts) >= 0 and max(starts) <= 36 and len(starts) > 10
    assert dense_indices(10, 4, 4, train=False).tolist() == [0, 4, 8, 2]  # shorter than the window: loops


def _normalised(x: torch.Tensor) -> torch.Tensor:
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x.float() / 255 - mean) / std


def test_eval_transform_is_short_side_8_7_then_centre_crop():
    assert [eval_short_side(r) for r in (224, 112, 56, 40)] == [256, 128, 64, 46]
    frames = torch.randint(0, 256, (2, 3, 128, 160), dtype=torch.uint8)
    out = eval_transform(frames, 112)  # short side already 128: a plain centre crop
    assert torch.allclose(out, _normalised(frames[..., 8:120, 24:136]), atol=1e-5)
    small = eval_transform(frames, 56)  # 128 -> 64, crop 56 == crop 112 of 128, halved
    assert small.shape == (2, 3, 56, 56) and small.dtype == torch.float32
    half = torch.nn.functional.interpolate(
        _normalised(frames[..., 8:120, 24:136]), size=(56, 56), mode="bilinear", antialias=True
    )
    assert torch.allclose(small, half, atol=1e-4)


def test_train_transform_crops_resizes_and_flips():
    frames = torch.arange(64, dtype=torch.uint8).repeat(2, 3, 64, 1)  # a horizontal ramp
    rng = np.random.default_rng(0)
    outs = [train_transform(frames, 32, [1.0, 0.875, 0.75, 0.66], True, rng) for _ in range(40)]
    assert all(o.shape == (2, 3, 32, 32) for o in outs)
    slopes = [float(o[0, 0, 0, -1] - o[0, 0, 0, 0]) for o in outs]
    assert any(s > 0 for s in slopes) and any(s < 0 for s in slopes)  # some flipped
    assert all(
        float(o[0, 0, 0, -1] - o[0, 0, 0, 0]) > 0
        for o in (train_transform(frames, 32, [1.0, 0.75], False, rng) for _ in range(20))
    )


def test_items(small_shards):
    ds = ClipDataset(str(small_shards), "val", DataConfig(num_segments=4), resolution=56, train=False)
    assert (ds.num_classes, ds.multi_label, len(ds)) == (4, False, 8)
    assert ds.class_names[0] == "letter-A"
    item = next(iter(ds))
    assert item["clip"].shape == (4, 3, 56, 56) and item["clip"].dtype == torch.float32
    assert item["label"].dtype == torch.int64 and item["label"].shape == ()
    assert isinstance(item["id"], str) and item["id"].endswith(".mp4")
    assert ds.class_names[int(item["label"])] == item["id"].rsplit("_", 1)[0]
    assert abs(float(item["clip"].mean())) < 2.5  # normalised

    multi = ClipDataset(
        str(small_shards), "val", DataConfig(num_segments=4, multi_label=True), 32, train=False
    )
    label = next(iter(multi))["label"]
    assert label.dtype == torch.float32 and label.shape == (4,) and float(label.sum()) == 1.0


def test_training_ranks_yield_equal_counts_covering_every_video(small_shards):
    data = DataConfig(num_segments=2)
    ranks = [
        ClipDataset(str(small_shards), "train", data, 32, train=True, rank=r, world_size=3, seed=1)
        for r in range(3)
    ]
    assert [len(d) for d in ranks] == [6, 6, 6]  # 16 videos padded to 18
    ids = [[item["id"] for item in d] for d in ranks]
    assert [len(i) for i in ids] == [6, 6, 6]
    flat = [i for rank in ids for i in rank]
    assert len(set(flat)) == 16 and len(flat) == 18

    again = [item["id"] for item in ranks[0]]
    assert again == ids[0]  # same epoch, same order
    orders = set()
    for epoch in range(1, 4):
        for d in ranks:
            d.set_epoch(epoch)
        epoch_ids = [[item["id"] for item in d] for d in ranks]
        assert len({i for rank in epoch_ids for i in rank}) == 16
        orders.add(tuple(epoch_ids[0]))
    assert len(orders) == 3  # reshuffled every epoch


def test_evaluation_yields_every_video_once_in_a_fixed_order(small_shards):
    data = DataConfig(num_segments=2)
    ranks = [
        ClipDataset(str(small_shards), "val", data, 32, train=False, rank=r, world_size=3) for r in range(3)
    ]
    ids = [[item["id"] for item in d] for d in ranks]
    assert [len(i) for i in ids] == [len(d) for d in ranks] == [2, 3, 3]
    flat = [i for rank in ids for i in rank]
    assert sorted(flat) == sorted(set(flat)) and len(flat) == 8
    assert [[item["id"] for item in d] for d in ranks] == ids
    first = next(iter(ranks[0]))["clip"]
    assert torch.equal(first, next(iter(ranks[0]))["clip"])  # test transform: deterministic


@pytest.mark.parametrize("train", [True, False])
def test_dataloader_workers_split_the_rank(small_shards, train):
    ds = ClipDataset(
        str(small_shards), "train", DataConfig(num_segments=2), 32, train=train, rank=0, world_size=2
    )
    batches = list(DataLoader(ds, batch_size=3, num_workers=2))
    ids = [i for b in batches for i in b["id"]]
    assert len(ids) == len(ds) == 8 and len(set(ids)) == 8
    assert batches[0]["clip"].shape == (3, 2, 3, 32, 32) and batches[0]["label"].dtype == torch.int64
    single = [item["id"] for item in ds]
    assert sorted(single) == sorted(ids)


def test_limit_and_errors(small_shards, tmp_path):
    assert len(ClipDataset(str(small_shards), "train", DataConfig(limit=5), 32, train=False)) == 5
    with pytest.raises(ValueError, match="no split 'test'.*train, val"):
        ClipDataset(str(small_shards), "test", DataConfig(), 32, train=False)
    with pytest.raises(ValueError, match="no manifest.json"):
        ClipDataset(str(tmp_path), "train", DataConfig(), 32, train=False)
    with pytest.raises(ValueError, match="rank"):
        ClipDataset(str(small_shards), "train", DataConfig(), 32, train=True, rank=2, world_size=2)
