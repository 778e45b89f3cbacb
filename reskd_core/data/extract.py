"""Extraction: annotations + videos -> Parquet shards of JPEG frames, atomic and resumable.

Videos are decoded with decord in worker processes (:mod:`reskd_core.data.pool`), so a decoder that
crashes or hangs loses that video only. Each shard is committed whole when its last video is done; a
rerun skips shards already there and ends with the same rows (and the same content hash) as an
uninterrupted run. ``manifest.json`` is written last.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from reskd_core.config import ExtractConfig
from reskd_core.data import shards, storage
from reskd_core.data.annotations import (
    HOLDOUT_SPLIT,
    TEST_SPLIT,
    Annotations,
    Sample,
    hold_out,
    read_annotations,
)
from reskd_core.data.decode import DecodeSpec, decode_video
from reskd_core.data.pool import CrashSafePool

log = logging.getLogger(__name__)

SPLIT_NAME = re.compile(r"[A-Za-z0-9_.-]+")
SHARD_NAME = re.compile(r"(?P<split>.+)-\d{5}-[0-9a-f]{8}\.parquet")
Progress = Callable[[int, int], None]


@dataclass
class PlannedShard:
    split: str
    file: str
    samples: list[Sample]


@dataclass
class ExtractReport:
    """What an extraction did; ``ok`` is the exit-status rule (error rate within the limit)."""

    uri: str
    total: int
    skipped: int
    rows: dict[str, int]
    error_rate: float
    max_error_rate: float
    new_shards: int
    resumed_shards: int
    frames_written: int
    seconds: float
    content_hash: str
    errors: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error_rate <= self.max_error_rate

    def as_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}


def decode_spec(cfg: ExtractConfig) -> DecodeSpec:
    return DecodeSpec(cfg.sample, cfg.every, cfg.fps, cfg.count, cfg.short_side, cfg.jpeg_quality)


def load_samples(cfg: ExtractConfig) -> Annotations:
    """The annotations with the configured split applied; ``ValueError`` for a bad configuration."""
    ann = read_annotations(cfg.annotations, cfg.format, labels_file=cfg.labels_file, split=cfg.split)
    if cfg.val_fraction > 0 or cfg.test_fraction > 0:
        if cfg.format not in ("mmaction", "ssv2"):
            raise ValueError(
                f"extract.val_fraction and extract.test_fraction are for formats without a split column, "
                f"not {cfg.format}"
            )
        ann.samples = hold_out(ann.samples, {TEST_SPLIT: cfg.test_fraction, HOLDOUT_SPLIT: cfg.val_fraction})
    for split in {s.split for s in ann.samples}:
        if not SPLIT_NAME.fullmatch(split):
            raise ValueError(
                f"{cfg.annotations}: split name {split!r} must be letters, digits, '_', '-' or '.'"
            )
    return ann


def video_stamps(video_root: str) -> dict[str, str]:
    """``{relative path: "size/modified"}`` of every file under the root, from one recursive listing.

    Part of each shard's digest, so a video replaced since a previous run is extracted again.
    """
    fs, root = storage.filesystem(video_root)
    prefix = root.rstrip("/") + "/"
    stamps = {}
    for path, info in fs.find(root, detail=True).items():
        modified = info.get("mtime") or info.get("LastModified") or info.get("ETag") or ""
        stamps[path[len(prefix) :] if path.startswith(prefix) else path] = f"{info.get('size')}/{modified}"
    return stamps


def plan_shards(
    samples: list[Sample], cfg: ExtractConfig, stamps: dict[str, str] | None = None
) -> list[PlannedShard]:
    """Shards per split in annotation order; each file name carries a digest of its inputs.

    The digest covers the extraction settings, the shard's samples and, given ``stamps``
    (:func:`video_stamps`), the size and modification time of their video files.
    """
    spec = json.dumps([shards.FORMAT_VERSION, asdict(decode_spec(cfg)), cfg.row_group_size])
    stamps = stamps or {}
    by_split: dict[str, list[Sample]] = {}
    for s in samples:
        by_split.setdefault(s.split, []).append(s)
    plan = []
    for split in sorted(by_split):
        group = by_split[split]
        for i in range(0, len(group), cfg.videos_per_shard):
            part = group[i : i + cfg.videos_per_shard]
            h = hashlib.sha256(spec.encode())
            for s in part:
                files = [stamps.get(storage.safe_relative(p) or "", "") for p in (s.video, *s.alternatives)]
                fields = [s.id, s.video, s.alternatives, s.labels, s.split, s.start, s.end, files]
                h.update(json.dumps(fields).encode())
            index = i // cfg.videos_per_shard
            plan.append(PlannedShard(split, f"{split}-{index:05d}-{h.hexdigest()[:8]}.parquet", part))
    return plan


def _row(s: Sample, decoded: dict) -> dict:
    return {
        "id": s.id,
        "video": decoded.pop("video"),
        "split": s.split,
        "label": s.labels[0],
        "labels": list(s.labels),
        "segment_start": s.start,
        "segment_end": s.end,
        **decoded,
    }


def _error(s: Sample, reason: str, shard: str) -> dict:
    return {"id": s.id, "video": s.video, "split": s.split, "reason": reason, "shard": shard}


def _decode_task(candidates: list[tuple[str, str]], spec: DecodeSpec) -> dict:
    """Worker entry: decode the first existing candidate and name the relative path it used."""
    result = decode_video([uri for _, uri in candidates], spec)
    if "error" not in result:
        result["video"] = candidates[result.pop("source")][0]
    return result


def _previous(out_uri: str, ann: Annotations, splits: set[str]) -> tuple[dict, dict]:
    """The existing manifest's splits and errors that this run keeps (those of other splits)."""
    try:
        old = shards.read_manifest(out_uri)
    except ValueError:
        return {}, {}
    kept = {k: v for k, v in old.get("splits", {}).items() if k not in splits}
    if kept and (old.get("class_names") != ann.class_names or old.get("multi_label") != ann.multi_label):
        raise ValueError(
            f"{out_uri} already holds split(s) {', '.join(sorted(kept))} extracted with other class names; "
            "extract into another location or re-extract those splits too"
        )
    old_errors = (shards.read_errors(out_uri) or {}).get("errors", [])
    return kept, {"errors": [e for e in old_errors if e.get("split") not in splits]}


