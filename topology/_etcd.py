"""A small etcd v3 client over etcd's own JSON gateway (HTTP/1.1, standard library only).

Why the gateway and not gRPC: Patroni itself talks to etcd v3 this way, so
any etcd that Patroni can use, this can; and it needs no ``grpcio`` /
``protobuf`` (tens of MB, native wheels) in an app's image. What it needs
from etcd is two calls: ``POST /v3/kv/range`` (read a prefix, with the
store's revision) and ``POST /v3/watch`` (a chunked response with one JSON
message per line, for as long as the connection lives).

Endpoints: a list of ``http://host:port``; a call that cannot reach one
(refused, timed out, an error status, or anything else the peer does wrong:
closing early, stalling, sending too much, JSON of the wrong shape) goes on
to the next, and the one that answered is tried first next time.
:class:`topology._http.Unreachable` carries the reason of every endpoint
tried. Credentials in an endpoint URL are refused (this client sends none),
and no message ever shows them (:func:`redacted`). Every answer is read
within :class:`topology._http.HttpLimits`.

Timeouts: every :meth:`EtcdGateway.range_prefix` call, connect included,
ends within ``timeout`` seconds per endpoint. :meth:`EtcdGateway.watch_prefix`
bounds the connect and the response head by ``timeout``, then waits for
events as long as the caller likes: its liveness is the caller's business
(a frozen etcd keeps the socket open); a message, once begun, must end
within ``timeout``. Cancelling either closes its socket.

Keys are UTF-8 (as Patroni writes them); :func:`prefix_end` works on their bytes.

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

from topology._http import (
    BadAnswer,
    Endpoints,
    HttpError,
    HttpLimits,
    Response,
    Unreachable,
    open_request,
    why,
)
from topology._within import within
from topology.errors import ConfigurationError
from topology.patroni_config import EtcdConfig

__all__ = ["EtcdEvent", "EtcdGateway", "parse_endpoints", "prefix_end", "redacted"]

log = logging.getLogger("topology")


@dataclass(frozen=True, slots=True)
class EtcdEvent:
    """One key's new value (``value`` None: deleted) at ``revision``."""

    key: str
    value: str | None
    revision: int


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _unb64(text: object) -> str:
    if not isinstance(text, str):
        raise BadAnswer(f"a key or value that is not base64 text: {type(text).__name__}")
    try:
        return base64.b64decode(text, validate=True).decode("utf-8", "replace")
    except ValueError:  # binascii.Error
        raise BadAnswer("a key or value that is not base64") from None


def prefix_end(prefix: str | bytes) -> bytes:
    """The first key after every key starting with ``prefix`` (etcd's ``range_end``).

    Computed on the key's UTF-8 bytes, as etcd stores them: the last byte
    below 0xff is incremented and what follows it dropped; a prefix of 0xff
    bytes only gives ``b"\\0"``, etcd's "every key from ``key`` on". An empty
    prefix would mean the whole store: refused (ConfigurationError), since
    no caller here means to read every key of an etcd it shares.
    """
    raw = prefix.encode() if isinstance(prefix, str) else bytes(prefix)
    if not raw:
        raise ConfigurationError("an empty etcd key prefix would read the whole store")
    stripped = raw.rstrip(b"\xff")
    if not stripped:
        return b"\0"
    return stripped[:-1] + bytes([stripped[-1] + 1])


def redacted(url: str) -> str:
    """``url`` without its user name and password (``http://***@host:2379``)."""
    scheme, sep, rest = url.rpartition("://")
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        authority = "***@" + authority.rpartition("@")[2]
    return f"{scheme}{sep}{authority}{slash}{path}"


