"""What a dataset URI holds, its fingerprint, and where its shards go.

A dataset given to the pipeline is a folder (local or ``s3://``) holding either

* extracted shards: ``manifest.json`` plus the Parquet files, used as they are; or
* videos and annotations: by default the recipe's file names inside that folder (the demo layout:
  ``annotations.txt``, ``videos/``, ``classes.txt``); an optional ``dataset.yaml`` inside it sets any
  ``extract`` field (format, annotations, video_root, labels_file, split, ...), paths relative to the folder
  (:mod:`reskd_core.dataset_spec`).

The fingerprint names the dataset's content without decoding it: the manifest's content hash for
shards; for videos a hash of the annotation and label files' bytes and of the video listing (path, size).
"""

from __future__ import annotations

import hashlib
import logging
import posixpath

from pydantic import ValidationError

from reskd_core.config import Config, ExtractConfig
from reskd_core.data import shards, storage
from reskd_core.dataset_spec import one_line, read_spec

log = logging.getLogger(__name__)

_PATH_FIELDS = ("annotations", "video_root", "labels_file")


def is_shards(dataset_uri: str) -> bool:
    return storage.exists(storage.join(dataset_uri, shards.MANIFEST))


def extract_config_for(cfg: Config, dataset_uri: str) -> ExtractConfig:
    """The extraction settings for the videos in ``dataset_uri`` (see the module docstring)."""
    fields = cfg.extract.model_dump()
    for name in _PATH_FIELDS:
        if fields.get(name):
            fields[name] = posixpath.basename(str(fields[name]).rstrip("/"))
    fields.update(read_spec(dataset_uri).extract)
    for name in _PATH_FIELDS:
        value = fields.get(name)
        if value and "://" not in str(value) and not str(value).startswith("/"):
            fields[name] = storage.join(dataset_uri, str(value))
    try:
        return ExtractConfig.model_validate(fields)
    except ValidationError as e:
        raise ValueError(one_line(f"extract settings for {dataset_uri} are invalid", e)) from None


def fingerprint(dataset_uri: str, extract_cfg: ExtractConfig | None = None) -> str:
    """Content fingerprint (sha256 hex) of the dataset at ``dataset_uri``; ``ValueError`` if it holds none."""
    if not storage.exists(dataset_uri):
        raise ValueError(f"dataset {dataset_uri} does not exist")
    if is_shards(dataset_uri):
        return shards.read_manifest(dataset_uri)["content_hash"]
    if extract_cfg is None:
        raise ValueError(f"{dataset_uri} holds no manifest.json: its extraction settings are needed")
    if not storage.exists(extract_cfg.annotations):
        raise ValueError(
            f"dataset {dataset_uri} holds neither {shards.MANIFEST} (shards) nor the annotation file "
            f"{extract_cfg.annotations}"
        )
    h = hashlib.sha256()
    for uri in (extract_cfg.annotations, extract_cfg.labels_file):
        if uri and storage.exists(uri):
            h.update(storage.read_bytes(uri))
    fs, root = storage.filesystem(extract_cfg.video_root)
    if fs.exists(root):
        for path, info in sorted(fs.find(root, detail=True).items()):
            h.update(f"{posixpath.relpath(path, root)}:{info.get('size')}\n".encode())
    return h.hexdigest()


def shards_location(
    storage_root: str, dataset_uri: str, fingerprint_hex: str, extract_cfg: ExtractConfig
) -> str:
    """Where the pipeline writes a dataset's shards: ``<storage_root>/shards/<name>-<fp>-<settings>``.

    Shards given ready (a manifest in ``dataset_uri``) stay where they are. The name carries the
    extraction settings' hash, so other settings never reuse or overwrite these shards.
    """
    if is_shards(dataset_uri):
        return dataset_uri
    settings = hashlib.sha256(extract_cfg.model_dump_json().encode()).hexdigest()[:8]
    name = posixpath.basename(dataset_uri.rstrip("/")) or "dataset"
    return storage.join(storage_root, "shards", f"{name}-{fingerprint_hex[:12]}-{settings}")
