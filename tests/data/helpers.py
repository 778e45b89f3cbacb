"""Small real video files for the data tests (PyAV encoders: H.264 in mp4, VP8 in webm)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np


def frames(n: int = 6, height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    """``(n, h, w, 3)`` uint8: smooth colour ramps that move, different for each seed."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = rng.uniform(0, 255, 3)
    out = np.empty((n, height, width, 3), np.uint8)
    for t in range(n):
        for c in range(3):
            out[t, ..., c] = (base[c] + 2 * xx + 3 * yy + 10 * t * (c + 1)) % 256
    return out


def write_video(
    path: Path, n: int = 6, height: int = 48, width: int = 64, seed: int = 0, fps: int = 10
) -> Path:
    """Encode a video at ``path`` (codec chosen by the suffix: .webm -> VP8, otherwise H.264)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".webm" and "decord" in sys.modules:
        # decord bundles its own FFmpeg libraries; once it is loaded, PyAV's libvpx encoder fails to
        # open in the same process, so the webm is encoded in a fresh one
        args = f"{str(path)!r}, {n}, {height}, {width}, {seed}, {fps}"
        code = f"from tests.data.helpers import write_video; write_video({args})"
        subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])
        return path
    import av

    codec = "libvpx" if path.suffix == ".webm" else "libx264"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = height, width
        stream.pix_fmt = "yuv420p"
        for f in frames(n, height, width, seed):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        container.mux(stream.encode())
    return path
