"""A trained model's test-time input, made from a video file or from a shard's stored frames.

One chain, shared with evaluation: the test sampling of the clip's frames (:func:`clip_indices`, what
:class:`~reskd_core.data.dataset.ClipDataset` calls at test time), the centre crop of
:func:`~reskd_core.data.transforms.eval_transform` and the model's input of
:func:`~reskd_core.distill.model_input`. Evaluation crops at the loaded size (the teacher's resolution)
and down-samples to the model's; :func:`test_input` does exactly that with ``crop == load_resolution``.

From a video file, decord decodes straight at the size the crop needs (``VideoReader(width=, height=)``,
ffmpeg's scaler, no full-size frame in Python): by default the model's own resolution, so a 56 px student
decodes at 64 px. ``exact=True`` decodes at the loaded size instead, the chain evaluation runs. A shard's
stored JPEGs are decoded the same way: DCT-domain scaled towards the model's size (libjpeg-turbo through
Pillow's draft mode), or, with ``exact``, in full.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torchvision.io

from reskd_core.config import Config
from reskd_core.data import storage
from reskd_core.data.decode import VideoError, resized_size
from reskd_core.data.sampling import dense_indices, extraction_indices, tsn_indices
from reskd_core.data.transforms import eval_short_side, eval_transform
from reskd_core.distill import model_input

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg")


def clip_indices(
    num_frames: int,
    sampling: str,
    num_segments: int,
    frame_interval: int,
    train: bool,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Which of ``num_frames`` (stored) frames a clip uses: TSN segments or one dense window."""
    if sampling == "dense":
        return dense_indices(num_frames, num_segments, frame_interval, train, rng)
    return tsn_indices(num_frames, num_segments, train, rng)


@dataclass(frozen=True)
class InputSpec:
    """How a trained model's test input is made: frames, sizes, and which source frames the shards kept."""

    num_segments: int
    resolution: int  # the model's input
    load_resolution: int  # the size clips are read at in training and evaluation (the teacher's)
    sampling: str = "tsn"
    frame_interval: int = 1
    input_mode: str = "direct"
    stored_short_side: int = 256  # extract.short_side: the stored frames' short side
    keep: str = "all"  # extract.sample: the source frames a shard stores
    keep_every: int = 1
    keep_fps: float = 4.0
    keep_count: int = 16

    @classmethod
    def from_config(cls, cfg: Config, role: str) -> InputSpec:
        """The spec of the ``role`` network a config trained."""
        spec = cfg.teacher if role == "teacher" else cfg.student
        e, d = cfg.extract, cfg.data
        return cls(
            num_segments=d.num_segments,
            resolution=spec.resolution,
            load_resolution=cfg.teacher.resolution,
            sampling=d.sampling,
            frame_interval=d.frame_interval,
            input_mode=spec.input,
            stored_short_side=e.short_side,
            keep=e.sample,
            keep_every=e.every,
            keep_fps=e.fps,
            keep_count=e.count,
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> InputSpec:
        return cls(**json.loads(text))

    def decode_plan(self, exact: bool = False) -> tuple[int, int]:
        """``(short_side, crop)``: the short side a video is decoded at and the size its centre crop is
        taken at. Default: straight at the model's size (``eval_short_side(resolution)``, crop
        ``resolution``: no resize after decoding). ``exact`` (and ``down_up`` input, which keeps the loaded
        scale): the shards' frame size and the loaded size, evaluation's chain."""
        if exact or self.input_mode != "direct":
            return self.stored_short_side, self.load_resolution
        return eval_short_side(self.resolution), self.resolution

    def stored_indices(self, num_frames: int, fps: float) -> list[int]:
        """The source frames extraction keeps (``extract.sample``)."""
        return extraction_indices(
            num_frames, fps, self.keep, every=self.keep_every, target_fps=self.keep_fps, count=self.keep_count
        )

    def clip_indices(self, num_stored: int) -> np.ndarray:
        """Test sampling over ``num_stored`` stored frames (the centre of each segment, or window)."""
        return clip_indices(num_stored, self.sampling, self.num_segments, self.frame_interval, train=False)


def test_input(frames: torch.Tensor, spec: InputSpec, crop: int) -> torch.Tensor:
    """uint8 ``(T, 3, H, W)`` sampled frames -> the model's float input ``(T, 3, r, r)``: the centre crop at
    ``crop`` px (:func:`eval_transform`, ImageNet-normalised), then :func:`model_input` to the model's
    resolution (no-op when ``crop`` is it)."""
    clip = eval_transform(frames, crop)
    return model_input(clip[None], spec.resolution, spec.input_mode)[0].contiguous()


def jpeg_frames(jpegs: Sequence[Any], indices: np.ndarray, short_side: int | None = None) -> torch.Tensor:
    """uint8 ``(T, 3, H, W)``: the stored JPEG frames at ``indices`` (a repeated frame decoded once).

    ``jpegs``: bytes, or pyarrow binary scalars (a shard row's list, read lazily). ``short_side``: decode
    with libjpeg-turbo's DCT-domain scaling (Pillow's draft mode: 1/2, 1/4 or 1/8 of the size, no
    full-size image) at the smallest scale whose short side is still at least ``short_side``."""
    unique, inverse = np.unique(indices, return_inverse=True)
    raw = [jpegs[int(i)] for i in unique]
    raw = [r.as_py() if hasattr(r, "as_py") else r for r in raw]
    if short_side is None:
        data = [torch.frombuffer(bytearray(r), dtype=torch.uint8) for r in raw]
        decoded = torchvision.io.decode_jpeg(data, mode=torchvision.io.ImageReadMode.RGB)
    else:
        decoded = [_scaled_jpeg(r, short_side) for r in raw]
    return torch.stack([decoded[i] for i in inverse.reshape(-1).tolist()])


def _scaled_jpeg(data: bytes, short_side: int) -> torch.Tensor:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        w, h = img.size
        scale = short_side / min(w, h)
        img.draft("RGB", (max(1, math.ceil(w * scale)), max(1, math.ceil(h * scale))))
        rgb = np.asarray(img.convert("RGB"))
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1)


