"""Measured inference throughput (videos/s) of a model at several input resolutions.

Resolutions are measured interleaved (round-robin, after warm-up), so a slow drift of the machine
(thermal, another process) hits every resolution alike and their ratios stay comparable.
"""

from __future__ import annotations

import logging
import platform
import statistics
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import torch

from reskd_core.models import build_model

log = logging.getLogger(__name__)


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def resolve_device(device: str) -> torch.device:
    """``device`` as a ``torch.device``; a ``ValueError`` for CUDA where torch sees none."""
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but torch sees no CUDA device")
    return dev


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); nothing to wait for on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device: torch.device) -> str:
    """The GPU's name, or ``cpu (N threads)`` with torch's intra-op thread count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def measure_throughput(
    model: str,
    frames: int,
    resolutions: list[int],
    *,
    batch_size: int = 1,
    device: str = "cpu",
    amp: bool = False,
    channels_last: bool = False,
    warmup: int = 2,
    iters: int = 5,
    rounds: int = 3,
    num_classes: int = 400,
    width: int | None = None,
    batch_sizes: dict[int, int] | None = None,
    progress: Callable[[], None] | None = None,
) -> list[dict]:
    """Videos per second of ``model`` at each resolution; one row per resolution.

    Each round runs ``iters`` timed forward passes per resolution; the row reports the median round.
    ``batch_sizes`` optionally sets a batch per resolution (to fill a GPU at low resolution).
    """
    dev = resolve_device(device)
    net = build_model(model, num_classes=num_classes, num_frames=frames, width=width).to(dev).eval()
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    autocast = (
        torch.autocast(dev.type, dtype=torch.bfloat16 if dev.type == "cpu" else torch.float16)
        if amp
        else nullcontext()
    )
    inputs = {}
    for r in resolutions:
        bs = (batch_sizes or {}).get(r, batch_size)
        inputs[r] = torch.randn(bs, frames, 3, r, r, device=dev)
    timings: dict[int, list[float]] = {r: [] for r in resolutions}
    with torch.inference_mode(), autocast:
        for r in resolutions:
            for _ in range(warmup):
                net(inputs[r])
        sync(dev)
        for _ in range(rounds):
            for r in resolutions:
                start = time.perf_counter()
                for _ in range(iters):
                    net(inputs[r])
                sync(dev)
                timings[r].append(time.perf_counter() - start)
                if progress:
                    progress()
    name = device_name(dev)
    rows = []
    for r in resolutions:
        bs = inputs[r].shape[0]
        med = statistics.median(timings[r])
        rows.append(
            {
                "model": model,
                "frames": frames,
                "resolution": r,
                "batch_size": bs,
                "videos_per_s": round(bs * iters / med, 3),
                "ms_per_batch": round(1000 * med / iters, 3),
                "device": name,
                "amp": amp,
                "channels_last": channels_last,
                "iters": iters,
                "rounds": rounds,
            }
        )
        log.info("%s %dx%d: %.2f videos/s", model, r, r, rows[-1]["videos_per_s"])
    return rows
