"""Loader benchmark: clips/s from Parquet shards vs decoding the same clips from the mp4s with decord.

Both sides read the same generated videos (320x256, 120 frames at 24 fps, H.264 with the encoder's
default keyframe interval, like re-encoded Kinetics clips), draw TSN training clips of 8 frames with the
same sampling function and the same transforms (multi-scale crop to 224, normalise), through a
DataLoader with the same worker count and batch size. The decord side is mmaction2's way: open the
video, seek and decode the sampled frames. Also measured: extraction frames/s vs a raw decord decode of
every frame of the same files, with the same number of processes; and the loader's decode limit, the
pure JPEG decode (``torchvision.io.decode_jpeg``, as the loader calls it) of the same sampled frames,
their bytes read beforehand, through the same DataLoader (same workers and batch), and again in process
on one thread beside ``ClipDataset`` iterated in process on one thread: the loader's clips/s as a share
of that limit is what reading, copying, augmenting and batching cost on top of the decode.

    .venv/bin/python benchmarks/loader.py [--videos 24] [--frames 120] [--workers 2] [--epochs 3]

Prints a table and writes benchmarks/results/loader.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from reskd_core.config import DataConfig, ExtractConfig
from reskd_core.data.demo import make_demo_dataset
from reskd_core.data.extract import extract
from reskd_core.data.sampling import tsn_indices
from reskd_core.data.transforms import train_transform

RESULTS = Path(__file__).resolve().parent / "results" / "loader.json"


class DecordClips(IterableDataset):
    """The mmaction2 pipeline on raw videos: VideoReader -> TSN indices -> get_batch -> transforms."""

    def __init__(self, paths: list[str], data: DataConfig, resolution: int, seed: int = 0) -> None:
        self.paths, self.data, self.resolution, self.seed = paths, data, resolution, seed

    def __len__(self) -> int:
        return len(self.paths)

    def __iter__(self):
        import decord

        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        rng = np.random.default_rng([self.seed, worker])
        for path in self.paths[worker::workers]:
            vr = decord.VideoReader(path, num_threads=1)
            idx = tsn_indices(len(vr), self.data.num_segments, True, rng)
            frames = torch.from_numpy(vr.get_batch(idx.tolist()).asnumpy()).permute(0, 3, 1, 2)
            clip = train_transform(frames, self.resolution, self.data.scales, self.data.flip, rng)
            yield {"clip": clip, "label": 0, "id": path}


def clips_per_s(ds, workers: int, batch: int, epochs: int) -> tuple[float, int]:
    """Steady-state clips/s: persistent workers, one warm-up pass, then ``epochs`` timed passes."""
    loader = DataLoader(ds, batch_size=batch, num_workers=workers, persistent_workers=workers > 0)
    for _ in loader:
        pass
    n, t0 = 0, time.perf_counter()
    for _ in range(epochs):
        for b in loader:
            n += len(b["clip"])
    return n / (time.perf_counter() - t0), n


class JpegDecodeOnly(IterableDataset):
    """The decode limit: the sampled frames' JPEG bytes, held in memory, decoded as the loader decodes
    them (one batched ``decode_jpeg`` call a clip), nothing else; yields each clip's frame count."""

    def __init__(self, clips: list[list[bytes]]) -> None:
        self.clips = clips

    def __len__(self) -> int:
        return len(self.clips)

    def __iter__(self):
        import torchvision.io

        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        for jpegs in self.clips[worker::workers]:
            data = [torch.frombuffer(bytearray(j), dtype=torch.uint8) for j in jpegs]
            frames = torchvision.io.decode_jpeg(data, mode=torchvision.io.ImageReadMode.RGB)
            yield {"clip": torch.tensor(len(frames)), "label": 0}


def sampled_jpegs(shards: str, split: str, data: DataConfig, seed: int = 0) -> list[list[bytes]]:
    """Per video of ``split``, the JPEG bytes of the frames a training clip samples (TSN, unique)."""
    import pyarrow.parquet as pq

    from reskd_core.data.shards import read_manifest, split_shards

    rng = np.random.default_rng(seed)
    clips = []
    for entry in split_shards(read_manifest(shards), split, shards):
        for frames in pq.read_table(entry["uri"], columns=["frames"]).column("frames").to_pylist():
            idx = np.unique(tsn_indices(len(frames), data.num_segments, True, rng))
            clips.append([frames[int(i)] for i in idx])
    return clips


