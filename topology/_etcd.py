"""A small etcd v3 client over etcd's own JSON gateway (HTTP/1.1, standard library only).

Why the gateway and not gRPC: Patroni itself talks to etcd v3 this way, so
any etcd that Patroni can use, this can; and it needs no ``grpcio`` /
``protobuf`` (tens of MB, native wheels) in an app's image. What it needs
from etcd is two calls: ``POST /v3/kv/range`` (read a prefix, with the
store's revision) and ``POST /v3/watch`` (a chunked response with one JSON
message per line, for as long as the connection lives).

Endpoints: a list of ``http://host:port``; a call that cannot reach one
(refused, timed out, an error status) goes on to the next, and the one that
answered is tried first next time. :class:`topology._http.Unreachable` carries the
reason of every endpoint tried.

Timeouts: every :meth:`EtcdGateway.range_prefix` call, connect included,
ends within ``timeout`` seconds per endpoint. :meth:`EtcdGateway.watch_prefix`
bounds the connect and the response head by ``timeout``, then waits for
events as long as the caller likes: its liveness is the caller's business
(a frozen etcd keeps the socket open). Cancelling either closes its socket.

Example::

    etcd = EtcdGateway(["http://127.0.0.1:2379"], timeout=1.0)
    revision, kvs = await etcd.range_prefix("/service/demo/")
    async for revision, events in etcd.watch_prefix("/service/demo/", revision + 1):
        ...
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from topology._http import Endpoints, HttpError, Unreachable, json_lines, open_request, why
from topology.errors import ConfigurationError

__all__ = ["EtcdEvent", "EtcdGateway", "parse_endpoints", "prefix_end"]

log = logging.getLogger("topology")


@dataclass(frozen=True, slots=True)
class EtcdEvent:
    """One key's new value (``value`` None: deleted) at ``revision``."""

    key: str
    value: str | None
    revision: int


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _unb64(text: str) -> str:
    return base64.b64decode(text).decode("utf-8", "replace")


def prefix_end(prefix: str) -> str:
    """The first key after every key starting with ``prefix`` (etcd's ``range_end``)."""
    raw = prefix.encode()
    return (raw[:-1] + bytes([raw[-1] + 1])).decode("latin-1")


def _endpoint(url: str, default_port: int, what: str) -> tuple[str, int]:
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme != "http":
        raise ConfigurationError(
            f"{what} endpoint {url!r}: only http:// is supported (https is not yet)"
        )
    if not parts.hostname:
        raise ConfigurationError(f"{what} endpoint {url!r}: no host")
    try:
        port = parts.port or default_port
    except ValueError as exc:
        raise ConfigurationError(f"{what} endpoint {url!r}: bad port") from exc
    return parts.hostname, port


def parse_endpoints(
    endpoints: str | Sequence[str], default_port: int = 2379, what: str = "etcd"
) -> list[tuple[str, int]]:
    """``"http://h1:2379,h2:2379"`` or a list of them; ConfigurationError if bad or empty."""
    items = endpoints.split(",") if isinstance(endpoints, str) else list(endpoints)
    parsed = [_endpoint(item.strip(), default_port, what) for item in items if item.strip()]
    if not parsed:
        raise ConfigurationError(f"no {what} endpoint given")
    return parsed


def _error_words(status: int, message: Any) -> str:
    if isinstance(message, dict):
        error = message.get("error")
        if isinstance(error, dict):  # a watch stream's error message
            error = error.get("message")
        if error:
            return f"HTTP {status}: {str(error)[:200]}"
    return f"HTTP {status}"