def _endpoint(url: str, default_port: int, what: str) -> tuple[str, int]:
    shown = redacted(url)  # an endpoint's credentials never reach a message
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme != "http":
        raise ConfigurationError(
            f"{what} endpoint {shown!r}: only http:// is supported (https is not yet)"
        )
    if "@" in parts.netloc:
        raise ConfigurationError(
            f"{what} endpoint {shown!r}: credentials in the URL are not supported "
            "(this client sends none); remove them"
        )
    try:
        port = parts.port or default_port
        host = parts.hostname
    except ValueError as exc:
        raise ConfigurationError(f"{what} endpoint {shown!r}: bad port") from exc
    if not host:
        raise ConfigurationError(f"{what} endpoint {shown!r}: no host")
    return host, port


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
            return f"HTTP {status}: {str(error)[:200]!r}"
    return f"HTTP {status}"


def _number(value: object, what: str) -> int:
    """etcd's int64 (a JSON string of digits, or a number); BadAnswer otherwise."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value.isdigit() and len(value) <= 19:
        return int(value)
    raise BadAnswer(f"{what} is not a number: {str(value)[:24]!r}")


def _revision(message: dict[str, Any]) -> int:
    header = message.get("header")
    if not isinstance(header, dict):
        raise BadAnswer("an answer without a header")
    return _number(header.get("revision", 0), "the revision")


def _event(kv: object, deleted: bool = False) -> EtcdEvent:
    """One key-value of an answer; BadAnswer when it is not of etcd's shape."""
    if not isinstance(kv, dict):
        raise BadAnswer(f"a key-value that is not an object: {type(kv).__name__}")
    revision = _number(kv.get("mod_revision"), "a key's mod_revision")
    value = None if deleted else _unb64(kv.get("value", ""))
    return EtcdEvent(_unb64(kv.get("key")), value, revision)


def _range_answer(message: Any) -> tuple[int, list[EtcdEvent]]:
    if not isinstance(message, dict):
        raise BadAnswer(f"not an etcd range answer: {type(message).__name__}")
    kvs = message.get("kvs", [])
    if not isinstance(kvs, list):
        raise BadAnswer("not an etcd range answer: kvs is not a list")
    return _revision(message), [_event(kv) for kv in kvs]


