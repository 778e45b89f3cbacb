"""End-to-end speed: videos/s from an mp4 file to labels, teacher vs students, eager PyTorch vs ONNX Runtime.

Each video goes the way ``reskd predict`` takes it (:mod:`reskd_core.data.preprocess`): decode (container
probe, decord straight at the crop's size, TSN test sampling), preprocess (centre crop, normalisation,
down-sampling to the model's input) and the model (batch 1). The teacher runs at 224 px (decoded at a
256 px short side), the students at 112 and 56 px (decoded at 128 and 64), the same network (random
weights), on the same files, configurations interleaved round by round after a warm-up; each row is the
median round. The model-only speed-up is the ratio of the model phase alone, the end-to-end one that of
the whole path. One more row, ``eager-full-decode``, decodes the 56 px student's frames at the source's
full size and resizes them afterwards: the path ``reskd predict`` avoids.

    .venv/bin/python benchmarks/end_to_end.py [--videos 8] [--rounds 5] [--threads 1] [--no-ort]

Defaults (about a minute on 2 cores): TSN-R18, 8 segments, 400 classes, 8 generated videos of 288x384 px
and 48 frames (H.264, one keyframe), batch 1, one intra-op thread for torch and ONNX Runtime.

Prints a table and writes benchmarks/results/end_to_end_cpu.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from reskd_core.data.demo import class_names, render_video, write_mp4
from reskd_core.data.preprocess import InputSpec, decode_frames, test_input
from reskd_core.export import LogitsOnly, example_input, export_onnx
from reskd_core.models import build_model
from reskd_core.throughput import cpu_name

RESULTS = Path(__file__).resolve().parent / "results" / "end_to_end_cpu.json"
TEACHER, STUDENTS = 224, (112, 56)
PHASES = ("decode", "preprocess", "model")


def make_videos(folder: Path, count: int, height: int, width: int, frames: int) -> list[Path]:
    """``count`` generated H.264 mp4 files (demo letters) of ``height x width`` and ``frames`` frames."""
    names = class_names(8)
    paths = []
    for i in range(count):
        path = folder / f"video_{i}.mp4"
        write_mp4(path, render_video(names[i % 8], np.random.default_rng(i), height, width, frames), fps=25)
        paths.append(path)
    return paths


class Backend:
    """One model at one resolution: eager PyTorch or an ONNX Runtime session of the same weights."""

    def __init__(
        self,
        model: torch.nn.Module,
        resolution: int,
        frames: int,
        kind: str,
        tmp: Path,
        threads: int,
        full_decode: int | None = None,
    ):
        self.kind, self.resolution, self.full_decode = kind, resolution, full_decode
        self.spec = InputSpec(num_segments=frames, resolution=resolution, load_resolution=TEACHER)
        if kind.startswith("eager"):
            self.net = LogitsOnly(model).eval()
            self.run = self._eager
        else:
            import onnxruntime as ort

            path = export_onnx(model, tmp / f"model_{resolution}.onnx", example_input(frames, resolution, 1))
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            self.run = self._ort

    @torch.inference_mode()
    def _eager(self, clip: torch.Tensor) -> np.ndarray:
        return self.net(clip).numpy()

    def _ort(self, clip: torch.Tensor) -> np.ndarray:
        return self.session.run(None, {"clip": clip.numpy()})[0]

    def video(self, path: Path) -> dict[str, float]:
        """Seconds of each phase for one video."""
        short_side, crop = self.spec.decode_plan()
        if self.full_decode:  # the path reskd predict avoids: full-size frames, resized after decoding
            short_side = self.full_decode
        t0 = time.perf_counter()
        frames = decode_frames(str(path), self.spec, short_side)
        t1 = time.perf_counter()
        clip = test_input(frames, self.spec, crop)[None]
        t2 = time.perf_counter()
        self.run(clip)
        t3 = time.perf_counter()
        return {"decode": t1 - t0, "preprocess": t2 - t1, "model": t3 - t2}


def measure(backends: list[Backend], videos: list[Path], rounds: int) -> list[dict]:
    """Per backend: the median round's seconds per video of each phase, interleaved round-robin."""
    for b in backends:  # warm-up: first decodes, lazy allocations, ORT's first run
        b.video(videos[0])
    per_round: dict[int, list[dict[str, float]]] = {i: [] for i in range(len(backends))}
    for _ in range(rounds):
        for i, b in enumerate(backends):
            totals = dict.fromkeys(PHASES, 0.0)
            for v in videos:
                for k, s in b.video(v).items():
                    totals[k] += s
            per_round[i].append({k: s / len(videos) for k, s in totals.items()})
    rows = []
    for i, b in enumerate(backends):
        chosen = sorted(per_round[i], key=lambda r: sum(r.values()))[len(per_round[i]) // 2]
        total = sum(chosen.values())
        rows.append(
            {
                "resolution": b.resolution,
                "role": "teacher" if b.resolution == TEACHER else "student",
                "backend": b.kind,
                "decode_short_side": b.full_decode or b.spec.decode_plan()[0],
                "videos_per_s": round(1 / total, 2),
                "model_videos_per_s": round(1 / chosen["model"], 2),
                **{f"{k}_ms": round(1000 * s, 2) for k, s in chosen.items()},
                **{f"{k}_share": round(s / total, 3) for k, s in chosen.items()},
                "rounds_s": [round(sum(r.values()), 4) for r in per_round[i]],
            }
        )
    return rows


def speedups(rows: list[dict]) -> dict:
    """Student vs teacher (end to end, model only, their ratio) per backend; ORT vs eager per resolution."""
    by = {(r["backend"], r["resolution"]): r for r in rows}
    out: dict = {"students": [], "ort_vs_eager": []}
    for backend in sorted({r["backend"] for r in rows} - {"eager-full-decode"}):
        teacher = by[(backend, TEACHER)]
        for res in STUDENTS:
            s = by[(backend, res)]
            e2e = s["videos_per_s"] / teacher["videos_per_s"]
            model = s["model_videos_per_s"] / teacher["model_videos_per_s"]
            out["students"].append(
                {
                    "backend": backend,
                    "resolution": res,
                    "end_to_end_speedup": round(e2e, 2),
                    "model_only_speedup": round(model, 2),
                    "ratio": round(e2e / model, 3),
                    "target_0.7_met": e2e / model >= 0.7,
                }
            )
    if full := by.get(("eager-full-decode", STUDENTS[-1])):
        reduced = by[("eager", STUDENTS[-1])]
        out["reduced_size_decode"] = {
            "resolution": STUDENTS[-1],
            "decode_ms_full_size": full["decode_ms"],
            "decode_ms_at_model_size": reduced["decode_ms"],
            "preprocess_ms_full_size": full["preprocess_ms"],
            "preprocess_ms_at_model_size": reduced["preprocess_ms"],
            "end_to_end_speedup": round(reduced["videos_per_s"] / full["videos_per_s"], 2),
        }
    if any(r["backend"] == "ort" for r in rows):
        for res in (TEACHER, *STUDENTS):
            e, o = by[("eager", res)], by[("ort", res)]
            out["ort_vs_eager"].append(
                {
                    "resolution": res,
                    "end_to_end": round(o["videos_per_s"] / e["videos_per_s"], 2),
                    "model_only": round(o["model_videos_per_s"] / e["model_videos_per_s"], 2),
                    "model_only_target_1.3_met": o["model_videos_per_s"] / e["model_videos_per_s"] >= 1.3,
                    "end_to_end_target_1.3_met": o["videos_per_s"] / e["videos_per_s"] >= 1.3,
                }
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tsn_r18")
    parser.add_argument("--frames", type=int, default=8, help="TSN segments a clip")
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--video-frames", type=int, default=48, help="frames of each source video")
    parser.add_argument("--size", default="288x384", help="source videos HxW")
    parser.add_argument("--rounds", type=int, default=5)
    # 1 thread: on a shared 2-core machine, 2 OpenMP threads stall whenever another process takes a core
    parser.add_argument("--threads", type=int, default=1, help="torch / ORT intra-op threads")
    parser.add_argument("--no-ort", action="store_true", help="eager PyTorch only")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    height, width = (int(x) for x in args.size.split("x"))
    kinds = ["eager"]
    if not args.no_ort:
        try:
            import onnxruntime  # noqa: F401

            kinds.append("ort")
        except ImportError:
            print("onnxruntime is not installed: eager PyTorch only")

    start = time.perf_counter()
    torch.manual_seed(0)
    model = build_model(args.model, num_classes=400, num_frames=args.frames).eval()
    with tempfile.TemporaryDirectory() as tmp:
        videos = make_videos(Path(tmp), args.videos, height, width, args.video_frames)
        backends = [
            Backend(model, res, args.frames, kind, Path(tmp), args.threads)
            for kind in kinds
            for res in (TEACHER, *STUDENTS)
        ]
        backends.append(Backend(model, STUDENTS[-1], args.frames, "eager-full-decode", Path(tmp), 1, height))
        setup = time.perf_counter() - start
        rows = measure(backends, videos, args.rounds)
    result = {
        "model": args.model,
        "frames": args.frames,
        "videos": args.videos,
        "source": f"{height}x{width}, {args.video_frames} frames, H.264 (x264 crf 18, one keyframe), 25 fps",
        "batch": 1,
        "rows": rows,
        **speedups(rows),
        "command": "python benchmarks/end_to_end.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}, {args.threads} threads",
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "setup_s": round(setup, 1),
        "seconds": round(time.perf_counter() - start, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    _print(result, args.out)


def _print(result: dict, out: Path) -> None:
    print(f"\n{result['model']}, {result['frames']} frames, batch 1, {result['source']}; {result['machine']}")
    print(
        f"{'backend':>17} {'px':>4} {'videos/s':>9} {'model-only':>10} {'decode':>7} {'prep':>6} {'model':>6}"
    )
    for r in result["rows"]:
        shares = " ".join(f"{100 * r[f'{k}_share']:>5.0f}%" for k in PHASES)
        speed = f"{r['videos_per_s']:>9.2f} {r['model_videos_per_s']:>10.2f}"
        print(f"{r['backend']:>17} {r['resolution']:>4} {speed} {shares}")
    for s in result["students"]:
        met = "met" if s["target_0.7_met"] else "missed"
        print(
            f"{s['backend']} student {s['resolution']} px: end to end {s['end_to_end_speedup']:.2f}x, "
            f"model only {s['model_only_speedup']:.2f}x, ratio {s['ratio']:.2f} (target >= 0.7: {met})"
        )
    for o in result["ort_vs_eager"]:
        print(
            f"ORT vs eager at {o['resolution']} px: model {o['model_only']:.2f}x, "
            f"end to end {o['end_to_end']:.2f}x (target >= 1.3)"
        )
    if r := result.get("reduced_size_decode"):
        full = f"{r['decode_ms_full_size']:.0f} + {r['preprocess_ms_full_size']:.0f} ms"
        reduced = f"{r['decode_ms_at_model_size']:.0f} + {r['preprocess_ms_at_model_size']:.0f} ms"
        print(
            f"{r['resolution']} px, decode + preprocess: {full} at full size, {reduced} at the model's size"
        )
    print(f"{result['seconds']:.0f} s; wrote {out}")


if __name__ == "__main__":
    main()
