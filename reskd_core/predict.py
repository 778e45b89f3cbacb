"""Labels for videos: what to predict (files, lists, shards), the model (a checkpoint or an ONNX file), and
the predictions, one row a video, an error row for a video that cannot be read.

Every input goes through :mod:`reskd_core.data.preprocess`, the chain evaluation uses.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from reskd_core.data import storage
from reskd_core.data.decode import VideoError
from reskd_core.data.preprocess import VIDEO_SUFFIXES, InputSpec, shard_frames_input, video_input

log = logging.getLogger(__name__)

ONNX_SPEC_KEY = "reskd.input_spec"  # ONNX metadata_props written by reskd export
ONNX_CLASSES_KEY = "reskd.class_names"


@dataclass
class VideoItem:
    """A video to label: a path/URI or its bytes, or a shard row's stored frames; its label if known."""

    id: str
    video: str | bytes | None = None
    frames: Any = None  # a shard row's JPEG frames
    label: str | int | None = None  # the true class: its name, or an id into the model's classes


@dataclass
class Prediction:
    """A video's softmax scores (None with ``error``), its true label if known, and the time it took."""

    id: str
    scores: np.ndarray | None
    label: str | int | None = None
    error: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)


# ---------------------------------------------------------------- models


class Classifier:
    """A trained model and how its input is made: ``logits`` of a batch ``(N, T, 3, r, r)``."""

    spec: InputSpec
    class_names: list[str]
    name: str

    def logits(self, batch: torch.Tensor) -> np.ndarray:
        raise NotImplementedError


class TorchClassifier(Classifier):
    """A reskd checkpoint (path, directory or ``s3://`` URI), eager PyTorch on the CPU or a device."""

    def __init__(self, checkpoint: str, device: str = "cpu") -> None:
        from reskd_core.checkpoint import checkpoint_config, load_checkpoint, model_from_checkpoint

        state = load_checkpoint(checkpoint)  # CheckpointError names the file
        model, _ = model_from_checkpoint(state)
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.spec = InputSpec.from_config(checkpoint_config(state), state["role"])
        names = list(state.get("class_names") or [])
        self.class_names = names or [str(i) for i in range(state["num_classes"])]
        self.name = checkpoint
        self.role = state["role"]

    @torch.no_grad()
    def logits(self, batch: torch.Tensor) -> np.ndarray:
        return self.model(batch.to(self.device))[0].float().cpu().numpy()


class OnnxClassifier(Classifier):
    """An ONNX file from ``reskd export`` on ONNX Runtime (CPU); its input size is checked on load."""

    def __init__(self, path: str, resolution: int | None = None, threads: int | None = None) -> None:
        import onnxruntime as ort

        if not Path(path).is_file():
            raise ValueError(f"ONNX model {path} does not exist")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own types for a damaged file
            raise ValueError(f"ONNX model {path} cannot be loaded: {str(e).splitlines()[0]}") from None
        inp = self.session.get_inputs()[0]
        frames, size = inp.shape[1], inp.shape[-1]
        if not isinstance(size, int) or not isinstance(frames, int):
            raise ValueError(f"ONNX model {path} has no fixed input size ({inp.shape})")
        if resolution is not None and resolution != size:
            raise ValueError(f"ONNX model {path} takes {size} px clips; {resolution} px was requested")
        meta = self.session.get_modelmeta().custom_metadata_map
        if ONNX_SPEC_KEY in meta:
            self.spec = InputSpec.from_json(meta[ONNX_SPEC_KEY])
        else:
            self.spec = InputSpec(num_segments=frames, resolution=size, load_resolution=size)
        if (self.spec.resolution, self.spec.num_segments) != (size, frames):
            raise ValueError(f"ONNX model {path}: its metadata does not match its input {inp.shape}")
        n = self.session.get_outputs()[0].shape[-1]
        self.class_names = json.loads(meta.get(ONNX_CLASSES_KEY, "[]")) or [str(i) for i in range(n)]
        self.input_name, self.name = inp.name, path

    def logits(self, batch: torch.Tensor) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch.numpy()})[0]