def extract(cfg: ExtractConfig, out_uri: str, progress: Progress | None = None) -> ExtractReport:
    """Extract the videos of ``cfg.annotations`` under ``cfg.video_root`` into shards at ``out_uri``.

    Raises ``ValueError`` before any work for a bad configuration (missing or malformed annotations,
    missing video root, a location holding incompatible shards). Videos that cannot be used are
    skipped and listed in ``errors.json``; the report says whether their share is within
    ``cfg.max_error_rate``. ``progress(done, total)`` is called as videos finish.
    """
    t0 = time.monotonic()
    ann = load_samples(cfg)
    if not storage.exists(cfg.video_root):
        raise ValueError(f"video root {cfg.video_root} does not exist")
    splits = {s.split for s in ann.samples}
    kept_splits, kept_errors = _previous(out_uri, ann, splits)
    plan = plan_shards(ann.samples, cfg, video_stamps(cfg.video_root))
    storage.makedirs(out_uri)
    existing = set(storage.listdir(out_uri))
    _remove_temporaries(out_uri, existing)

    finished: dict[str, shards.ShardInfo] = {}
    todo: list[PlannedShard] = []
    for p in plan:
        if p.file in existing:
            finished[p.file] = shards.shard_info(storage.join(out_uri, p.file))
        else:
            todo.append(p)
    total = len(ann.samples)
    done = sum(len(p.samples) for p in plan if p.file in finished)
    if finished:
        log.info("resuming: %d of %d shards already complete in %s", len(finished), len(plan), out_uri)
    if progress:
        progress(done, total)

    frames_written = 0
    if todo:
        spec = decode_spec(cfg)
        results: dict[int, dict[int, dict]] = {i: {} for i in range(len(todo))}
        tasks = []
        for si, p in enumerate(todo):
            for pos, s in enumerate(p.samples):
                rels = [r for r in (s.video, *s.alternatives) if storage.safe_relative(r)]
                if not storage.safe_relative(s.video):
                    results[si][pos] = {"error": "path is absolute or escapes the video root (not opened)"}
                else:
                    cands = [(r, storage.join(cfg.video_root, storage.safe_relative(r))) for r in rels]
                    tasks.append(((si, pos), (cands, spec)))
        writers: dict[int, shards.ShardWriter] = {}
        cursor = dict.fromkeys(range(len(todo)), 0)

        def advance(si: int) -> None:
            nonlocal done, frames_written
            p = todo[si]
            while cursor[si] in results[si]:
                if si not in writers:
                    writers[si] = shards.ShardWriter(
                        storage.join(out_uri, p.file), p.split, cfg.row_group_size
                    )
                w = writers[si]
                pos = cursor[si]
                res, s = results[si].pop(pos), p.samples[pos]
                if "error" in res:
                    log.warning("skipping %s: %s", s.video, res["error"])
                    w.errors.append(_error(s, res["error"], p.file))
                else:
                    frames_written += len(res["frames"])
                    w.add(_row(s, res))
                cursor[si] += 1
                done += 1
            if cursor[si] == len(p.samples):
                finished[p.file] = writers.pop(si).commit()
                log.info("shard %s: %d videos", p.file, finished[p.file].rows)

        workers = min(cfg.workers or len(os.sched_getaffinity(0)), len(tasks))
        log.info("extracting %d videos with %d decoder processes into %s", len(tasks), workers, out_uri)
        try:
            for si in range(len(todo)):
                advance(si)  # shards whose videos were all rejected up front
            if tasks:
                with CrashSafePool(_decode_task, workers, cfg.timeout_s) as pool:
                    for (si, pos), result in pool.run(tasks):
                        results[si][pos] = result
                        advance(si)
                        if progress:
                            progress(done, total)
        finally:
            for w in writers.values():
                w.abort()

    return _finish(
        cfg,
        out_uri,
        ann,
        plan,
        finished,
        kept_splits,
        kept_errors,
        existing,
        frames_written,
        len(todo),
        time.monotonic() - t0,
    )


