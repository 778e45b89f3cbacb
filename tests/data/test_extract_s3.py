"""Extraction from and to a real S3-compatible server (moto's server mode), read back by the loader."""

from __future__ import annotations

import json

import boto3
from torch.utils.data import DataLoader

from reskd_core.config import DataConfig
from reskd_core.data import storage
from reskd_core.data.dataset import ClipDataset
from reskd_core.data.shards import read_manifest
from tests.data.test_extract import reskd


def test_extract_s3_to_s3_and_load(small_videos, s3_bucket):
    fs, _ = storage.filesystem(f"s3://{s3_bucket}")
    fs.put(str(small_videos / "videos"), f"{s3_bucket}/data/videos", recursive=True)
    for name in ("annotations.txt", "classes.txt"):
        fs.put_file(str(small_videos / name), f"{s3_bucket}/data/{name}")
    data, out = f"s3://{s3_bucket}/data", f"s3://{s3_bucket}/shards/demo"

    run = reskd(
        "extract",
        f"{data}/annotations.txt",
        "--video-root",
        f"{data}/videos",
        "--labels-file",
        f"{data}/classes.txt",
        "--val-fraction",
        "0.25",
        "--short-side",
        "48",
        "--videos-per-shard",
        "8",
        "--row-group-size",
        "4",
        "--workers",
        "2",
        "--out",
        out,
        "--json",
    )
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["rows"] == {"train": 16, "val": 8} and report["skipped"] == 0
    assert "testing" not in run.stdout + run.stderr  # the keys are never printed

    keys = {
        o["Key"]
        for o in boto3.client("s3").list_objects_v2(Bucket=s3_bucket, Prefix="shards/demo/")["Contents"]
    }
    manifest = read_manifest(out)
    listed = {f"shards/demo/{s['file']}" for split in manifest["splits"].values() for s in split["shards"]}
    assert keys == listed | {"shards/demo/manifest.json", "shards/demo/errors.json"}

    val = ClipDataset(out, "val", DataConfig(num_segments=4), resolution=42, train=False)
    items = list(val)
    assert len(items) == 8 and items[0]["clip"].shape == (4, 3, 42, 42)
    train = ClipDataset(
        out, "train", DataConfig(num_segments=4), resolution=42, train=True, rank=1, world_size=2
    )
    ids = [i for batch in DataLoader(train, batch_size=3, num_workers=2) for i in batch["id"]]
    assert len(ids) == len(train) == 8

    rerun = reskd(
        "extract",
        f"{data}/annotations.txt",
        "--video-root",
        f"{data}/videos",
        "--labels-file",
        f"{data}/classes.txt",
        "--val-fraction",
        "0.25",
        "--short-side",
        "48",
        "--videos-per-shard",
        "8",
        "--row-group-size",
        "4",
        "--out",
        out,
        "--json",
    )
    again = json.loads(rerun.stdout.strip().splitlines()[-1])
    assert again["new_shards"] == 0 and again["content_hash"] == report["content_hash"]
