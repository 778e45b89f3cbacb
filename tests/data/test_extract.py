"""Extraction to local shards: contents, frame sampling, bad videos, exit status, resume after kill -9."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from PIL import Image

from reskd_core.config import ExtractConfig
from reskd_core.data.extract import extract
from reskd_core.data.sampling import extraction_indices
from reskd_core.data.shards import SCHEMA, read_manifest
from tests.data.helpers import write_video

DOCUMENTED_COLUMNS = [
    "id",
    "video",
    "split",
    "label",
    "labels",
    "segment_start",
    "segment_end",
    "fps",
    "width",
    "height",
    "num_frames",
    "frame_width",
    "frame_height",
    "frame_indices",
    "frames",
]
RESKD = [sys.executable, "-c", "from flows.cli import app; app(prog_name='reskd')"]
REPO = Path(__file__).resolve().parents[2]


def reskd(*args: str, env: dict | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*RESKD, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def test_demo_shards_hold_every_video_with_the_documented_columns(small_shards, small_videos):
    manifest = read_manifest(str(small_shards))
    assert manifest["class_names"] == (small_videos / "classes.txt").read_text().split()
    assert {k: v["videos"] for k, v in manifest["splits"].items()} == {"train": 16, "val": 8}
    assert [s["rows"] for s in manifest["splits"]["train"]["shards"]] == [6, 6, 4]
    assert manifest["splits"]["train"]["shards"][0]["row_groups"] == [2, 2, 2]
    assert manifest["extract"]["short_side"] == 64 and len(manifest["content_hash"]) == 64
    assert json.loads((small_shards / "errors.json").read_text())["errors"] == []

    files = sorted(small_shards.glob("*.parquet"))
    assert len(files) == 5 and not list(small_shards.glob(".*tmp*"))
    df = pd.read_parquet(files[0])
    assert list(df.columns) == DOCUMENTED_COLUMNS == SCHEMA.names
    row = df.iloc[0]
    assert (row.width, row.height, row.num_frames, row.frame_width, row.frame_height) == (64, 64, 8, 64, 64)
    assert list(row.frame_indices) == list(range(8)) and len(row.frames) == 8
    assert Image.open(io.BytesIO(row.frames[0])).format == "JPEG"
    assert row.label == row.labels[0] and row.id == row.video

    query = "SELECT split, label, count(*) FROM read_parquet('{}/*.parquet') GROUP BY ALL ORDER BY 1, 2"
    counts = duckdb.sql(query.format(small_shards)).fetchall()
    assert counts == [("train", c, 4) for c in range(4)] + [("val", c, 2) for c in range(4)]


@pytest.mark.parametrize(
    ("sample", "kw"), [("every", {"every": 3}), ("count", {"count": 4}), ("fps", {"fps": 4.0}), ("all", {})]
)
def test_frame_sampling_and_short_side_resize(tmp_path, sample, kw):
    write_video(tmp_path / "v" / "a.mp4", n=20, height=48, width=64, fps=10)
    (tmp_path / "l.txt").write_text("a.mp4 0\n")
    cfg = ExtractConfig(
        annotations=str(tmp_path / "l.txt"),
        video_root=str(tmp_path / "v"),
        sample=sample,
        short_side=32,
        workers=1,
        **kw,
    )
    extract(cfg, str(tmp_path / "s"))
    row = pd.read_parquet(next((tmp_path / "s").glob("*.parquet"))).iloc[0]
    expected = extraction_indices(20, 10.0, sample, every=cfg.every, target_fps=cfg.fps, count=cfg.count)
    assert list(row.frame_indices) == expected and len(row.frames) == len(expected)
    assert {
        "every": [0, 3, 6, 9, 12, 15, 18],
        "count": [2, 7, 12, 17],
        "fps": [0, 2, 5, 7, 10, 12, 15, 17],
    }.get(sample, list(range(20))) == expected
    assert (row.frame_height, row.frame_width, row.fps) == (32, 43, 10.0)
    assert Image.open(io.BytesIO(row.frames[-1])).size == (43, 32)


def _bad_dataset(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "videos"
    good = [f"good{i}.mp4" for i in range(4)]
    for i, name in enumerate(good):
        write_video(root / name, seed=i)
    (root / "zero.mp4").write_bytes(b"")
    full = (root / "good0.mp4").read_bytes()
    (root / "truncated.mp4").write_bytes(full[: len(full) // 3])
    (root / "text.mp4").write_text("this is not a video\n" * 20)
    (root / "random.mp4").write_bytes(os.urandom(20000))
    write_video(tmp_path / "outside.mp4")  # exists, but outside the root: must never be opened
    lines = [f"{n} 0" for n in good] + [
        "zero.mp4 1",
        "truncated.mp4 1",
        "text.mp4 1",
        "random.mp4 1",
        "missing.mp4 1",
        "../outside.mp4 1",
        f"{root / 'good1.mp4'} 1",
    ]
    ann = tmp_path / "list.txt"
    ann.write_text("\n".join(lines) + "\n")
    return ann, root


def test_bad_videos_are_skipped_listed_and_set_the_exit_status(tmp_path):
    ann, root = _bad_dataset(tmp_path)
    out = tmp_path / "shards"
    args = [
        str(ann),
        "--video-root",
        str(root),
        "--out",
        str(out),
        "--short-side",
        "32",
        "--workers",
        "2",
        "--videos-per-shard",
        "4",
        "--timeout",
        "60",
    ]
    run = reskd("extract", *args)
    assert run.returncode == 1, run.stdout + run.stderr  # 7 of 11 skipped > 5 %
    errors = json.loads((out / "errors.json").read_text())
    reasons = {e["video"]: e["reason"] for e in errors["errors"]}
    assert set(reasons) == {
        "zero.mp4",
        "truncated.mp4",
        "text.mp4",
        "random.mp4",
        "missing.mp4",
        "../outside.mp4",
        str(root / "good1.mp4"),
    }
    assert "empty" in reasons["zero.mp4"] and "not found" in reasons["missing.mp4"]
    assert "escapes the video root" in reasons["../outside.mp4"]
    assert "escapes the video root" in reasons[str(root / "good1.mp4")]
    for name in ("truncated.mp4", "text.mp4", "random.mp4"):
        assert "decod" in reasons[name] or "video" in reasons[name], reasons[name]
    assert errors["skipped"] == 7 and errors["total"] == 11 and errors["ok"] is False
    assert all(e["shard"].endswith(".parquet") for e in errors["errors"])
    ids = (
        set(pd.read_parquet(out, columns=["id"]).id)
        if False
        else set(duckdb.sql(f"SELECT id FROM read_parquet('{out}/*.parquet')").fetchnumpy()["id"])
    )
    assert ids == {f"good{i}.mp4" for i in range(4)}
    assert read_manifest(str(out))["skipped"] == 7

    again = reskd("extract", *args, "--max-error-rate", "0.7", "--json")
    assert again.returncode == 0, again.stdout + again.stderr
    report = json.loads(again.stdout.strip().splitlines()[-1])
    assert report["resumed_shards"] == 3 and report["new_shards"] == 0 and report["skipped"] == 7


def test_bad_configuration_fails_at_once_and_writes_nothing(tmp_path):
    write_video(tmp_path / "v" / "a.mp4")
    (tmp_path / "l.txt").write_text("a.mp4 0\n")
    out = tmp_path / "out"
    for args, message in [
        ([str(tmp_path / "nope.txt"), "--video-root", str(tmp_path / "v")], "does not exist"),
        ([str(tmp_path / "l.txt"), "--video-root", str(tmp_path / "nope")], "video root"),
        ([str(tmp_path / "l.txt"), "--video-root", str(tmp_path / "v"), "--sample", "sometimes"], "sample"),
        ([str(tmp_path / "l.txt"), "--video-root", str(tmp_path / "v"), "--format", "kinetics"], "header"),
    ]:
        run = reskd("extract", *args, "--out", str(out))
        assert run.returncode == 2, run.stdout + run.stderr
        assert message in " ".join(run.stdout.split())
        assert not out.exists()


def test_splits_from_separate_lists_share_one_location(tmp_path):
    for i in range(4):
        write_video(tmp_path / "v" / f"{i}.mp4", seed=i)
    (tmp_path / "train.txt").write_text("0.mp4 0\n1.mp4 1\n")
    (tmp_path / "val.txt").write_text("2.mp4 0\n3.mp4 1\n")
    out = str(tmp_path / "s")
    for split in ("train", "val"):
        cfg = ExtractConfig(
            annotations=str(tmp_path / f"{split}.txt"),
            video_root=str(tmp_path / "v"),
            split=split,
            short_side=32,
            workers=1,
        )
        extract(cfg, out)
    manifest = read_manifest(out)
    assert {k: v["videos"] for k, v in manifest["splits"].items()} == {"train": 2, "val": 2}


def _shard_files(path: Path) -> list[Path]:
    return sorted(path.glob("*.parquet")) if path.exists() else []


def test_resume_after_kill_9_ends_with_the_same_rows(tmp_path):
    root = tmp_path / "videos"
    for i in range(24):
        write_video(root / f"{i:02d}.mp4", n=24, height=64, width=64, seed=i)
    (tmp_path / "l.txt").write_text("".join(f"{i:02d}.mp4 {i % 3}\n" for i in range(24)))
    args = [
        str(tmp_path / "l.txt"),
        "--video-root",
        str(root),
        "--short-side",
        "64",
        "--workers",
        "1",
        "--videos-per-shard",
        "2",
        "--row-group-size",
        "1",
    ]

    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [*RESKD, "extract", *args, "--out", str(killed)],
        cwd=REPO,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while len(_shard_files(killed)) < 3 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # kill -9 the extractor and its decoder workers
    proc.wait(10)
    done_before = len(_shard_files(killed))
    assert 3 <= done_before < 12, "the extraction should have been killed midway"
    assert not (killed / "manifest.json").exists()

    resumed = reskd("extract", *args, "--out", str(killed), "--json")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    report = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert report["resumed_shards"] == done_before and report["new_shards"] == 12 - done_before

    clean = reskd("extract", *args, "--out", str(tmp_path / "clean"), "--json")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert json.loads(clean.stdout.strip().splitlines()[-1])["content_hash"] == report["content_hash"]
    q = "SELECT id, label, frame_indices, frames FROM read_parquet('{}/*.parquet') ORDER BY id"
    assert duckdb.sql(q.format(killed)).fetchall() == duckdb.sql(q.format(tmp_path / "clean")).fetchall()
    assert not [p for p in killed.iterdir() if ".tmp-" in p.name]


def test_a_replaced_video_is_extracted_again(tmp_path):
    for i in range(4):
        write_video(tmp_path / "v" / f"{i}.mp4", seed=i)
    (tmp_path / "l.txt").write_text("".join(f"{i}.mp4 {i % 2}\n" for i in range(4)))
    cfg = ExtractConfig(
        annotations=str(tmp_path / "l.txt"),
        video_root=str(tmp_path / "v"),
        short_side=32,
        videos_per_shard=2,
        workers=1,
    )
    first = extract(cfg, str(tmp_path / "s"))
    write_video(tmp_path / "v" / "3.mp4", n=9, seed=99)
    os.utime(tmp_path / "v" / "3.mp4", (time.time() + 5, time.time() + 5))
    second = extract(cfg, str(tmp_path / "s"))
    assert (second.resumed_shards, second.new_shards) == (1, 1) and second.content_hash != first.content_hash
    assert len(_shard_files(tmp_path / "s")) == 2  # the stale shard is gone
    frames = duckdb.sql(
        f"SELECT num_frames FROM read_parquet('{tmp_path / 's'}/*.parquet') WHERE id = '3.mp4'"
    )
    assert frames.fetchall() == [(9,)]