class EtcdGateway:
    """Range and watch calls to the first etcd endpoint that answers (module docstring).

    ``limits``: the caps on what one answer may make us read (default
    :class:`topology._http.HttpLimits`: a range answer up to 8 MiB, a watch
    message up to 1 MiB).
    """

    def __init__(
        self,
        endpoints: str | Sequence[str] | EtcdConfig,
        *,
        timeout: float = 1.0,
        limits: HttpLimits | None = None,
    ) -> None:
        if isinstance(endpoints, EtcdConfig):
            if endpoints.username:
                raise ConfigurationError("etcd authentication is not supported yet")
            endpoints = endpoints.endpoints
        self.endpoints = Endpoints(parse_endpoints(endpoints))
        self.timeout = float(timeout)
        self.limits = limits or HttpLimits()
        self.requests = 0  # calls sent, watches included (for fleet measurements)

    def __repr__(self) -> str:
        return f"EtcdGateway({self.endpoints}, timeout={self.timeout})"

    async def range_prefix(self, prefix: str) -> tuple[int, list[EtcdEvent]]:
        """Every key under ``prefix`` and the store's revision (a linearizable read).

        Raises :class:`Unreachable` when no endpoint answers within ``timeout``
        each; whatever an endpoint does wrong (closes, stalls, sends too much
        or the wrong shape) is that endpoint's reason, and the next is tried.
        """
        body = {"key": _b64(prefix.encode()), "range_end": _b64(prefix_end(prefix))}
        reasons: dict[str, str] = {}
        for index, host, port in self.endpoints.in_turn():
            try:
                message = await within(self._call(host, port, body), self.timeout)
                answer = _range_answer(message)
            except Exception as exc:  # any peer's failure: its reason, then the next one
                reasons[f"{host}:{port}"] = _reason(exc)
                continue
            self.endpoints.answered(index)
            return answer
        raise Unreachable(f"range {prefix!r}", reasons)

    async def _call(self, host: str, port: int, body: dict[str, Any]) -> Any:
        self.requests += 1
        deadline = asyncio.get_running_loop().time() + self.timeout
        response = await open_request(host, port, "POST", "/v3/kv/range", body, self.limits)
        try:
            if response.status == 200:
                return await response.json(idle=self.timeout, deadline=deadline)
            try:
                message = await response.json(idle=self.timeout, deadline=deadline)
            except HttpError:
                message = None  # an error page that is not JSON: its status says enough
            raise HttpError(_error_words(response.status, message))
        finally:
            response.close()

    async def watch_prefix(
        self, prefix: str, start_revision: int
    ) -> AsyncIterator[tuple[int, list[EtcdEvent]]]:
        """Yield ``(revision, events)`` for every change under ``prefix`` from ``start_revision``.

        Connects to the first endpoint that answers within ``timeout``, then
        waits for events without a limit; a message, once begun, must end
        within ``timeout``. Raises :class:`Unreachable` when none answers, or
        when the stream ends, breaks, misbehaves (a cap exceeded, a stall
        mid-message, the wrong shape) or etcd cancels the watch (e.g.
        ``start_revision`` was compacted: read the prefix again).
        """
        body = {
            "create_request": {
                "key": _b64(prefix.encode()),
                "range_end": _b64(prefix_end(prefix)),
                "start_revision": str(start_revision),
            }
        }
        reasons: dict[str, str] = {}
        for index, host, port in self.endpoints.in_turn():
            endpoint = f"{host}:{port}"
            try:
                self.requests += 1
                opening = open_request(host, port, "POST", "/v3/watch", body, self.limits)
                response = await within(opening, self.timeout, Response.close)
            except Exception as exc:  # any peer's failure: its reason, then the next one
                reasons[endpoint] = _reason(exc)
                continue
            self.endpoints.answered(index)
            try:
                if response.status != 200:
                    raise Unreachable("watch", {endpoint: f"HTTP {response.status}"})
                async for message in response.json_lines(idle=self.timeout):
                    yield _watch_message(message, endpoint)
            except Unreachable:
                raise
            except Exception as exc:  # the stream broke or misbehaved
                raise Unreachable("watch", {endpoint: _reason(exc)}) from exc
            finally:
                response.close()
                with contextlib.suppress(Exception):
                    await asyncio.shield(
                        asyncio.wait_for(response.writer.wait_closed(), self.timeout)
                    )
            raise Unreachable("watch", {endpoint: "the stream ended"})
        raise Unreachable("watch", reasons)


def _reason(exc: Exception) -> str:
    """An endpoint's failure in words; an unexpected kind is logged (DEBUG) with its trace."""
    if not isinstance(exc, (OSError, asyncio.TimeoutError, HttpError, ValueError)):
        log.debug("unexpected failure of an etcd call", exc_info=exc)
    return why(exc)


def _watch_message(message: Any, endpoint: str) -> tuple[int, list[EtcdEvent]]:
    """One watch message's revision and events; Unreachable when etcd ended the watch.

    BadAnswer when the message is not of etcd's shape.
    """
    if not isinstance(message, dict):
        raise BadAnswer(f"not an etcd watch message: {type(message).__name__}")
    result = message.get("result")
    if not isinstance(result, dict):
        raise Unreachable("watch", {endpoint: _error_words(200, message)})
    if result.get("canceled"):
        reason = result.get("cancel_reason") or f"compacted at {result.get('compact_revision')}"
        raise Unreachable("watch", {endpoint: f"cancelled by etcd: {str(reason)[:200]!r}"})
    events = result.get("events", [])
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        raise BadAnswer("not an etcd watch message: events is not a list of objects")
    changes = [_event(event.get("kv"), event.get("type") == "DELETE") for event in events]
    return _revision(result), changes
