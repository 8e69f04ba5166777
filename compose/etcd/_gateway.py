"""A small blocking client of etcd's v3 JSON gateway over TLS with a user and password.

Standard library only (``urllib`` + ``ssl``), for the launcher, the drills and
the tests: health, put, range and delete on a TLS + auth etcd. Not the
application's client (that is ``topology``'s).

Authentication: ``POST /v3/auth/authenticate`` gives a token sent in the
``Authorization`` header; when etcd answers that the token is invalid or
expired (HTTP 401), the client authenticates once more and retries the call
once. Every call is bounded by ``timeout`` (connect and each read) and reads
at most ``MAX_BODY`` bytes. The password is never in a repr or an error;
etcd's error message is (it names the operation, never the password).
Not thread-safe: one client per thread.
"""

from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAX_BODY = 1 << 20


class EtcdError(RuntimeError):
    """etcd refused a call (``status`` is the HTTP status, 0 when none came back)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@dataclass
class EtcdGateway:
    """One endpoint (``https://127.0.0.1:PORT``), the CA, a client cert and credentials."""

    endpoint: str
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = 2.0
    _token: str | None = field(default=None, repr=False)

    def _context(self) -> ssl.SSLContext | None:
        if not self.endpoint.startswith("https://"):
            return None
        context = ssl.create_default_context(cafile=str(self.ca) if self.ca else None)
        if self.cert is not None:
            context.load_cert_chain(str(self.cert), str(self.key) if self.key else None)
        return context

    def _send(self, path: str, body: object | None, token: str | None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.endpoint.rstrip("/") + path, data=data)
        if token is not None:
            request.add_header("Authorization", token)
        try:
            with urllib.request.urlopen(
                request, timeout=self.timeout, context=self._context()
            ) as response:
                status, raw = response.status, response.read(MAX_BODY + 1)
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read(MAX_BODY + 1)
        if len(raw) > MAX_BODY:
            raise EtcdError(f"etcd answered {path} with more than {MAX_BODY} bytes", status)
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode(errors="replace")[:200]

    def authenticate(self) -> str:
        """A fresh token for ``username`` (EtcdError when etcd refuses the password)."""
        if self.username is None:
            raise EtcdError("no username to authenticate with")
        status, body = self._send(
            "/v3/auth/authenticate", {"name": self.username, "password": self.password or ""}, None
        )
        if status != 200 or not isinstance(body, dict) or "token" not in body:
            raise EtcdError(f"etcd refused to authenticate {self.username!r}: "
                            f"HTTP {status}: {_message(body)}", status)  # fmt: skip
        self._token = str(body["token"])
        return self._token

    def call(self, path: str, body: object) -> Any:
        """POST ``body`` to ``path`` with a token; one re-authentication on HTTP 401."""
        if self.username is not None and self._token is None:
            self.authenticate()
        status, answer = self._send(path, body, self._token)
        if status == 401 and self.username is not None:
            self.authenticate()
            status, answer = self._send(path, body, self._token)
        if status != 200 or not isinstance(answer, dict):
            raise EtcdError(f"etcd refused {path}: HTTP {status}: {_message(answer)}", status)
        return answer

    def healthy(self) -> bool:
        """True when ``GET /health`` says so; False on any failure (never raises)."""
        try:
            status, body = self._send("/health", None, None)
        except (OSError, EtcdError, ssl.SSLError):
            return False
        return status == 200 and isinstance(body, dict) and body.get("health") == "true"

    def put(self, key: str, value: str) -> None:
        self.call("/v3/kv/put", {"key": _b64(key), "value": _b64(value)})

    def get(self, key: str) -> str | None:
        """The value of ``key``, or None when it does not exist."""
        kvs = self.call("/v3/kv/range", {"key": _b64(key)}).get("kvs", [])
        return base64.b64decode(kvs[0].get("value", "")).decode() if kvs else None

    def delete(self, key: str) -> int:
        """Delete ``key``; how many keys were deleted (0 or 1)."""
        return int(self.call("/v3/kv/deleterange", {"key": _b64(key)}).get("deleted", 0))


def _message(body: object) -> str:
    if isinstance(body, dict):
        return str(body.get("error") or body.get("message") or "")[:200]
    return str(body)[:200]
