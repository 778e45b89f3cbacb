"""A generated video dataset true to the paper's premise: the class survives low resolution, the network's
fit to the input scale does not.

Each video shows one large glyph (a letter, the class) drifting and turning slowly over a textured
background, among smaller distractor glyphs (digits and symbols, never a class letter) and clutter
strokes. The class letter is drawn in one of the DejaVu faces that ship with matplotlib (Sans, Serif,
Mono; regular, bold, oblique), with a per-video affine jitter (scale, rotation, shear, aspect). It is
50-70 % of the frame tall (:data:`GLYPH_HEIGHT`), so at a quarter of the frame size it is still a shape
14-20 px tall that a person reads at a glance; what a standard-stride network trained from scratch at that
size lacks is spatial resolution in its last stage (a 1x1 map), not information in the input.

Nothing about the label is in a colour, a position, a size, a border or the motion: those are drawn per
video, independently of the class. Deterministic from a seed: each video from ``(seed, class, index)``,
encoded with x264's plain C path, so the same seed gives byte-identical files. The splits (train, val,
test) are written as three mmaction lists plus ``annotations.txt`` with every video (see
:func:`make_demo_dataset`).
"""

from __future__ import annotations

import logging
import math
from functools import lru_cache
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

# Class letters: pairwise distinct under +-20 deg rotation, shear and any of the faces (no M/W, N/Z,
# b/d/p/q, O/Q, I/l). The first 8 are the default demo's.
LETTERS = "AEHKRSTX" + "CFGLPUVY"
MAX_CLASSES = len(LETTERS)
DISTRACTORS = "234579#%&?@+"  # never a class: clutter the network has to learn to ignore
FACES = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf",
)
STROKES = (2, 6)  # clutter strokes a video: at least, below
DISTRACTOR_COUNT = (2, 5)  # distractor glyphs a video: at least, below
GLYPH_HEIGHT = (0.5, 0.7)  # the class letter's height, a share of the frame's short side
MAX_TURN = 0.35  # radians either way: the letter's tilt
_GLYPH_PX = 96  # glyphs are rendered once at this size, then warped (anti-aliased) to their place


def class_names(classes: int) -> list[str]:
    """``letter-X`` names of the first ``classes`` letters of :data:`LETTERS`."""
    if not 2 <= classes <= MAX_CLASSES:
        raise ValueError(f"demo data has 2 to {MAX_CLASSES} classes, got {classes}")
    return [f"letter-{c}" for c in LETTERS[:classes]]


def _font_dir() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


@lru_cache(maxsize=256)
def glyph_mask(char: str, face: str) -> np.ndarray:
    """Coverage in [0, 1] of ``char`` in ``face``, tightly cropped, about :data:`_GLYPH_PX` px tall."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(str(_font_dir() / face), _GLYPH_PX)
    left, top, right, bottom = font.getbbox(char)
    img = Image.new("L", (right - left + 4, bottom - top + 4), 0)
    ImageDraw.Draw(img).text((2 - left, 2 - top), char, fill=255, font=font)
    return np.asarray(img, np.float32) / 255.0


def _paste(img: np.ndarray, mask: np.ndarray, matrix: np.ndarray, colour: np.ndarray) -> None:
    """Blend ``colour`` into ``img (H, W, 3)`` where ``mask``, placed by the 2x3 ``matrix`` (mask px ->
    frame px), covers it. Only the glyph's bounding box is warped."""
    from PIL import Image

    height, width = img.shape[:2]
    mh, mw = mask.shape
    corners = matrix @ np.array([[0, mw, 0, mw], [0, 0, mh, mh], [1, 1, 1, 1]], np.float64)
    x0, y0 = (max(0, int(np.floor(v)) - 1) for v in corners.min(axis=1))
    x1, y1 = min(width, int(np.ceil(corners[0].max())) + 1), min(height, int(np.ceil(corners[1].max())) + 1)
    if x0 >= x1 or y0 >= y1:
        return
    # warp at 2x and box-filter down: a cheap anti-alias for shrinking a 96 px glyph to a few px
    s = 2
    to_box = np.array([[s, 0, -s * x0], [0, s, -s * y0], [0, 0, 1.0]]) @ np.vstack([matrix, [0, 0, 1.0]])
    inv = np.linalg.inv(to_box)[:2].ravel()  # PIL maps output pixels back to input pixels
    warped = Image.fromarray((mask * 255).astype(np.uint8)).transform(
        ((x1 - x0) * s, (y1 - y0) * s), Image.Transform.AFFINE, tuple(inv), resample=Image.Resampling.BILINEAR
    )
    m = np.asarray(warped, np.float32).reshape(y1 - y0, s, x1 - x0, s).mean(axis=(1, 3))[..., None] / 255.0
    box = img[y0:y1, x0:x1]
    box *= 1 - m
    box += colour * m