def load_classifier(model: str, *, resolution: int | None = None, device: str = "cpu") -> Classifier:
    """A checkpoint or an ``.onnx`` file; a checkpoint's resolution must be ``resolution`` when given.

    Raises ``ValueError`` (one line, naming the file) before any video is touched."""
    if model.endswith(".onnx"):
        return OnnxClassifier(model, resolution)
    clf = TorchClassifier(model, device)
    if resolution is not None and resolution != clf.spec.resolution:
        raise ValueError(
            f"checkpoint {model} takes {clf.spec.resolution} px clips; {resolution} px was requested"
        )
    return clf


# ---------------------------------------------------------------- inputs


def is_video(uri: str) -> bool:
    return uri.lower().endswith(VIDEO_SUFFIXES)


def is_shards(uri: str) -> bool:
    return not is_video(uri) and storage.exists(storage.join(uri, "manifest.json"))


def shard_items(uri: str, splits: list[str] | None = None) -> Iterator[VideoItem]:
    """Rows of the shards at ``uri`` (every split, or ``splits``), a row group at a time."""
    from reskd_core.data.shards import read_manifest, split_shards

    manifest = read_manifest(uri)
    names = list(manifest["class_names"])
    for split in splits or list(manifest.get("splits", {})):
        for entry in split_shards(manifest, split, uri):
            with storage.open_input(entry["uri"]) as fh:
                pf = pq.ParquetFile(fh)
                for g in range(pf.num_row_groups):
                    table = pf.read_row_group(g, columns=["id", "label", "frames"])
                    for r in range(table.num_rows):
                        yield VideoItem(
                            id=table.column("id")[r].as_py(),
                            frames=table.column("frames")[r].values,
                            label=names[table.column("label")[r].as_py()],
                        )


def list_items(
    uri: str, fmt: str = "mmaction", video_root: str | None = None, labels_file: str | None = None
) -> list[VideoItem]:
    """The videos of an annotation list; paths relative to ``video_root`` (default: the list's folder, or
    its ``videos/`` folder when there is one). Labels are class names with ``labels_file``, else the
    list's ids (taken as ids into the model's classes)."""
    from reskd_core.data.annotations import read_annotations

    ann = read_annotations(uri, fmt, labels_file=labels_file)
    if video_root is None:
        parent = str(Path(uri).parent) if not storage.is_remote(uri) else uri.rsplit("/", 1)[0]
        videos = storage.join(parent, "videos")
        video_root = videos if storage.exists(videos) else parent

    def label(s: Any) -> str | int | None:
        if not s.labels:
            return None
        return ann.class_names[s.labels[0]] if labels_file else s.labels[0]

    return [VideoItem(s.video, storage.join(video_root, s.video), label=label(s)) for s in ann.samples]


def collect_items(
    sources: list[str], fmt: str = "mmaction", video_root: str | None = None
) -> tuple[list[VideoItem] | Iterator[VideoItem], int]:
    """``(items, count)`` of command-line sources: video files or URIs, annotation lists, shards."""
    items: list[VideoItem] = []
    for src in sources:
        if is_video(src):
            items.append(VideoItem(id=src, video=src))
        elif is_shards(src):
            from reskd_core.data.shards import read_manifest

            rows = sum(int(s["videos"]) for s in read_manifest(src)["splits"].values())
            if len(sources) == 1:
                return shard_items(src), rows
            items.extend(shard_items(src))
        else:
            items.extend(list_items(src, fmt, video_root))
    return items, len(items)


# ---------------------------------------------------------------- predicting


def item_input(item: VideoItem, spec: InputSpec, exact: bool = False) -> torch.Tensor:
    """The model's input of one item: from its stored frames or its video."""
    if item.frames is not None:
        return shard_frames_input(item.frames, spec, exact)
    if item.video is None:
        raise VideoError("no video")
    return video_input(item.video, spec, exact)


