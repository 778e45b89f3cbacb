"""moto's S3 server mode with a write-ahead journal, so a restart (even ``kill -9``) keeps every object.

moto holds its state in memory; the local stack has to survive an S3 restart the way MinIO does. Every
mutating request is appended to a JSON-lines journal (the format of moto's own recorder) before moto
handles it, and on start-up the journal is replayed in-process before the port opens, so no client ever
sees a half-restored bucket.

    python infra/local/s3_server.py --host 127.0.0.1 --port 9000 --journal .stack/s3/journal.jsonl
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import logging
import re
import signal
import sys
import threading
from collections import defaultdict, deque
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

from moto.moto_api import recorder
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import run_simple
from werkzeug.test import Client

log = logging.getLogger("reskd.s3_server")

MUTATING = {"PUT", "POST", "DELETE"}
# The client recomputes framing headers; replaying stale ones would corrupt the body.
DROP_HEADERS = {"content-length", "transfer-encoding", "host"}


def journal_requests(path: Path) -> None:
    """Append every mutating request to ``path`` (one JSON line each) before moto handles it."""
    lock = threading.Lock()
    record = recorder._record_request

    def record_mutating(request, body=None) -> None:
        if request.method not in MUTATING:
            return
        if body is None and "Content-Length" not in request.headers:
            # Chunked uploads (pyarrow's S3 client) carry no length: moto's recorder would store an
            # empty body. Read it here and hand moto an equivalent stream.
            body = request.get_data()
            request.environ["wsgi.input"] = io.BytesIO(body)
        with lock:  # one line per request even when threads race
            record(request, body)

    recorder._location = str(path)
    recorder._user_enabled = True
    recorder._record_request = record_mutating


def replay(app: DomainDispatcherApplication, path: Path) -> int:
    """Re-apply the journal to a fresh moto app; returns the number of requests replayed.

    Multipart upload ids are random, so the ids a replayed CreateMultipartUpload returns are mapped onto
    the recorded ones, in order, per object.
    """
    if not path.exists():
        return 0
    client = Client(app)
    new_ids: dict[str, deque[str]] = defaultdict(deque)
    id_map: dict[str, str] = {}
    n = 0
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            log.warning("skipping a torn journal line (the server was killed mid-write)")
            continue
        url = urlsplit(entry["url"])
        query = parse_qsl(url.query, keep_blank_values=True)
        for i, (k, v) in enumerate(query):
            if k == "uploadId":
                if v not in id_map and new_ids[url.path]:
                    id_map[v] = new_ids[url.path].popleft()
                query[i] = (k, id_map.get(v, v))
        body = entry.get("body") or ""
        data = base64.b64decode(body) if entry.get("body_encoded") else body.encode()
        headers = {k: v for k, v in (entry.get("headers") or {}).items() if k.lower() not in DROP_HEADERS}
        headers["Host"] = url.netloc
        resp = client.open(
            url.path, method=entry["method"], query_string=urlencode(query), headers=headers, data=data
        )
        if entry["method"] == "POST" and any(k == "uploads" for k, _ in query):
            m = re.search(rb"<UploadId>([^<]+)</UploadId>", resp.get_data())
            if m:
                new_ids[url.path].append(m.group(1).decode())
        n += 1
    return n


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--journal", type=Path, required=True, help="JSON-lines journal of mutating requests")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

    app = DomainDispatcherApplication(create_backend_app)
    args.journal.parent.mkdir(parents=True, exist_ok=True)
    n = replay(app, args.journal)
    log.info("replayed %d journalled requests from %s", n, args.journal)
    journal_requests(args.journal)
    run_simple(args.host, args.port, app, threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
