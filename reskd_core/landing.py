"""Finding new datasets dropped into a landing location (a local folder or an ``s3://`` prefix).

A dataset is one sub-folder. It is *ready* when it holds ``manifest.json`` (extracted shards; the
manifest is written last, so its presence means the shards are complete) or the marker file ``_READY``
(annotations + videos; the uploader writes the marker after the last video). A half-copied folder
has neither and is left alone. Datasets already picked up are listed in ``<landing>/.reskd/seen.json``,
so each is reported once.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

from fsspec.core import url_to_fs

log = logging.getLogger(__name__)

READY_MARKERS = ("manifest.json", "_READY")
LEDGER = ".reskd/seen.json"


@dataclass(frozen=True)
class LandedDataset:
    uri: str
    kind: str  # "shards" (manifest.json) or "videos" (_READY marker)


def _join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *parts])


def _uri(path: str, landing_uri: str) -> str:
    """fsspec lists paths without the protocol: put it back so the URI opens anywhere."""
    return landing_uri.split("://", 1)[0] + "://" + path if "://" in landing_uri else path


def ready_datasets(landing_uri: str) -> list[LandedDataset]:
    """Every ready dataset under ``landing_uri``, sorted by name."""
    fs, root = url_to_fs(landing_uri)
    fs.invalidate_cache(root)
    if not fs.exists(root):
        # A new landing location is empty, not an error (on S3 an empty prefix does not "exist"); a local
        # one is created so users see where to drop datasets. A missing bucket is a real mistake.
        protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
        if "file" in protocols or "local" in protocols:
            fs.makedirs(root, exist_ok=True)
            log.info("created the landing folder %s", root)
        elif not fs.exists(bucket := root.split("/", 1)[0]):
            raise ValueError(f"landing location {landing_uri}: bucket {bucket} does not exist")
        return []
    out = []
    for entry in sorted(fs.ls(root, detail=True), key=lambda e: e["name"]):
        name = entry["name"].rstrip("/").rsplit("/", 1)[-1]
        if entry["type"] != "directory" or name.startswith("."):
            continue
        for marker, kind in zip(READY_MARKERS, ("shards", "videos"), strict=True):
            if fs.exists(_join(entry["name"], marker)):
                out.append(LandedDataset(_uri(entry["name"].rstrip("/"), landing_uri), kind))
                break
    return out


def read_ledger(landing_uri: str) -> dict[str, dict]:
    """``{dataset_uri: {"picked_at": ..., "kind": ...}}`` of datasets already picked up."""
    fs, root = url_to_fs(landing_uri)
    path = _join(root, LEDGER)
    if not fs.exists(path):
        return {}
    try:
        return json.loads(fs.cat_file(path))
    except json.JSONDecodeError as e:
        raise ValueError(f"landing ledger {landing_uri}/{LEDGER} is corrupt: {e}") from None


def mark_picked(landing_uri: str, datasets: list[LandedDataset]) -> None:
    """Add ``datasets`` to the ledger (written whole, then moved into place where the store allows)."""
    if not datasets:
        return
    seen = read_ledger(landing_uri)
    for d in datasets:
        seen[d.uri] = {"picked_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "kind": d.kind}
    fs, root = url_to_fs(landing_uri)
    path = _join(root, LEDGER)
    fs.makedirs(_join(root, ".reskd"), exist_ok=True)
    tmp = path + ".tmp"
    fs.pipe_file(tmp, json.dumps(seen, indent=1, sort_keys=True).encode())
    fs.mv(tmp, path)


def new_datasets(landing_uri: str) -> list[LandedDataset]:
    """Ready datasets not yet in the ledger."""
    seen = read_ledger(landing_uri)
    fresh = [d for d in ready_datasets(landing_uri) if d.uri not in seen]
    log.info("landing %s: %d new ready dataset(s)", landing_uri, len(fresh))
    return fresh