class EtcdGateway:
    """Range and watch calls to the first etcd endpoint that answers (module docstring)."""

    def __init__(self, endpoints: str | Sequence[str], *, timeout: float = 1.0) -> None:
        self.endpoints = Endpoints(parse_endpoints(endpoints))
        self.timeout = float(timeout)
        self.requests = 0  # calls sent, watches included (for fleet measurements)

    def __repr__(self) -> str:
        return f"EtcdGateway({self.endpoints}, timeout={self.timeout})"

    async def range_prefix(self, prefix: str) -> tuple[int, list[EtcdEvent]]:
        """Every key under ``prefix`` and the store's revision (a linearizable read).

        Raises :class:`Unreachable` when no endpoint answers within ``timeout`` each.
        """
        body = {"key": _b64(prefix), "range_end": _b64(prefix_end(prefix))}
        reasons: dict[str, str] = {}
        for index, host, port in self.endpoints.in_turn():
            try:
                message = await asyncio.wait_for(self._call(host, port, body), self.timeout)
            except (OSError, asyncio.TimeoutError, HttpError, ValueError) as exc:
                reasons[f"{host}:{port}"] = why(exc)
                continue
            self.endpoints.answered(index)
            revision = int(message.get("header", {}).get("revision", 0))
            events = [
                EtcdEvent(_unb64(kv["key"]), _unb64(kv.get("value", "")), int(kv["mod_revision"]))
                for kv in message.get("kvs", ())
            ]
            return revision, events
        raise Unreachable(f"range {prefix!r}", reasons)

    async def _call(self, host: str, port: int, body: dict[str, Any]) -> Any:
        self.requests += 1
        status, headers, reader, writer = await open_request(
            host, port, "POST", "/v3/kv/range", body
        )
        try:
            messages = [message async for message in json_lines(reader, headers)]
        finally:
            writer.close()
        message = messages[0] if messages else {}
        if status != 200:
            raise HttpError(_error_words(status, message))
        return message

    async def watch_prefix(
        self, prefix: str, start_revision: int
    ) -> AsyncIterator[tuple[int, list[EtcdEvent]]]:
        """Yield ``(revision, events)`` for every change under ``prefix`` from ``start_revision``.

        Connects to the first endpoint that answers within ``timeout``, then
        waits for events without a limit. Raises :class:`Unreachable` when
        none answers, or when the stream ends or etcd cancels the watch
        (e.g. ``start_revision`` was compacted: read the prefix again).
        """
        body = {
            "create_request": {
                "key": _b64(prefix),
                "range_end": _b64(prefix_end(prefix)),
                "start_revision": str(start_revision),
            }
        }
        reasons: dict[str, str] = {}
        for index, host, port in self.endpoints.in_turn():
            try:
                self.requests += 1
                opened = await asyncio.wait_for(
                    open_request(host, port, "POST", "/v3/watch", body), self.timeout
                )
            except (OSError, asyncio.TimeoutError, HttpError) as exc:
                reasons[f"{host}:{port}"] = why(exc)
                continue
            self.endpoints.answered(index)
            status, headers, reader, writer = opened
            try:
                if status != 200:
                    raise Unreachable("watch", {f"{host}:{port}": f"HTTP {status}"})
                async for message in json_lines(reader, headers):
                    yield _watch_message(message, f"{host}:{port}")
            except (OSError, ValueError, asyncio.IncompleteReadError) as exc:
                raise Unreachable("watch", {f"{host}:{port}": why(exc)}) from exc
            finally:
                writer.close()
                with contextlib.suppress(Exception):
                    await asyncio.shield(asyncio.wait_for(writer.wait_closed(), self.timeout))
            raise Unreachable("watch", {f"{host}:{port}": "the stream ended"})
        raise Unreachable("watch", reasons)


def _watch_message(message: Any, endpoint: str) -> tuple[int, list[EtcdEvent]]:
    result = message.get("result")
    if not isinstance(result, dict):
        raise Unreachable("watch", {endpoint: _error_words(200, message)})
    if result.get("canceled"):
        why = result.get("cancel_reason") or f"compacted at {result.get('compact_revision')}"
        raise Unreachable("watch", {endpoint: f"cancelled by etcd: {why}"})
    revision = int(result.get("header", {}).get("revision", 0))
    events = []
    for event in result.get("events", ()):
        kv = event["kv"]
        deleted = event.get("type") == "DELETE"
        value = None if deleted else _unb64(kv.get("value", ""))
        events.append(EtcdEvent(_unb64(kv["key"]), value, int(kv["mod_revision"])))
    return revision, events
