"""Decode one video with decord into resized JPEG frames. Runs inside a decoder worker process."""

from __future__ import annotations

import io
from dataclasses import dataclass

from reskd_core.data import storage
from reskd_core.data.sampling import extraction_indices

CHUNK = 32  # frames decoded at once: bounds memory for long untrimmed videos


@dataclass(frozen=True)
class DecodeSpec:
    sample: str = "all"
    every: int = 1
    fps: float = 4.0
    count: int = 16
    short_side: int = 256
    jpeg_quality: int = 90


class VideoError(Exception):
    """A video that cannot be used; the message is the reason listed in errors.json."""


def resized_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """``(h, w)`` with the short side at ``short_side`` and the aspect ratio kept."""
    if height <= width:
        return short_side, max(1, round(width * short_side / height))
    return max(1, round(height * short_side / width)), short_side


def _open(candidates: list[str]):
    """``(source, i)``: the first candidate ``i`` that exists, as decord opens it (a path, or bytes)."""
    for i, uri in enumerate(candidates):
        fs, path = storage.filesystem(uri)
        if not fs.exists(path):
            continue
        if fs.size(path) == 0:
            raise VideoError("empty file (0 bytes)")
        if storage.is_remote(uri):
            return io.BytesIO(fs.cat_file(path)), i
        return path, i
    raise VideoError(
        "file not found" + (f" (also tried {', '.join(candidates[1:])})" if len(candidates) > 1 else "")
    )


def decode_video(candidates: list[str], spec: DecodeSpec) -> dict:
    """Decode the first existing file of ``candidates``: the row fields (``source``: which candidate) or
    ``{"error": reason}``."""
    try:
        return _decode(candidates, spec)
    except VideoError as e:
        return {"error": str(e)}
    except Exception as e:  # decord raises its own error types (and plain ones) for broken streams
        msg = " ".join(str(e).split())
        return {"error": f"cannot decode: {type(e).__name__}: {msg[:300]}"}


def _decode(candidates: list[str], spec: DecodeSpec) -> dict:
    import decord
    from PIL import Image

    src, source = _open(candidates)
    try:
        vr = decord.VideoReader(src, ctx=decord.cpu(0), num_threads=1)
    except Exception as e:
        msg = " ".join(str(e).split())
        raise VideoError(f"not a readable video: {msg[:300]}") from None
    n = len(vr)
    fps = float(vr.get_avg_fps() or 0.0)
    indices = extraction_indices(n, fps, spec.sample, every=spec.every, target_fps=spec.fps, count=spec.count)
    if not indices:
        raise VideoError("no frames")
    frames: list[bytes] = []
    height = width = out_h = out_w = 0
    for i in range(0, len(indices), CHUNK):
        batch = vr.get_batch(indices[i : i + CHUNK]).asnumpy()
        if not height:
            height, width = batch.shape[1:3]
            out_h, out_w = resized_size(height, width, spec.short_side)
        for frame in batch:
            img = Image.fromarray(frame)
            if (out_h, out_w) != (height, width):
                img = img.resize((out_w, out_h), Image.Resampling.BILINEAR)
            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=spec.jpeg_quality)
            frames.append(buf.getvalue())
    return {
        "source": source,
        "fps": fps,
        "width": int(width),
        "height": int(height),
        "num_frames": int(n),
        "frame_indices": indices,
        "frame_height": int(out_h),
        "frame_width": int(out_w),
        "frames": frames,
    }
