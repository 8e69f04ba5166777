"""The network side of the cluster: Patroni's REST API and a one-query
PostgreSQL probe through ``psql`` (etcd: :class:`compose.etcd.EtcdGateway`).

Standard library only (plus the ``psql`` binary that ships with the server),
so ``python -m compose.patroni`` runs with any Python 3.10+. Every call takes
a timeout and raises :class:`ClusterError` (or ``OSError`` subclasses) when it
passes; nothing here retries: the callers' wait loops do.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any


class ClusterError(RuntimeError):
    """The cluster is missing, unhealthy, or an operation on it failed."""


def http_json(
    url: str, *, method: str = "GET", payload: object = None, timeout: float = 2.0
) -> tuple[int, Any]:
    """One HTTP request on loopback; returns (status, decoded JSON or text).

    HTTP error statuses are returned, not raised (Patroni answers 503 on
    purpose); connection failures and timeouts raise ``OSError``.
    """
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    text = body.decode(errors="replace")
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text.strip()


def psql_value(
    bin_dir: Path, port: int, password: str, query: str, *, user: str, timeout: float = 3.0
) -> str | None:
    """Run one query on 127.0.0.1:``port``; its single value, or None on any failure.

    The password travels in the child's environment only (never argv, never
    output). ``timeout`` bounds connect, statement and the child as a whole,
    so a frozen server costs at most ``timeout`` seconds.
    """
    env = {
        "PATH": "/usr/bin:/bin",
        "PGPASSWORD": password,
        "PGCONNECT_TIMEOUT": str(max(1, int(timeout))),
        "PGOPTIONS": f"-c statement_timeout={int(timeout * 1000)}",
        "LC_ALL": "C",
        "HOME": os.environ.get("HOME", "/"),
    }
    argv = [str(bin_dir / "psql"), "-X", "-A", "-t", "-q", "-w", "-h", "127.0.0.1",
            "-p", str(port), "-U", user, "-d", "postgres", "-c", query]  # fmt: skip
    try:
        result = subprocess.run(
            argv, capture_output=True, text=True, env=env, timeout=timeout + 1, check=False
        )
    except subprocess.TimeoutExpired:
        return None
    if result.returncode != 0:
        return None
    return result.stdout.strip()