def shard_frames_input(jpegs: Sequence[Any], spec: InputSpec, exact: bool = False) -> torch.Tensor:
    """The model's input from a shard row's stored frames. ``exact`` (and ``down_up`` input): evaluation's
    chain, exactly. Default: the JPEGs decoded DCT-scaled down towards the model's size, then cropped."""
    frames_at = spec.clip_indices(len(jpegs))
    if exact or spec.input_mode != "direct":
        return test_input(jpeg_frames(jpegs, frames_at), spec, spec.load_resolution)
    short_side, crop = spec.decode_plan()
    return test_input(jpeg_frames(jpegs, frames_at, short_side), spec, crop)


def open_video(video: str | bytes) -> str | io.BytesIO:
    """What decord opens: a local path as it is; bytes, or an ``s3://`` object read whole, as a stream.

    Raises :class:`~reskd_core.data.decode.VideoError` for a missing or empty file."""
    if isinstance(video, bytes | bytearray):
        if not video:
            raise VideoError("empty video (0 bytes)")
        return io.BytesIO(video)
    fs, path = storage.filesystem(video)
    if not fs.exists(path):
        raise VideoError("file not found")
    if fs.size(path) == 0:
        raise VideoError("empty file (0 bytes)")
    return io.BytesIO(fs.cat_file(path)) if storage.is_remote(video) else path


def _probe(src: str | io.BytesIO) -> tuple[int, int]:
    """``(height, width)`` of the first video stream, from the container header (no frame decoded)."""
    import av

    try:
        with av.open(src) as container:
            stream = container.streams.video[0]
            size = int(stream.height), int(stream.width)
    except (av.FFmpegError, IndexError, OSError) as e:
        raise VideoError(f"not a readable video: {' '.join(str(e).split())[:200]}") from None
    finally:
        if isinstance(src, io.BytesIO):
            src.seek(0)
    if min(size) <= 0:
        raise VideoError(f"not a readable video: frame size {size[1]}x{size[0]}")
    return size


def decode_frames(video: str | bytes, spec: InputSpec, short_side: int) -> torch.Tensor:
    """uint8 ``(T, 3, H, W)``: the clip's frames decoded by decord with the short side at ``short_side``.
    Raises :class:`~reskd_core.data.decode.VideoError` with the reason."""
    import decord

    src = open_video(video)
    height, width = resized_size(*_probe(src), short_side)
    try:
        vr = decord.VideoReader(src, ctx=decord.cpu(0), width=width, height=height, num_threads=1)
    except Exception as e:  # decord raises its own error types for broken streams
        raise VideoError(f"not a readable video: {' '.join(str(e).split())[:200]}") from None
    stored = spec.stored_indices(len(vr), float(vr.get_avg_fps() or 0.0))
    if not stored:
        raise VideoError("no frames")
    wanted = [stored[i] for i in spec.clip_indices(len(stored)).tolist()]
    unique = sorted(set(wanted))
    try:
        batch = vr.get_batch(unique).asnumpy()  # (U, H, W, 3)
    except Exception as e:
        raise VideoError(f"cannot decode: {type(e).__name__}: {' '.join(str(e).split())[:200]}") from None
    frames = torch.from_numpy(batch).permute(0, 3, 1, 2)
    return frames[[unique.index(i) for i in wanted]]


def video_input(video: str | bytes, spec: InputSpec, exact: bool = False) -> torch.Tensor:
    """The model's input ``(T, 3, r, r)`` from a video (local path, ``s3://`` URI or the file's bytes)."""
    short_side, crop = spec.decode_plan(exact)
    return test_input(decode_frames(video, spec, short_side), spec, crop)