def _finish(
    cfg, out_uri, ann, plan, finished, kept_splits, kept_errors, existing, frames_written, new_shards, seconds
) -> ExtractReport:
    splits: dict[str, dict] = dict(kept_splits)
    errors = []
    for p in plan:
        info = finished[p.file]
        entry = splits.setdefault(p.split, {"videos": 0, "shards": []})
        entry["shards"].append(info.entry())
        entry["videos"] += info.rows
        errors.extend(info.errors)
    total = len(ann.samples)
    rate = len(errors) / total if total else 0.0
    digest = shards.content_hash(splits)
    report = ExtractReport(
        out_uri,
        total,
        len(errors),
        {k: v["videos"] for k, v in splits.items()},
        rate,
        cfg.max_error_rate,
        new_shards,
        len(plan) - new_shards,
        frames_written,
        seconds,
        digest,
        errors,
    )
    shards.write_errors(
        out_uri,
        {
            "total": total,
            "skipped": len(errors),
            "error_rate": rate,
            "max_error_rate": cfg.max_error_rate,
            "ok": report.ok,
            "errors": kept_errors.get("errors", []) + errors,
        },
    )
    manifest = {
        "format": "reskd-shards",
        "version": shards.FORMAT_VERSION,
        "annotation_format": cfg.format,
        "class_names": ann.class_names,
        "num_classes": len(ann.class_names),
        "multi_label": ann.multi_label,
        "splits": {k: splits[k] for k in sorted(splits)},
        "extract": cfg.model_dump(mode="json"),
        "skipped": len(errors),
        "content_hash": digest,
    }
    shards.write_manifest(out_uri, manifest)  # last: its presence means every listed shard is complete
    current = {s["file"] for v in splits.values() for s in v["shards"]}
    for name in existing - current:
        m = SHARD_NAME.fullmatch(name)
        if m and m["split"] in {p.split for p in plan}:
            log.info("removing stale shard %s (from an extraction with other inputs)", name)
            storage.remove(storage.join(out_uri, name))
    if not report.ok:
        log.error(
            "%d of %d videos skipped (%.1f%% > %.1f%%): see %s",
            len(errors),
            total,
            100 * rate,
            100 * cfg.max_error_rate,
            storage.join(out_uri, shards.ERRORS),
        )
    return report


def _remove_temporaries(out_uri: str, names: set[str]) -> None:
    """Temporary shard files left by a killed local run (S3 runs keep theirs in the local temp dir)."""
    if storage.is_remote(out_uri):
        return
    for name in list(names):
        if name.startswith(".") and ".tmp-" in name:
            storage.remove(storage.join(out_uri, name))
            names.discard(name)
