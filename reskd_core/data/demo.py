"""A generated video dataset whose classes need fine spatial detail AND motion (the paper's premise).

Each video shows one teardrop-shaped object (a disc with a tail tapering behind it, like a comet)
moving head first over a textured, noisy background. The object carries a fine grating (period
2.5-4 px: stripes of some orientation, or a checker) which is one half of the class; the direction
it moves in is the other half, seen in the motion and, in single frames, in the coarse shape (where
the tail points). At full resolution both cues are visible; down-sampled by 4 the grating is averaged
away (an anti-aliased resize leaves a few percent of its contrast), so only the motion half of the
class can be told. Everything else is nuisance drawn per video: position, size, speed, heading
jitter, colours, grating period and phase, background texture and noise. Deterministic from a seed
(each video from ``(seed, class, index)``).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

PATTERNS = ("hstripes", "vstripes", "dstripes", "checker")
DIRECTIONS = ("right", "left", "down", "up")
_HEADING = {"right": 0.0, "left": math.pi, "down": math.pi / 2, "up": -math.pi / 2}  # image y points down
_GRATING = {"hstripes": math.pi / 2, "vstripes": 0.0, "dstripes": math.pi / 4, "checker": 0.0}
MAX_CLASSES = len(PATTERNS) * len(DIRECTIONS)


def class_names(classes: int) -> list[str]:
    """``pattern-direction`` names, pattern varying fastest: up to 8 classes use two patterns
    (horizontal, vertical stripes) x up to four directions (right, left, down, up); more classes add
    diagonal stripes and a checker."""
    if not 2 <= classes <= MAX_CLASSES:
        raise ValueError(f"demo data has 2 to {MAX_CLASSES} classes, got {classes}")
    p = 2 if classes <= 8 else 4
    return [f"{PATTERNS[i % p]}-{DIRECTIONS[i // p]}" for i in range(classes)]


def render_video(
    label_name: str, rng: np.random.Generator, height: int, width: int, frames: int
) -> np.ndarray:
    """``(frames, height, width, 3)`` uint8 frames of one video of class ``label_name``."""
    pattern, direction = label_name.split("-")
    side = min(height, width)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)

    # background: smooth random texture (a few low-frequency waves) in a random colour
    bg = np.zeros((height, width), np.float32)
    for _ in range(4):
        f = rng.uniform(0.5, 3.0, 2) * 2 * math.pi / side
        bg += np.sin(xx * f[0] + yy * f[1] + rng.uniform(0, 2 * math.pi))
    bg_colour = rng.uniform(60, 190, 3).astype(np.float32)
    bg = bg_colour + rng.uniform(10, 25) * bg[..., None] / 2

    radius = rng.uniform(0.12, 0.17) * side
    heading = _HEADING[direction] + rng.uniform(-0.25, 0.25)
    d = np.array([math.cos(heading), math.sin(heading)], np.float32)
    speed = rng.uniform(0.3, 0.6) * side / max(frames - 1, 1)  # travels 30-60 % of the frame
    mid = np.array([rng.uniform(0.35, 0.65) * width, rng.uniform(0.35, 0.65) * height], np.float32)
    start = mid - d * speed * (frames - 1) / 2

    period = rng.uniform(2.5, 4.0)
    phase = rng.uniform(0, 2 * math.pi, 2)
    theta = _GRATING[pattern] + rng.uniform(-0.1, 0.1)
    # the object stands out from the background (lighter on dark, darker on light), so its shape is coarse
    sign = 1.0 if bg_colour.mean() < 125 else -1.0
    base = np.clip(bg_colour + sign * rng.uniform(55, 85) + rng.uniform(-20, 20, 3), 45, 210).astype(
        np.float32
    )
    delta = rng.uniform(35, 55) * (1 + rng.uniform(-0.3, 0.3, 3)).astype(np.float32)  # mostly luminance
    noise = rng.uniform(3, 10)
    tail = rng.uniform(1.8, 2.6) * radius

    out = np.empty((frames, height, width, 3), np.uint8)
    w = 2 * math.pi / period
    for t in range(frames):
        img = bg.copy()
        centre = start + d * speed * t
        box, m = _teardrop(xx, yy, centre, d, radius, tail)
        if box is not None:
            u, v = xx[box] - centre[0], yy[box] - centre[1]  # the grating moves with the object
            g = np.sin(w * (u * math.cos(theta) + v * math.sin(theta)) + phase[0])
            if pattern == "checker":
                g = g * np.sin(w * (-u * math.sin(theta) + v * math.cos(theta)) + phase[1])
            m = m[..., None]
            img[box] = img[box] * (1 - m) + (base + delta * g[..., None]) * m
        img += rng.standard_normal(img.shape, dtype=np.float32) * noise
        out[t] = np.clip(img, 0, 255)
    return out


def _teardrop(
    xx: np.ndarray, yy: np.ndarray, centre: np.ndarray, d: np.ndarray, radius: float, length: float
):
    """``(box, coverage)``: a disc at ``centre`` whose tail tapers to a point ``length`` behind it.

    Coverage has a one-pixel soft edge; ``box`` is the bounding box (None when off the frame).
    """
    h, w = xx.shape
    end = centre - d * length
    x0, x1 = (
        max(0, int(min(centre[0], end[0]) - radius - 1)),
        min(w, int(max(centre[0], end[0]) + radius + 2)),
    )
    y0, y1 = (
        max(0, int(min(centre[1], end[1]) - radius - 1)),
        min(h, int(max(centre[1], end[1]) + radius + 2)),
    )
    if x0 >= x1 or y0 >= y1:
        return None, None
    box = (slice(y0, y1), slice(x0, x1))
    px, py = xx[box] - centre[0], yy[box] - centre[1]
    disc = np.clip(radius - np.sqrt(px**2 + py**2) + 0.5, 0.0, 1.0)
    along = -(px * d[0] + py * d[1])  # distance behind the centre
    across = np.abs(px * d[1] - py * d[0])
    tail = np.clip(radius * (1 - along / length) - across + 0.5, 0.0, 1.0) * (along >= 0)
    return box, np.maximum(disc, tail)


def write_mp4(path: Path, frames: np.ndarray, fps: int = 12, crf: int = 18) -> None:
    """Encode ``(T, H, W, 3)`` uint8 RGB frames as H.264 (yuv420p) in an mp4 with PyAV."""
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        # x264's SIMD paths gave different bytes for the same frames now and then (seen at 40 and 64 px);
        # its C path is deterministic, and at demo sizes the cost is a few seconds in all
        stream.options = {"crf": str(crf), "preset": "veryfast", "threads": "1", "x264-params": "asm=0"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def make_demo_dataset(
    out_dir: str | Path,
    classes: int = 8,
    videos_per_class: int = 30,
    size: int | tuple[int, int] = 128,
    frames: int = 16,
    seed: int = 0,
    fps: int = 12,
) -> Path:
    """Write ``out_dir/videos/*.mp4``, ``annotations.txt`` (an mmaction list) and ``classes.txt``.

    ``size``: square side or ``(height, width)``. The list has no split: extract it with
    ``extract.val_fraction`` (the demo recipe holds out 25 % of each class as ``val``). Returns ``out_dir``.
    """
    height, width = (size, size) if isinstance(size, int) else size
    if min(height, width) < 16 or frames < 1 or videos_per_class < 1:
        raise ValueError("demo data needs size >= 16, frames >= 1 and videos_per_class >= 1")
    names = class_names(classes)
    out = Path(out_dir)
    videos = out / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    lines = []
    for label, name in enumerate(names):
        for j in range(videos_per_class):
            rng = np.random.default_rng([seed, label, j])
            rel = f"{name}_{j:03d}.mp4"
            write_mp4(videos / rel, render_video(name, rng, height, width, frames), fps=fps)
            lines.append(f"{rel} {label}")
    (out / "classes.txt").write_text("\n".join(names) + "\n")
    (out / "annotations.txt").write_text("\n".join(lines) + "\n")
    log.info(
        "demo data: %d videos of %d classes (%dx%d, %d frames) in %s",
        len(lines),
        classes,
        height,
        width,
        frames,
        out,
    )
    return out
