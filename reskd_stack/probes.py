"""Probes of the stack's services: an HTTP answer, an open TCP port, a free port, a Prefect worker
heartbeating, a Ray node alive in the GCS. Each answers at once (a few seconds at most), never raises."""

from __future__ import annotations

import contextlib
import json
import socket
import urllib.error
import urllib.request

from reskd_stack.settings import StackSettings


def http_ok(url: str, method: str = "GET", body: bytes | None = None) -> bytes | None:
    """The body when ``url`` answers 2xx within 3 s, else None."""
    req = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=3) as r:
            return r.read() if 200 <= r.status < 300 else None
    except (OSError, urllib.error.URLError):
        return None


def tcp_ok(host: str, port: int) -> bool:
    """Something accepts TCP connections on ``host:port`` (within 2 s)."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=2):
        return True
    return False


def port_free(host: str, port: int) -> bool:
    """``host:port`` can be bound now (nothing listens on it)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def worker_online(s: StackSettings, name: str) -> bool:
    """Prefect worker ``name`` is registered on the pool and heartbeating (status ONLINE)."""
    body = http_ok(f"http://{s.host}:{s.prefect_port}/api/work_pools/{s.pool}/workers/filter", "POST", b"{}")
    return body is not None and any(
        w["name"] == name and w.get("status") == "ONLINE" for w in json.loads(body)
    )


def ray_nodes(s: StackSettings) -> list | None:
    """The GCS's node table (Ray's ``GcsNodeInfo`` records), or None when the GCS does not answer."""
    if not tcp_ok(s.host, s.ray_port):
        return None
    try:
        from ray._raylet import GcsClient  # Ray's own GCS client; imported here, it costs a second

        return list(GcsClient(address=f"{s.host}:{s.ray_port}").get_all_node_info(timeout=3).values())
    except Exception:  # noqa: BLE001 - GCS not ready (or gone): the callers treat it as unknown
        return None


def ray_node_alive(s: StackSettings, node_manager_port: int, since_ms: float = 0) -> bool:
    """The GCS lists an ALIVE node on ``node_manager_port`` started after ``since_ms`` (epoch ms).

    The start time tells a restarted node from the killed one the GCS still lists until it notices.
    """
    if not tcp_ok(s.host, node_manager_port):
        return False
    return any(
        n.node_manager_port == node_manager_port and n.state == 0 and n.start_time_ms >= since_ms  # 0: ALIVE
        for n in ray_nodes(s) or []
    )


def ray_node_released(s: StackSettings, node_manager_port: int) -> bool:
    """No node the GCS still counts ALIVE sits on ``node_manager_port`` (or there is no GCS to ask).

    A killed node stays ALIVE in the GCS until its health checks fail (about 15 s). A new node started on
    the same address before that shares it with a ghost: calls meant for the dead node's actors reach the
    new node's processes, which take the same ports, and Ray Train's restart can wait on them.
    """
    nodes = ray_nodes(s)
    return nodes is None or not any(n.node_manager_port == node_manager_port and n.state == 0 for n in nodes)
