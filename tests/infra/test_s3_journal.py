"""The local stack's S3 server keeps every object across a crash: kill -9, start again, read back."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from tests.support.processes import free_port, start, stop, wait_http

REPO = Path(__file__).resolve().parents[2]


def s3_server(port: int, journal: Path, log: Path):
    proc = start(
        [
            sys.executable,
            str(REPO / "infra/local/s3_server.py"),
            "--port",
            str(port),
            "--journal",
            str(journal),
        ],
        log,
    )
    wait_http(f"http://127.0.0.1:{port}/moto-api/", timeout=60, proc=proc, log=log)
    return proc


def test_objects_survive_kill_9(tmp_path, monkeypatch):
    import boto3
    import pyarrow as pa
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq
    import s3fs

    port, journal, log = free_port(), tmp_path / "journal.jsonl", tmp_path / "s3.log"
    endpoint = f"http://127.0.0.1:{port}"
    for k, v in {
        "AWS_ACCESS_KEY_ID": "k",
        "AWS_SECRET_ACCESS_KEY": "s",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
    }.items():
        monkeypatch.setenv(k, v)
    big = os.urandom(6 * 2**20 + 123)  # two multipart parts with a 5 MiB block
    proc = s3_server(port, journal, log)
    try:
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="bkt")
        s3.put_object(Bucket="bkt", Key="a/small.txt", Body=b"hello")
        s3.put_object(Bucket="bkt", Key="a/gone.txt", Body=b"bye")
        s3.delete_object(Bucket="bkt", Key="a/gone.txt")
        s3.put_object(Bucket="bkt", Key="a/over.txt", Body=b"v1")
        s3.put_object(Bucket="bkt", Key="a/over.txt", Body=b"v2")
        fs = s3fs.S3FileSystem(skip_instance_cache=True)
        with fs.open("bkt/a/multipart.bin", "wb", block_size=5 * 2**20) as f:
            f.write(big)
        fs.pipe("bkt/a/odd name+%.txt", b"odd")
        # pyarrow's own S3 client streams with chunked transfer encoding (no Content-Length)
        arrow = pafs.S3FileSystem(endpoint_override=f"127.0.0.1:{port}", scheme="http")
        pq.write_table(pa.table({"x": list(range(500))}), "bkt/a/t.parquet", filesystem=arrow)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # a crash: no chance to flush or clean up
        proc.wait(10)

    proc = s3_server(port, journal, log)
    try:
        fs = s3fs.S3FileSystem(skip_instance_cache=True)
        assert sorted(fs.ls("bkt/a")) == [
            f"bkt/a/{n}"
            for n in sorted(["small.txt", "over.txt", "multipart.bin", "odd name+%.txt", "t.parquet"])
        ]
        assert fs.cat("bkt/a/small.txt") == b"hello"
        assert fs.cat("bkt/a/over.txt") == b"v2"
        assert fs.cat("bkt/a/multipart.bin") == big
        assert fs.cat("bkt/a/odd name+%.txt") == b"odd"
        arrow = pafs.S3FileSystem(endpoint_override=f"127.0.0.1:{port}", scheme="http")
        assert pq.read_table("bkt/a/t.parquet", filesystem=arrow).column("x").to_pylist() == list(range(500))
        assert "replayed" in log.read_text()
    finally:
        stop(proc)


def test_torn_last_line_is_skipped(tmp_path):
    """A kill -9 in the middle of a journal write leaves a partial line: start-up skips it."""
    import boto3

    port, journal, log = free_port(), tmp_path / "journal.jsonl", tmp_path / "s3.log"
    endpoint = f"http://127.0.0.1:{port}"
    client = dict(
        endpoint_url=endpoint, aws_access_key_id="k", aws_secret_access_key="s", region_name="us-east-1"
    )
    proc = s3_server(port, journal, log)
    try:
        boto3.client("s3", **client).create_bucket(Bucket="bkt")
    finally:
        stop(proc)
    with open(journal, "a") as f:
        f.write('{"headers": {"Host": "x"}, "method": "PUT", "url": "http://')
    proc = s3_server(port, journal, log)
    try:
        assert [b["Name"] for b in boto3.client("s3", **client).list_buckets()["Buckets"]] == ["bkt"]
        assert "torn journal line" in log.read_text()
    finally:
        stop(proc)
