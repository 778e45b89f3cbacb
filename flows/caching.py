"""Stage cache keys and retry rules for the Prefect flows.

A stage is skipped on a rerun when its key matches: the dataset's content hash, the config sections
that stage reads, and the code version (a hash of the library and flow sources).
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any

_PERMANENT_OS_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)
_TRANSIENT_NAMES = (
    "ConnectionError",
    "ConnectTimeout",
    "ReadTimeout",
    "EndpointConnectionError",
    "ClientConnectorError",
    "ServerDisconnectedError",
    "SlowDown",
    "ServiceUnavailable",
)


@functools.cache
def code_version() -> str:
    """sha256 (12 hex) over the sources of ``reskd_core`` and ``flows``: any code change is a new version."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for pkg in ("reskd_core", "flows"):
        for path in sorted((root / pkg).rglob("*.py")):
            h.update(str(path.relative_to(root)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:12]


def stage_key(stage: str, *parts: Any) -> str:
    """Deterministic key of a stage from JSON-able parts (pydantic models are dumped first)."""

    def plain(p: Any) -> Any:
        return p.model_dump(mode="json") if hasattr(p, "model_dump") else p

    blob = json.dumps([stage, code_version(), *[plain(p) for p in parts]], sort_keys=True, default=str)
    return f"{stage}-{hashlib.sha256(blob.encode()).hexdigest()[:20]}"


def is_transient(exc: BaseException) -> bool:
    """True for errors worth retrying with back-off: connection drops, timeouts, throttling."""
    if isinstance(exc, _PERMANENT_OS_ERRORS):
        return False
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return True
        if any(c.__name__ in _TRANSIENT_NAMES for c in type(exc).__mro__):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def retry_on_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry only transient storage/network failures."""
    try:
        state.result()
    except Exception as e:  # noqa: BLE001 - the state's exception is what we classify
        return is_transient(e)
    return False
