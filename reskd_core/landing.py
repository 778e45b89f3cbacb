"""Finding new datasets dropped into a landing location (a local folder or an ``s3://`` prefix).

A dataset is one sub-folder, ``<landing>/<name>/``, or one version of a named dataset,
``<landing>/<name>/<version>/``. It is *ready* when it holds ``manifest.json`` (extracted shards; the
manifest is written last, so its presence means the shards are complete) or the marker file ``_READY``
(annotations + videos; the uploader writes the marker after the last video). A half-copied folder
has neither and is left alone. Its ``dataset.yaml`` may rename it and its version
(:mod:`reskd_core.dataset_spec`); :func:`checked` validates that file with its recipe before anything
runs. Datasets already picked up are listed in ``<landing>/.reskd/seen.json``, so each is reported once.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, replace

from fsspec.core import url_to_fs

log = logging.getLogger(__name__)

READY_MARKERS = ("manifest.json", "_READY")
LEDGER = ".reskd/seen.json"


@dataclass(frozen=True)
class LandedDataset:
    uri: str
    kind: str  # "shards" (manifest.json) or "videos" (_READY marker)
    name: str = ""  # the dataset's name: its folder, or <name> of <name>/<version>/
    version: str | None = None  # <version> of <name>/<version>/; None for a single folder


def _join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *parts])


def _uri(path: str, landing_uri: str) -> str:
    """fsspec lists paths without the protocol: put it back so the URI opens anywhere."""
    return landing_uri.split("://", 1)[0] + "://" + path if "://" in landing_uri else path


def ready_datasets(landing_uri: str) -> list[LandedDataset]:
    """Every ready dataset under ``landing_uri``, sorted by name."""
    fs, root = url_to_fs(landing_uri)
    fs.invalidate_cache()  # all of it: listings of the folders below are cached too
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
    for entry in _folders(fs, root):
        name = _base(entry)
        found = _ready(fs, entry)
        if found:
            out.append(LandedDataset(_uri(entry, landing_uri), found, name))
            continue
        for sub in _folders(fs, entry):  # landing/<name>/<version>/
            if found := _ready(fs, sub):
                out.append(LandedDataset(_uri(sub, landing_uri), found, name, _base(sub)))
    return out


def _base(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def _folders(fs, path: str) -> list[str]:
    """Sub-folders of ``path`` by name, hidden ones (``.reskd``) left out."""
    entries = sorted(fs.ls(path, detail=True), key=lambda e: e["name"])
    return [
        e["name"].rstrip("/")
        for e in entries
        if e["type"] == "directory" and not _base(e["name"]).startswith(".")
    ]


def _ready(fs, path: str) -> str | None:
    """``shards`` or ``videos`` when ``path`` holds its ready marker, else None."""
    for marker, kind in zip(READY_MARKERS, ("shards", "videos"), strict=True):
        if fs.exists(_join(path, marker)):
            return kind
    return None


def checked(d: LandedDataset) -> LandedDataset:
    """``d`` with the name and version its ``dataset.yaml`` gives, once that file, its recipe and
    overrides and its extraction settings validate; else ``ValueError``, one line naming file and field."""
    from reskd_core.data.layout import extract_config_for, is_shards
    from reskd_core.dataset_spec import dataset_config, read_spec

    spec = read_spec(d.uri)
    cfg = dataset_config(d.uri, spec)
    if not is_shards(d.uri):
        extract_config_for(cfg, d.uri)
    return replace(d, name=spec.name or d.name, version=spec.version or d.version)


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
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        seen[d.uri] = {"picked_at": now, "kind": d.kind, "name": d.name, "version": d.version}
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