def _affine(
    centre: np.ndarray, size: tuple[int, int], height_px: float, angle: float, shear: float, aspect: float
) -> np.ndarray:
    """2x3 matrix placing a ``size = (h, w)`` mask, ``height_px`` tall, rotated and sheared, at ``centre``."""
    h, w = size
    k = height_px / h
    c, s = math.cos(angle), math.sin(angle)
    linear = np.array([[c, -s], [s, c]]) @ np.array([[1.0, shear], [0.0, 1.0]]) @ np.diag([k * aspect, k])
    offset = centre - linear @ np.array([w / 2, h / 2])
    return np.hstack([linear, offset[:, None]])


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A smooth random texture in a random colour, plus a few clutter strokes, ``(H, W, 3)`` float."""
    side = min(height, width)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    tex = np.zeros((height, width), np.float32)
    for _ in range(5):
        f = rng.uniform(0.5, 6.0, 2) * 2 * math.pi / side * rng.choice([-1, 1], 2)
        tex += np.sin(xx * f[0] + yy * f[1] + rng.uniform(0, 2 * math.pi)) / 5
    colour = rng.uniform(130, 230, 3).astype(np.float32)  # light: glyphs are darker (see render_video)
    tint = rng.uniform(-1, 1, 3).astype(np.float32)
    bg = colour + rng.uniform(15, 35) * tex[..., None] * (1 + 0.5 * tint)
    for _ in range(int(rng.integers(*STROKES))):  # strokes as wide as a glyph's, in any direction
        p, q = rng.uniform(0, 1, 2) * [width, height], rng.uniform(0, 1, 2) * [width, height]
        d = q - p
        t = np.clip(((xx - p[0]) * d[0] + (yy - p[1]) * d[1]) / max(float(d @ d), 1e-6), 0, 1)
        dist = np.hypot(xx - p[0] - t * d[0], yy - p[1] - t * d[1])
        m = np.clip(rng.uniform(0.8, 2.0) * side / 64 - dist + 0.5, 0, 1)[..., None]
        bg = bg * (1 - m) + rng.uniform(30, 225, 3).astype(np.float32) * m
    return bg


def render_video(
    label_name: str, rng: np.random.Generator, height: int, width: int, frames: int
) -> np.ndarray:
    """``(frames, height, width, 3)`` uint8 frames of one video of class ``label_name`` (``letter-X``)."""
    char = label_name.removeprefix("letter-")
    side = min(height, width)
    bg = _background(rng, height, width)
    bg_mean = bg.mean(axis=(0, 1))

    def sprite(ch: str, rel_height: tuple[float, float], speed_frac: float) -> dict:
        mask = glyph_mask(ch, FACES[int(rng.integers(len(FACES)))])
        tall = rng.uniform(*rel_height) * side
        angle = rng.uniform(-MAX_TURN, MAX_TURN)
        centre = rng.uniform(0.3, 0.7, 2) * [width, height]
        heading = rng.uniform(0, 2 * math.pi)
        speed = rng.uniform(0.3, 1.0) * speed_frac * side / max(frames - 1, 1)
        # darker than the background, like ink (any hue, independent of the class). Contrast polarity is
        # not a per-video nuisance of natural video; drawn at random, it kept networks trained on labels at
        # chance for 8-30 epochs (docs/data.md)
        colour = np.clip(bg_mean - rng.uniform(60, 110) + rng.uniform(-40, 40, 3), 0, 255)
        return dict(
            mask=mask,
            tall=tall,
            angle=angle,
            spin=rng.uniform(-0.15, 0.15) / max(frames - 1, 1),
            shear=rng.uniform(-0.2, 0.2),
            aspect=rng.uniform(0.8, 1.25),
            start=centre - 0.5 * speed * (frames - 1) * np.array([math.cos(heading), math.sin(heading)]),
            velocity=speed * np.array([math.cos(heading), math.sin(heading)]),
            colour=colour.astype(np.float32),
        )

    distractors = [
        sprite(DISTRACTORS[int(rng.integers(len(DISTRACTORS)))], (0.12, 0.2), 0.6)
        for _ in range(int(rng.integers(*DISTRACTOR_COUNT)))
    ]
    for d in distractors:  # spread over the whole frame, the class letter stays in its middle part
        d["start"] = rng.uniform(0.05, 0.95, 2) * [width, height]
    main = sprite(char, GLYPH_HEIGHT, 0.3)
    noise = rng.uniform(3, 9)

    out = np.empty((frames, height, width, 3), np.uint8)
    for t in range(frames):
        img = bg.copy()
        for sp in [*distractors, main]:
            centre = sp["start"] + sp["velocity"] * t
            matrix = _affine(
                centre, sp["mask"].shape, sp["tall"], sp["angle"] + sp["spin"] * t, sp["shear"], sp["aspect"]
            )
            _paste(img, sp["mask"], matrix, sp["colour"])
        img += rng.standard_normal(img.shape, dtype=np.float32) * noise
        out[t] = np.clip(img, 0, 255)
    return out


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


def _write_one(job: tuple[Path, str, tuple[int, int, int], int, int, int, int]) -> None:
    path, name, rng_key, height, width, frames, fps = job
    write_mp4(path, render_video(name, np.random.default_rng(list(rng_key)), height, width, frames), fps=fps)


def make_demo_dataset(
    out_dir: str | Path,
    classes: int = 8,
    videos_per_class: int = 200,
    size: int | tuple[int, int] = 128,
    frames: int = 8,
    seed: int = 0,
    fps: int = 12,
    workers: int = 0,
) -> Path:
    """Write ``out_dir/videos/*.mp4``, ``annotations.txt`` (an mmaction list) and ``classes.txt``.

    ``size``: square side or ``(height, width)``. The list has no split column: extraction holds out
    ``extract.val_fraction`` and ``extract.test_fraction`` of each class (the demo recipe: 20 % val,
    30 % test), chosen by a hash of the file name, so the splits are fixed by the names. ``workers``:
    processes that render and encode (0: one per core); every video comes from its own
    ``(seed, class, index)`` generator, so the files do not depend on it. Returns ``out_dir``.
    """
    import os
    from concurrent.futures import ProcessPoolExecutor

    height, width = (size, size) if isinstance(size, int) else size
    if min(height, width) < 16 or frames < 1 or videos_per_class < 1:
        raise ValueError("demo data needs size >= 16, frames >= 1 and videos_per_class >= 1")
    names = class_names(classes)
    out = Path(out_dir)
    videos = out / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    lines, jobs = [], []
    for label, name in enumerate(names):
        for j in range(videos_per_class):
            rel = f"{name}_{j:03d}.mp4"
            jobs.append((videos / rel, name, (seed, label, j), height, width, frames, fps))
            lines.append(f"{rel} {label}")
    workers = min(workers or os.cpu_count() or 1, len(jobs))
    if workers > 1:
        # spawn: the caller may hold threads (torch, Ray) that a fork would copy in a broken state
        import multiprocessing

        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            list(pool.map(_write_one, jobs, chunksize=16))
    else:
        for job in jobs:
            _write_one(job)
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


def make_demo_shards(
    root: str | Path,
    *,
    classes: int = 8,
    videos_per_class: int = 4,
    size: int | tuple[int, int] = 128,
    frames: int = 16,
    short_side: int = 128,
    val_fraction: float = 0.25,
    workers: int = 0,
) -> str:
    """Demo videos under ``root/data`` extracted by the real extractor into ``root/shards`` (splits
    ``train`` and ``val``), for benchmarks and smoke runs; returns the shards' path."""
    from reskd_core.config import ExtractConfig
    from reskd_core.data.extract import extract

    data = make_demo_dataset(
        Path(root) / "data", classes, videos_per_class, size, frames, seed=0, workers=workers
    )
    cfg = ExtractConfig(
        annotations=str(data / "annotations.txt"),
        video_root=str(data / "videos"),
        labels_file=str(data / "classes.txt"),
        val_fraction=val_fraction,
        short_side=short_side,
        workers=workers,
    )
    shards = str(Path(root) / "shards")
    extract(cfg, shards)
    return shards
