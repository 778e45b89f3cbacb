"""Annotation readers: mmaction2 lists, Kinetics CSV, Something-Something V2 JSON, ActivityNet JSON.

Each turns its format into one :class:`Annotations`: a list of :class:`Sample` (a video path relative to
the video root, label ids, the split, an optional source segment) plus the class names. Malformed input
raises :class:`AnnotationError` naming the file and the line (or JSON entry). Paths are kept as written:
the extractor rejects absolute or escaping ones per video, before opening anything.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import re
from collections import defaultdict
from dataclasses import dataclass, replace

from reskd_core.data import storage

log = logging.getLogger(__name__)

FORMATS = ("mmaction", "kinetics", "ssv2", "activitynet")
DEFAULT_SPLIT = "train"
HOLDOUT_SPLIT = "val"
TEST_SPLIT = "test"


class AnnotationError(ValueError):
    """Malformed annotations; the message names the file and the line or entry."""


@dataclass(frozen=True)
class Sample:
    """One video to extract."""

    id: str
    video: str  # relative to the video root, as the annotations name it
    labels: tuple[int, ...]
    split: str
    start: float | None = None  # segment of the source video (seconds), kept as metadata
    end: float | None = None
    alternatives: tuple[str, ...] = ()  # other relative paths to try, in order (dataset layouts differ)


@dataclass
class Annotations:
    samples: list[Sample]
    class_names: list[str]
    multi_label: bool


def read_annotations(
    uri: str, fmt: str, *, labels_file: str | None = None, split: str | None = None
) -> Annotations:
    """Read ``uri`` (local path or ``s3://``) in format ``fmt``.

    ``split``: for formats without a split column (mmaction, ssv2) the split of every sample (default
    ``train``); for Kinetics and ActivityNet, when given, only that split is kept.
    """
    readers = {
        "mmaction": read_mmaction,
        "kinetics": read_kinetics,
        "ssv2": read_ssv2,
        "activitynet": read_activitynet,
    }
    if fmt not in readers:
        raise ValueError(f"unknown annotation format {fmt!r}; known: {', '.join(FORMATS)}")
    try:
        text = storage.read_text(uri)
    except FileNotFoundError:
        raise AnnotationError(f"annotation file {uri} does not exist") from None
    except UnicodeDecodeError as e:
        raise AnnotationError(f"{uri}: not UTF-8 text ({e})") from None
    names = read_class_names(labels_file) if labels_file else None
    ann = readers[fmt](text, uri, names=names, split=split)
    _check_unique(ann.samples, uri)
    if not ann.samples:
        raise AnnotationError(f"{uri}: no videos" + (f" in split {split!r}" if split else ""))
    return ann


def read_class_names(uri: str) -> list[str] | dict[str, int]:
    """A class list: JSON (a list of names, or ``{name: id}`` as SSv2's labels.json) or one name a line."""
    try:
        text = storage.read_text(uri)
    except FileNotFoundError:
        raise AnnotationError(f"labels file {uri} does not exist") from None
    if text.lstrip().startswith(("{", "[")):
        data = _json(text, uri)
        if isinstance(data, list) and all(isinstance(n, str) for n in data):
            return data
        if isinstance(data, dict):
            try:
                return {str(k): int(v) for k, v in data.items()}
            except (TypeError, ValueError):
                raise AnnotationError(f"{uri}: class ids must be integers") from None
        raise AnnotationError(f"{uri}: expected a list of class names or a {{name: id}} mapping")
    return [line.strip() for line in text.splitlines() if line.strip()]


def _names_list(names: list[str] | dict[str, int] | None, uri: str) -> list[str] | None:
    if names is None or isinstance(names, list):
        return names
    ordered = sorted(names.items(), key=lambda kv: kv[1])
    if [i for _, i in ordered] != list(range(len(ordered))):
        raise AnnotationError(f"labels file for {uri}: class ids must be 0..{len(ordered) - 1} without gaps")
    return [n for n, _ in ordered]


# --- mmaction2 video lists -------------------------------------------------------------------------

_LIST_LINE = re.compile(r"^(?P<path>.*?\S)(?P<labels>(?:\s+\d+)+)\s*$")


def read_mmaction(text: str, uri: str, *, names=None, split: str | None = None) -> Annotations:
    """``path label`` or ``path l1 l2 ...`` a line.

    The labels are the whitespace-separated integers at the end of a line, so paths may hold spaces (a
    path's last word is never a bare integer when it has a file extension). A list is multi-label when
    some line has more than one label.
    """
    split = split or DEFAULT_SPLIT
    samples = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        m = _LIST_LINE.match(line)
        if not m:
            raise AnnotationError(f"{uri}:{lineno}: expected 'path label [label ...]', got {raw!r}")
        path, labels = m["path"], tuple(int(t) for t in m["labels"].split())
        samples.append(Sample(id=path, video=path, labels=labels, split=split))
    class_names = _names_list(names, uri)
    top = max((max(s.labels) for s in samples), default=-1)
    if class_names is None:
        class_names = [str(i) for i in range(top + 1)]
    elif top >= len(class_names):
        bad = next(i for i, s in enumerate(samples) if max(s.labels) >= len(class_names))
        raise AnnotationError(
            f"{uri}: label {top} of {samples[bad].video!r} has no name ({len(class_names)} classes)"
        )
    multi = any(len(s.labels) != 1 for s in samples)
    return Annotations(samples, class_names, multi)


# --- Kinetics CSV ------------------------------------------------------------------------------------

_KINETICS_COLUMNS = ("label", "youtube_id", "time_start", "time_end")


def read_kinetics(text: str, uri: str, *, names=None, split: str | None = None) -> Annotations:
    """``label,youtube_id,time_start,time_end,split`` with a header (``split`` optional, others ignored).

    Without a ``split`` column every row is in ``split`` (default ``train``); with one, ``split``
    keeps that split only.

    Files are named ``{youtube_id}_{start:06d}_{end:06d}.mp4`` (the downloaders' naming) and looked up
    flat, under ``label/`` (spaces or underscores) and under ``split/label/``.
    """
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in _KINETICS_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise AnnotationError(
            f"{uri}:1: header lacks column(s) {', '.join(missing)}; got {reader.fieldnames}"
        )
    has_split = "split" in reader.fieldnames  # without the column, every row is in ``split``
    rows = []
    for row in reader:
        lineno = reader.line_num
        label, yid = (row.get("label") or "").strip(), (row.get("youtube_id") or "").strip()
        if not label or not yid:
            raise AnnotationError(f"{uri}:{lineno}: empty label or youtube_id")
        try:
            start, end = float(row["time_start"]), float(row["time_end"])
        except (TypeError, ValueError):
            raise AnnotationError(
                f"{uri}:{lineno}: time_start/time_end must be numbers, "
                f"got {row['time_start']!r}, {row['time_end']!r}"
            ) from None
        row_split = (row.get("split") or "").strip() if has_split else split
        rows.append((lineno, label, yid, start, end, row_split or DEFAULT_SPLIT))
    class_names = _names_list(names, uri) or sorted({r[1] for r in rows})
    index = {n: i for i, n in enumerate(class_names)}
    samples = []
    for lineno, label, yid, start, end, row_split in rows:
        if split and row_split != split:
            continue
        if label not in index:
            raise AnnotationError(f"{uri}:{lineno}: label {label!r} is not in the class list")
        name = f"{yid}_{int(start):06d}_{int(end):06d}"
        file = name + ".mp4"
        dirs = dict.fromkeys([label, label.replace(" ", "_")])
        alts = [f"{d}/{file}" for d in dirs] + [f"{row_split}/{d}/{file}" for d in dirs]
        samples.append(Sample(name, file, (index[label],), row_split, start, end, tuple(alts)))
    return Annotations(samples, class_names, False)


# --- Something-Something V2 --------------------------------------------------------------------------


def read_ssv2(text: str, uri: str, *, names=None, split: str | None = None) -> Annotations:
    """A list of ``{"id", "template", ...}``; classes from ``labels.json`` (template -> id); ``{id}.webm``."""
    if names is None:
        raise AnnotationError(f"{uri}: Something-Something V2 needs its labels.json (extract.labels_file)")
    if isinstance(names, list):
        names = {n: i for i, n in enumerate(names)}
    data = _json(text, uri)
    if not isinstance(data, list):
        raise AnnotationError(f"{uri}: expected a JSON list of videos")
    split = split or DEFAULT_SPLIT
    samples = []
    for i, entry in enumerate(data):
        if not isinstance(entry, dict) or "id" not in entry or "template" not in entry:
            raise AnnotationError(f"{uri}: entry {i} needs 'id' and 'template', got {str(entry)[:80]}")
        template = str(entry["template"]).replace("[", "").replace("]", "")
        if template not in names:
            raise AnnotationError(
                f"{uri}: entry {i} (id {entry['id']}): template {template!r} is not in labels.json"
            )
        vid = str(entry["id"])
        samples.append(Sample(vid, f"{vid}.webm", (names[template],), split, alternatives=(f"{vid}.mp4",)))
    return Annotations(samples, _names_list(names, uri), False)


# --- ActivityNet ---------------------------------------------------------------------------------------


def read_activitynet(text: str, uri: str, *, names=None, split: str | None = None) -> Annotations:
    """``{"database": {id: {"subset", "annotations": [{"segment": [s, e], "label"}]}}}``, one row a video.

    Untrimmed and multi-label: a video's labels are those of all its segments; its segment is the span
    they cover (metadata; the whole video is extracted). Videos without annotations (the testing subset)
    are left out. Files: ``v_{id}.mp4`` (also ``{id}.mp4``, ``v_{id}.mkv``, ``v_{id}.webm``).
    """
    data = _json(text, uri)
    db = data.get("database") if isinstance(data, dict) else None
    if not isinstance(db, dict):
        raise AnnotationError(f"{uri}: expected an object with a 'database' mapping")
    parsed = []
    for key, video in db.items():
        anns = video.get("annotations") if isinstance(video, dict) else None
        if not isinstance(anns, list):
            raise AnnotationError(f"{uri}: database entry {key!r} has no 'annotations' list")
        segs = []
        for j, a in enumerate(anns):
            try:
                (s, e), label = a["segment"], str(a["label"])
                segs.append((float(s), float(e), label))
            except (KeyError, TypeError, ValueError):
                raise AnnotationError(
                    f"{uri}: database entry {key!r} annotation {j}: needs 'segment': [start, end] and 'label'"
                ) from None
        parsed.append((key, str(video.get("subset", DEFAULT_SPLIT)), segs))
    class_names = _names_list(names, uri) or sorted({lab for _, _, segs in parsed for *_, lab in segs})
    index = {n: i for i, n in enumerate(class_names)}
    samples, unlabelled = [], 0
    for key, subset, segs in parsed:
        if split and subset != split:
            continue
        if not segs:
            unlabelled += 1
            continue
        unknown = [lab for *_, lab in segs if lab not in index]
        if unknown:
            raise AnnotationError(
                f"{uri}: database entry {key!r}: label {unknown[0]!r} is not in the class list"
            )
        labels = tuple(sorted({index[lab] for *_, lab in segs}))
        start, end = min(s for s, _, _ in segs), max(e for _, e, _ in segs)
        alts = (f"{key}.mp4", f"v_{key}.mkv", f"v_{key}.webm")
        samples.append(Sample(key, f"v_{key}.mp4", labels, subset, start, end, alts))
    if unlabelled:
        log.info("%s: %d videos without annotations left out", uri, unlabelled)
    return Annotations(samples, class_names, True)


# --- shared ----------------------------------------------------------------------------------------------


def hold_out(samples: list[Sample], fractions: dict[str, float] | float) -> list[Sample]:
    """Move a share of each class (by first label) to other splits, e.g. ``{"test": 0.3, "val": 0.2}``.

    Each class's videos are ordered by a hash of the path; the first ``round(f * n)`` go to the first
    named split, the next ones to the second, and so on. Deterministic and independent of the list's
    order, so a rerun holds out the same videos. A bare float is ``{"val": fraction}``.
    """
    if isinstance(fractions, float | int):
        fractions = {HOLDOUT_SPLIT: float(fractions)}
    fractions = {k: f for k, f in fractions.items() if f > 0}
    if not fractions:
        return samples
    if sum(fractions.values()) >= 1:
        raise ValueError(f"held-out shares {fractions} leave nothing to train on")
    by_class: dict[int, list[int]] = defaultdict(list)
    for i, s in enumerate(samples):
        by_class[s.labels[0] if s.labels else -1].append(i)
    chosen: dict[int, str] = {}
    for members in by_class.values():
        members.sort(key=lambda i: hashlib.sha1(samples[i].video.encode()).hexdigest())
        start = 0
        for name, fraction in fractions.items():
            take = round(fraction * len(members))
            chosen.update((i, name) for i in members[start : start + take])
            start += take
    return [replace(s, split=chosen[i]) if i in chosen else s for i, s in enumerate(samples)]


def _json(text: str, uri: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise AnnotationError(f"{uri}:{e.lineno}: invalid JSON: {e.msg}") from None


def _check_unique(samples: list[Sample], uri: str) -> None:
    seen: set[tuple[str, str]] = set()
    for s in samples:
        key = (s.split, s.id)
        if key in seen:
            raise AnnotationError(f"{uri}: video {s.id!r} is listed twice in split {s.split!r}")
        seen.add(key)
