"""Clip transforms on uint8 frames ``(T, 3, H, W)``: one crop for every frame of a clip.

Training: multi-scale crop (mmaction2's ``MultiScaleCrop``: side lengths from ``scales`` x the short
side, neighbouring scales for width and height, a random position) resized to the requested resolution,
then an optional horizontal flip. Testing: the short side resized to ``round(8/7 x resolution)`` and the
centre ``resolution`` square cropped (256 -> 224 for the teacher, the paper's 128 -> 112 for students).
Resizing is bilinear and anti-aliased, as a camera or a down-scaler would low-pass the image.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_MEAN = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255
_STD = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255


def eval_short_side(resolution: int) -> int:
    """The short side the test transform resizes to before the centre crop."""
    return round(resolution * 8 / 7)


def _resize_normalise(frames: torch.Tensor, resolution: int) -> torch.Tensor:
    x = frames.float()
    if x.shape[-2:] != (resolution, resolution):
        x = F.interpolate(
            x, size=(resolution, resolution), mode="bilinear", align_corners=False, antialias=True
        )
    return (x - _MEAN) / _STD


def eval_transform(frames: torch.Tensor, resolution: int) -> torch.Tensor:
    """Short side -> ``round(8/7 x resolution)``, centre crop ``resolution``; float32, ImageNet-normalised.

    The crop is taken in source pixels first (the same region the resize-then-crop keeps), so only
    ``resolution`` x ``resolution`` pixels are resized.
    """
    h, w = frames.shape[-2:]
    side = min(h, w) * resolution / eval_short_side(resolution)  # the crop's size in source pixels
    c = max(1, round(side))
    top, left = (h - c) // 2, (w - c) // 2
    return _resize_normalise(frames[..., top : top + c, left : left + c], resolution)


def train_transform(
    frames: torch.Tensor, resolution: int, scales: list[float], flip: bool, rng: np.random.Generator
) -> torch.Tensor:
    """Multi-scale crop to ``resolution`` (+ a random horizontal flip when ``flip``); float32, normalised."""
    h, w = frames.shape[-2:]
    short = min(h, w)
    sizes = [max(1, int(short * s)) for s in scales]
    pairs = [(cw, ch) for i, cw in enumerate(sizes) for j, ch in enumerate(sizes) if abs(i - j) <= 1]
    cw, ch = pairs[rng.integers(len(pairs))]
    top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    out = _resize_normalise(frames[..., top : top + ch, left : left + cw], resolution)
    if flip and rng.random() < 0.5:
        out = out.flip(-1)
    return out
