"""Parquet shards of JPEG frames: the schema, atomic shard writing, manifest.json and errors.json.

A shards URI (a local folder or ``s3://bucket/prefix``) holds ``{split}-{index}-{digest}.parquet``
files, ``errors.json`` and ``manifest.json``, written last: a reader that finds the manifest finds
every shard it lists complete. The digest names the shard's inputs (its videos and the extraction
settings), so a rerun recognises finished shards and skips them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from reskd_core.data import storage

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
ERRORS = "errors.json"
FORMAT_VERSION = 1
META_KEY = b"reskd"  # Parquet key-value metadata: {"split", "errors"} of the shard

SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("video", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("label", pa.int32(), nullable=False),
        pa.field("labels", pa.list_(pa.int32()), nullable=False),
        pa.field("segment_start", pa.float64()),
        pa.field("segment_end", pa.float64()),
        pa.field("fps", pa.float32(), nullable=False),
        pa.field("width", pa.int32(), nullable=False),
        pa.field("height", pa.int32(), nullable=False),
        pa.field("num_frames", pa.int32(), nullable=False),
        pa.field("frame_width", pa.int32(), nullable=False),
        pa.field("frame_height", pa.int32(), nullable=False),
        pa.field("frame_indices", pa.list_(pa.int32()), nullable=False),
        pa.field("frames", pa.list_(pa.binary()), nullable=False),
    ]
)
SMALL_COLUMNS = [f.name for f in SCHEMA if f.name != "frames"]


@dataclass
class ShardInfo:
    file: str
    rows: int
    row_groups: list[int]
    bytes: int
    sha256: str
    errors: list[dict] = field(default_factory=list)

    def entry(self) -> dict:
        d = asdict(self)
        d.pop("errors")
        return d


class ShardWriter:
    """Rows in, one Parquet file out, made visible only by :meth:`commit`.

    Rows are written a row group at a time (``row_group_size``), so a shard never sits whole in memory.
    """

    def __init__(self, uri: str, split: str, row_group_size: int) -> None:
        self.uri, self.split, self.row_group_size = uri, split, row_group_size
        name = os.path.basename(uri)
        if storage.is_remote(uri):
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp")
            os.close(fd)
            self.tmp = Path(tmp)
        else:
            self.tmp = Path(uri).with_name(f".{name}.tmp-{os.getpid()}")
        self.pending: list[dict] = []
        self.row_groups: list[int] = []
        self.errors: list[dict] = []
        self._writer: pq.ParquetWriter | None = None

    def _open(self) -> pq.ParquetWriter:
        if self._writer is None:
            self.tmp.parent.mkdir(parents=True, exist_ok=True)
            self._writer = pq.ParquetWriter(
                self.tmp,
                SCHEMA,
                compression="zstd",
                use_dictionary=["split"],
                write_statistics=SMALL_COLUMNS,
                store_schema=True,
            )
        return self._writer

    def add(self, row: dict) -> None:
        self.pending.append(row)
        if len(self.pending) >= self.row_group_size:
            self._flush()

    def _flush(self) -> None:
        if self.pending:
            self._open().write_table(pa.Table.from_pylist(self.pending, SCHEMA))
            self.row_groups.append(len(self.pending))
            self.pending = []

    def commit(self) -> ShardInfo:
        """Close the file and move it to its final name; returns what the manifest lists."""
        self._flush()
        writer = self._open()
        writer.add_key_value_metadata(
            {META_KEY: json.dumps({"split": self.split, "errors": self.errors}, sort_keys=True).encode()}
        )
        writer.close()
        size, digest = self.tmp.stat().st_size, _sha256_file(self.tmp)
        storage.put_file(self.tmp, self.uri)
        return ShardInfo(
            os.path.basename(self.uri), sum(self.row_groups), self.row_groups, size, digest, self.errors
        )

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self.tmp.unlink(missing_ok=True)


def _sha256_file(path: Path | str, fh=None) -> str:
    h = hashlib.sha256()
    with fh if fh is not None else open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def shard_info(uri: str) -> ShardInfo:
    """What a finished shard holds (from its footer), with its file hash (the file is read once)."""
    with storage.open_input(uri) as f:
        meta = pq.ParquetFile(f).metadata
        extra = json.loads((meta.metadata or {}).get(META_KEY, b"{}"))
        groups = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    fs, path = storage.filesystem(uri)
    return ShardInfo(
        os.path.basename(uri),
        meta.num_rows,
        groups,
        fs.size(path),
        _sha256_file(None, storage.open_input(uri)),
        extra.get("errors", []),
    )


def content_hash(splits: dict[str, dict]) -> str:
    """One hash of every shard's bytes: equal for two extractions that produced identical shards."""
    h = hashlib.sha256()
    for split in sorted(splits):
        for s in splits[split]["shards"]:
            h.update(f"{split}/{s['file']}:{s['sha256']}\n".encode())
    return h.hexdigest()


def read_manifest(uri: str) -> dict:
    """The manifest of the shards at ``uri`` (local folder or ``s3://`` prefix).

    Raises ``ValueError`` naming the URI when there is none (not extracted, or extraction unfinished).
    """
    path = storage.join(uri, MANIFEST)
    try:
        manifest = json.loads(storage.read_bytes(path))
    except FileNotFoundError:
        raise ValueError(
            f"no {MANIFEST} under {uri}: the shards are not extracted there "
            "(or their extraction has not finished); "
            f"run `reskd extract ... --out {uri}`"
        ) from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None
    if manifest.get("format") != "reskd-shards":
        raise ValueError(f"{path} is not a reskd shards manifest")
    return manifest


def write_manifest(uri: str, manifest: dict) -> None:
    storage.write_bytes_atomic(storage.join(uri, MANIFEST), json.dumps(manifest, indent=2).encode())


def write_errors(uri: str, report: dict) -> None:
    storage.write_bytes_atomic(storage.join(uri, ERRORS), json.dumps(report, indent=2).encode())


def read_errors(uri: str) -> dict | None:
    try:
        return json.loads(storage.read_bytes(storage.join(uri, ERRORS)))
    except FileNotFoundError:
        return None


def split_shards(manifest: dict, split: str, uri: str) -> list[dict]:
    """The shard entries of ``split``, each with its full ``uri``; a clear error for an unknown split."""
    splits = manifest.get("splits", {})
    if split not in splits:
        raise ValueError(
            f"shards at {uri} have no split {split!r}; they have: {', '.join(sorted(splits)) or 'none'}"
        )
    return [{**s, "uri": storage.join(uri, s["file"])} for s in splits[split]["shards"]]