def _reason(e: Exception) -> str:
    if isinstance(e, VideoError):
        return str(e)
    return f"cannot decode: {type(e).__name__}: {' '.join(str(e).split())[:300]}"


def predict_items(
    clf: Classifier,
    items: Iterable[VideoItem],
    *,
    batch_size: int = 8,
    exact: bool = False,
    progress: Callable[[int], None] | None = None,
) -> Iterator[Prediction]:
    """Predictions of ``items`` in order, ``batch_size`` clips a forward pass; a video that cannot be
    read is an error row (its reason), the others go on. ``seconds`` holds each video's decode time
    (with sampling and preprocessing) and its share of the batch's model time."""
    pending: list[Prediction] = []  # in input order; error rows wait for the clips before them
    clips: list[torch.Tensor] = []

    def flush() -> Iterator[Prediction]:
        if clips:
            t0 = time.perf_counter()
            probs = torch.softmax(torch.from_numpy(clf.logits(torch.stack(clips))), 1).numpy()
            model_s = (time.perf_counter() - t0) / len(clips)
            ready = iter(probs)
            for p in pending:
                if p.error is None:
                    p.scores, p.seconds["model"] = next(ready), model_s
        yield from pending
        if progress:
            progress(len(pending))
        pending.clear()
        clips.clear()

    for item in items:
        t0 = time.perf_counter()
        try:
            clips.append(item_input(item, clf.spec, exact))
            pending.append(Prediction(item.id, None, item.label, seconds={"input": time.perf_counter() - t0}))
        except Exception as e:  # one bad video must not stop the others
            log.warning("%s: %s", item.id, _reason(e))
            pending.append(Prediction(item.id, None, item.label, error=_reason(e)))
        if len(clips) >= batch_size:
            yield from flush()
    yield from flush()


def top_k(scores: np.ndarray, class_names: list[str], k: int) -> list[tuple[str, float]]:
    order = np.argsort(-scores, kind="stable")[:k]
    return [(class_names[i], float(scores[i])) for i in order]


def true_name(label: str | int | None, class_names: list[str]) -> str | None:
    """A true label as a class name (an id is one of the model's classes)."""
    if isinstance(label, int):
        return class_names[label] if 0 <= label < len(class_names) else str(label)
    return label


def prediction_row(p: Prediction, class_names: list[str], k: int, model: str) -> dict[str, Any]:
    """A JSON/Parquet row: the video, the top-k labels and scores (empty with an error), the true label."""
    top = top_k(p.scores, class_names, k) if p.scores is not None else []
    return {
        "video": p.id,
        "label": top[0][0] if top else None,
        "score": top[0][1] if top else None,
        "labels": [n for n, _ in top],
        "scores": [s for _, s in top],
        "true_label": true_name(p.label, class_names),
        "error": p.error,
        "model": model,
    }


def write_rows(rows: list[dict[str, Any]], out: str) -> str:
    """``rows`` as JSON (``.json``) or Parquet (anything else), local or ``s3://``; returns ``out``."""
    if out.endswith(".json"):
        storage.write_bytes_atomic(out, json.dumps(rows, indent=1).encode())
        return out
    table = pa.Table.from_pylist(rows, schema=PREDICTION_SCHEMA)
    fs, path = storage.filesystem(out)
    if not storage.is_remote(out):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    with fs.open(path, "wb") as fh:
        pq.write_table(table, fh)
    return out


PREDICTION_SCHEMA = pa.schema(
    [
        ("video", pa.string()),
        ("label", pa.string()),
        ("score", pa.float64()),
        ("labels", pa.list_(pa.string())),
        ("scores", pa.list_(pa.float64())),
        ("true_label", pa.string()),
        ("error", pa.string()),
        ("model", pa.string()),
    ]
)