def in_process_clips_per_s(ds, epochs: int) -> float:
    """Clips/s of iterating ``ds`` in this process on one torch thread (no DataLoader), after a warm-up."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in ds:
            pass
        n, t0 = 0, time.perf_counter()
        for _ in range(epochs):
            n += sum(1 for _ in ds)
        return n / (time.perf_counter() - t0)
    finally:
        torch.set_num_threads(threads)


def _decode_all(path: str) -> int:
    import decord

    vr = decord.VideoReader(path, num_threads=1)
    n = 0
    for i in range(0, len(vr), 32):
        n += len(vr.get_batch(list(range(i, min(i + 32, len(vr))))).asnumpy())
    return n


def raw_decode_fps(paths: list[str], workers: int) -> float:
    t0 = time.perf_counter()
    with mp.get_context("spawn").Pool(workers) as pool:
        frames = sum(pool.map(_decode_all, paths, chunksize=1))
    return frames / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=24)
    ap.add_argument("--frames", type=int, default=120)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    with tempfile.TemporaryDirectory() as tmp:
        classes = 8
        t0 = time.perf_counter()
        root = make_demo_dataset(
            Path(tmp) / "data",
            classes=classes,
            videos_per_class=max(1, args.videos // classes),
            size=(256, 320),
            frames=args.frames,
            fps=24,
            seed=0,
        )
        gen_s = time.perf_counter() - t0
        paths = sorted(str(p) for p in (root / "videos").glob("*.mp4"))
        video_mb = sum(os.path.getsize(p) for p in paths) / 2**20

        raw_fps = raw_decode_fps(paths, args.workers)
        cfg = ExtractConfig(
            annotations=str(root / "annotations.txt"),
            video_root=str(root / "videos"),
            short_side=256,
            workers=args.workers,
            videos_per_shard=64,
        )
        shards = str(Path(tmp) / "shards")
        report = extract(cfg, shards)
        extract_fps = report.frames_written / report.seconds
        shard_mb = sum(p.stat().st_size for p in Path(shards).glob("*.parquet")) / 2**20

        data = DataConfig(num_segments=8)
        from reskd_core.data.dataset import ClipDataset

        parquet = ClipDataset(shards, "train", data, args.resolution, train=True)
        decord_ds = DecordClips(paths, data, args.resolution)
        decord_cps, n_dec = clips_per_s(decord_ds, args.workers, args.batch, args.epochs)
        parquet_cps, n_pq = clips_per_s(parquet, args.workers, args.batch, args.epochs)
        jpegs = sampled_jpegs(shards, "train", data)
        decode_cps, _ = clips_per_s(JpegDecodeOnly(jpegs), args.workers, args.batch, args.epochs)
        parquet_1t = in_process_clips_per_s(parquet, args.epochs)
        decode_1t = in_process_clips_per_s(JpegDecodeOnly(jpegs), args.epochs)

    result = {
        "setup": {
            "videos": len(paths),
            "frames_per_video": args.frames,
            "size": "320x256",
            "fps": 24,
            "codec": "H.264 (libx264 crf 18, default keyframe interval)",
            "video_mb": round(video_mb, 1),
            "shard_mb": round(shard_mb, 1),
            "sampling": "TSN 8 segments, training (random in segment)",
            "resolution": args.resolution,
            "transform": "multi-scale crop + flip, normalise",
            "loader_workers": args.workers,
            "batch_size": args.batch,
            "timed_epochs": args.epochs,
            "cpu_count": os.cpu_count(),
            "machine": platform.machine(),
            "torch_threads": torch.get_num_threads(),
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
            "generation_s": round(gen_s, 1),
        },
        "loader": {
            "parquet_clips_per_s": round(parquet_cps, 2),
            "decord_clips_per_s": round(decord_cps, 2),
            "ratio": round(parquet_cps / decord_cps, 2),
            "clips_timed": {"parquet": n_pq, "decord": n_dec},
        },
        "decode_limit": {
            "jpeg_decode_clips_per_s": round(decode_cps, 2),
            "loader_share": round(parquet_cps / decode_cps, 3),
            "workers": args.workers,
            "in_process_one_thread": {
                "loader_clips_per_s": round(parquet_1t, 2),
                "jpeg_decode_clips_per_s": round(decode_1t, 2),
                "loader_share": round(parquet_1t / decode_1t, 3),
            },
            "frames_per_clip": data.num_segments,
            "stored_jpeg": "short side 256, quality 90",
        },
        "extraction": {
            "extract_frames_per_s": round(extract_fps, 1),
            "raw_decord_frames_per_s": round(raw_fps, 1),
            "ratio": round(extract_fps / raw_fps, 2),
            "frames": report.frames_written,
            "processes": args.workers,
            "short_side": 256,
            "jpeg_quality": cfg.jpeg_quality,
        },
    }
    rows = [
        ("loader: Parquet shards (clips/s)", result["loader"]["parquet_clips_per_s"]),
        ("loader: decord from mp4 (clips/s)", result["loader"]["decord_clips_per_s"]),
        ("loader ratio (target >= 20x)", f"{result['loader']['ratio']}x"),
        ("JPEG decode alone, same workers (clips/s)", result["decode_limit"]["jpeg_decode_clips_per_s"]),
        ("loader / decode limit (target >= 0.5)", result["decode_limit"]["loader_share"]),
        ("in process, 1 thread: loader (clips/s)", round(parquet_1t, 2)),
        ("in process, 1 thread: JPEG decode alone", round(decode_1t, 2)),
        (
            "in process, 1 thread: loader / decode",
            result["decode_limit"]["in_process_one_thread"]["loader_share"],
        ),
        ("extraction (frames/s)", result["extraction"]["extract_frames_per_s"]),
        ("raw decord decode (frames/s)", result["extraction"]["raw_decord_frames_per_s"]),
        ("extraction / raw decode (target >= 0.8)", f"{result['extraction']['ratio']}x"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"\n{'measure':<{width}}  value\n{'-' * width}  -----")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
