"""Frame indices: which source frames the extractor keeps, and which stored frames a clip uses."""

from __future__ import annotations

import numpy as np


def extraction_indices(
    num_frames: int, fps: float, sample: str, *, every: int = 1, target_fps: float = 4.0, count: int = 16
) -> list[int]:
    """Source frame indices kept by the extractor (sorted, unique).

    ``all``: every frame; ``every``: every ``every``-th; ``fps``: about ``target_fps`` frames a second
    (all frames when the source is slower or its rate is unknown); ``count``: ``count`` frames at the
    centres of equal parts of the video (fewer when the video is shorter).
    """
    if num_frames <= 0:
        return []
    if sample == "all":
        idx = np.arange(num_frames)
    elif sample == "every":
        idx = np.arange(0, num_frames, every)
    elif sample == "fps":
        step = fps / target_fps if fps > 0 else 1.0
        idx = np.arange(num_frames) if step <= 1 else np.floor(np.arange(0, num_frames, step)).astype(int)
    elif sample == "count":
        idx = ((np.arange(count) + 0.5) * num_frames / count).astype(int)
    else:
        raise ValueError(f"unknown frame sampling {sample!r}: all, every, fps or count")
    return np.unique(np.clip(idx, 0, num_frames - 1)).tolist()


def tsn_indices(
    num_frames: int, num_segments: int, train: bool, rng: np.random.Generator | None = None
) -> np.ndarray:
    """TSN: one frame from each of ``num_segments`` equal segments (mmaction2's ``SampleFrames``).

    Training draws a random frame inside each segment; testing takes each segment's centre. Videos with
    fewer frames than segments repeat frames.
    """
    if num_frames <= 0:
        raise ValueError("a clip needs at least one frame")
    if train:
        rng = rng if rng is not None else np.random.default_rng()
        avg = num_frames // num_segments
        if avg > 0:
            return np.arange(num_segments) * avg + rng.integers(0, avg, size=num_segments)
        return (np.arange(num_segments) * num_frames / num_segments).astype(int)  # fewer frames: spread
    avg = num_frames / num_segments
    return np.minimum((np.arange(num_segments) * avg + avg / 2).astype(int), num_frames - 1)


def dense_indices(
    num_frames: int, clip_len: int, interval: int, train: bool, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Dense clips (SlowOnly, Swin): ``clip_len`` frames ``interval`` apart.

    Training starts the window at random, testing centres it; a video shorter than the window loops.
    """
    if num_frames <= 0:
        raise ValueError("a clip needs at least one frame")
    span = clip_len * interval
    room = num_frames - span
    if room <= 0:
        start = 0
    elif train:
        rng = rng if rng is not None else np.random.default_rng()
        start = int(rng.integers(0, room + 1))
    else:
        start = room // 2
    return (start + np.arange(clip_len) * interval) % num_frames
