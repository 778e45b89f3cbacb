"""Local paths and ``s3://`` URIs through one fsspec interface.

The S3 endpoint and keys come from the usual environment (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ...), read by botocore; they are never logged.
"""

from __future__ import annotations

import os
import posixpath
import re
import uuid
from pathlib import Path, PurePosixPath
from typing import Any

import fsspec
from fsspec.core import url_to_fs


def is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


def _options(uri: str) -> dict[str, Any]:
    # botocore reads AWS_ENDPOINT_URL itself in recent versions; passing it keeps older ones working too.
    if uri.startswith(("s3://", "s3a://")):
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            return {"endpoint_url": endpoint}
    return {}


def filesystem(uri: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """``(fs, path)`` for a local path or URI."""
    return url_to_fs(uri, **_options(uri))


def join(uri: str, *parts: str) -> str:
    """``join('s3://b/p', 'x.parquet') -> 's3://b/p/x.parquet'``; local paths stay local."""
    if is_remote(uri):
        return posixpath.join(uri.rstrip("/"), *parts)
    return str(Path(uri, *parts))


def exists(uri: str) -> bool:
    fs, path = filesystem(uri)
    return fs.exists(path)


def read_bytes(uri: str) -> bytes:
    fs, path = filesystem(uri)
    return fs.cat_file(path)


def read_text(uri: str) -> str:
    return read_bytes(uri).decode("utf-8")


def open_input(uri: str, block_size: int = 4 << 20):
    """A seekable binary file for reading (range requests on S3)."""
    fs, path = filesystem(uri)
    if is_remote(uri):
        return fs.open(path, "rb", block_size=block_size, cache_type="readahead")
    return fs.open(path, "rb")


def makedirs(uri: str) -> None:
    fs, path = filesystem(uri)
    if not is_remote(uri):
        fs.makedirs(path, exist_ok=True)  # object stores have no directories


def listdir(uri: str) -> list[str]:
    """Base names directly under ``uri`` (empty when it does not exist)."""
    fs, path = filesystem(uri)
    fs.invalidate_cache(path)
    if not fs.exists(path):
        return []
    return sorted(posixpath.basename(p.rstrip("/")) for p in fs.ls(path, detail=False))


def remove(uri: str) -> None:
    fs, path = filesystem(uri)
    if fs.exists(path):
        fs.rm_file(path)


def put_file(local: str | Path, uri: str) -> None:
    """Move a finished local file to ``uri`` so it appears whole or not at all.

    Local: ``os.replace`` (atomic on one file system). S3: one PUT, and an object becomes visible only
    when its upload completes.
    """
    if is_remote(uri):
        fs, path = filesystem(uri)
        fs.put_file(str(local), path)
        os.unlink(local)
    else:
        Path(uri).parent.mkdir(parents=True, exist_ok=True)
        os.replace(local, uri)


def write_bytes_atomic(uri: str, data: bytes) -> None:
    """Write a small object (a manifest) whole: temporary name + rename locally, one PUT on S3."""
    if is_remote(uri):
        fs, path = filesystem(uri)
        fs.pipe_file(path, data)
        return
    target = Path(uri)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.write_bytes(data)
    os.replace(tmp, target)


def safe_relative(path: str) -> str | None:
    """``path`` normalised if it stays inside its root, else None (absolute, ``..``, a URI, a drive)."""
    if (
        not path
        or "://" in path
        or "\\" in path
        or path.startswith(("/", "~"))
        or re.match(r"[A-Za-z]:", path)
    ):
        return None
    parts = PurePosixPath(path).parts
    if any(p == ".." for p in parts):
        return None
    norm = posixpath.normpath(path)
    return None if norm in (".", "") else norm
