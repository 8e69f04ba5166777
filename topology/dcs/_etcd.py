"""A small etcd v3 client over etcd's own JSON gateway (HTTP/1.1 over httpx, TLS, auth).

Why the gateway and not gRPC: Patroni itself talks to etcd v3 this way, so
any etcd that Patroni can use, this can; and it needs no ``grpcio`` /
``protobuf`` (tens of MB, native wheels) in an app's image. What it needs
from etcd is two calls: ``POST /v3/kv/range`` (read a prefix, with the
store's revision) and ``POST /v3/watch`` (a chunked response with one JSON
message per line, for as long as the connection lives); and, with a user
name, ``POST /v3/auth/authenticate`` for a token.

Endpoints: ``http(s)://host:port`` (Patroni's ``etcd3`` hosts and protocol;
see :class:`topology.dcs.patroni_config.EtcdConfig`, which also carries the TLS
files and the credentials); a call that cannot reach one (refused, timed
out, TLS refused, an error status, or anything else the peer does wrong:
closing early, stalling, sending too much, JSON of the wrong shape) goes on
to the next, and the one that answered is tried first next time.
:class:`topology.dcs._http.Unreachable` carries the reason of every endpoint
tried. Credentials in an endpoint URL are refused, and no message ever shows
them (:func:`redacted`). Every answer is read within
:class:`topology.dcs._http.HttpLimits`. One pooled keep-alive client per gateway
(:class:`topology.dcs._http.HttpClient`), closed by :meth:`EtcdGateway.aclose`.

Authentication (etcd's own, as Patroni's ``username``/``password``): a token
from ``/v3/auth/authenticate``, sent as the ``Authorization`` header on every
range and watch. When etcd says the token is no longer valid (gRPC code 16,
``Unauthenticated``, HTTP 401: etcd expires simple tokens after
``--auth-token-ttl`` unused, and a member restart forgets them) the gateway
authenticates again and retries, once. A watch that etcd cancels as it is
created drops the token too (etcd 3.4 says "permission denied" for an
expired token there, without a code), so the next call authenticates
afresh. A user name or password that etcd refuses (code 3,
``InvalidArgument``, on authenticate) or a user without read permission
(code 7) is :class:`AuthFailed`: raised at once, not tried on other
endpoints, and never retried in a loop here. The password and the token are
never in a repr, a message or a log line.

Timeouts: every HTTP request, connect included, ends within ``timeout``
seconds per endpoint; with authentication a call may make up to three
(authenticate, the call, the call again after a refresh).
:meth:`EtcdGateway.watch_prefix` bounds the connect and the response head by
``timeout``, then waits for events as long as the caller likes: its
liveness is the caller's business (a frozen etcd keeps the socket open); a
message, once begun, must end within ``timeout``. Cancelling either closes
its connection.

Keys are UTF-8 (as Patroni writes them); :func:`prefix_end` works on their bytes.

Example::

    etcd = EtcdGateway(EtcdConfig(("https://10.0.0.1:2379",), TlsFiles("ca.pem", "app.pem",
                       "app.key"), "app", secret), timeout=1.0)
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

from topology.dcs._http import (
    BadAnswer,
    Endpoints,
    HttpClient,
    HttpError,
    HttpLimits,
    Unreachable,
    shown,
    why,
)
from topology.dcs.patroni_config import EtcdConfig, TlsFiles, parse_endpoints, redacted
from topology.errors import ConfigurationError

__all__ = [
    "AuthFailed",
    "EtcdEvent",
    "EtcdGateway",
    "parse_endpoints",
    "prefix_end",
    "redacted",
]

log = logging.getLogger("topology")
_UNAUTHENTICATED, _INVALID_ARGUMENT, _PERMISSION_DENIED, _FAILED_PRECONDITION = 16, 3, 7, 9


class AuthFailed(HttpError):
    """etcd refused our credentials, or the user may not read the prefix (permanent)."""


@dataclass(frozen=True, slots=True)
class EtcdEvent:
    """One key's new value (``value`` None: deleted) at ``revision``."""

    key: str
    value: str | None
    revision: int
    created: int = 0  # the key's create_revision (0: not given, e.g. a deletion)


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


def _grpc_code(message: Any) -> int | None:
    """The gRPC status code of an etcd error answer (``code``, or a stream's ``grpc_code``)."""
    if not isinstance(message, dict):
        return None
    error = message.get("error")
    code = error.get("grpc_code") if isinstance(error, dict) else message.get("code")
    return code if isinstance(code, int) and not isinstance(code, bool) else None


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
    created = 0 if deleted else _number(kv.get("create_revision", 0), "a create_revision")
    return EtcdEvent(_unb64(kv.get("key")), value, revision, created)


def _range_answer(message: Any) -> tuple[int, list[EtcdEvent]]:
    if not isinstance(message, dict):
        raise BadAnswer(f"not an etcd range answer: {type(message).__name__}")
    kvs = message.get("kvs", [])
    if not isinstance(kvs, list):
        raise BadAnswer("not an etcd range answer: kvs is not a list")
    return _revision(message), [_event(kv) for kv in kvs]


class EtcdGateway:
    """Range and watch calls to the first etcd endpoint that answers (module docstring).

    ``endpoints``: base URLs, or an :class:`EtcdConfig` (endpoints, TLS files,
    credentials). ``limits``: the caps on what one answer may make us read
    (default :class:`topology.dcs._http.HttpLimits`: a range answer up to 8 MiB,
    a watch message up to 1 MiB). A TLS file that cannot be loaded is a
    ConfigurationError here.
    """

    def __init__(
        self,
        endpoints: str | Sequence[str] | EtcdConfig,
        *,
        timeout: float = 1.0,
        limits: HttpLimits | None = None,
    ) -> None:
        if isinstance(endpoints, EtcdConfig):
            config = endpoints
            urls = parse_endpoints(config.endpoints)
        else:
            urls = parse_endpoints(endpoints)
            config = EtcdConfig(tuple(urls))
        self.endpoints = Endpoints(urls)
        self.timeout = float(timeout)
        self.limits = limits or HttpLimits()
        self.username = config.username
        self._password = config.password
        self._token: str | None = None  # "": etcd said authentication is not enabled
        self.client = HttpClient(config.tls, timeout=self.timeout, limits=self.limits)
        self.requests = 0  # HTTP requests sent, watches and authentications included
        self.authentications = 0

    @property
    def tls(self) -> TlsFiles:
        return self.client.tls

    def __repr__(self) -> str:
        user = f", user={self.username!r}" if self.username else ""
        return f"EtcdGateway({self.endpoints}, timeout={self.timeout}{user})"

    async def aclose(self) -> None:
        """Close the pooled connections (the gateway opens new ones if used again)."""
        await self.client.aclose()

    async def _headers(self, url: str) -> dict[str, str] | None:
        """The ``Authorization`` header, authenticating first when there is no token."""
        if not self.username:
            return None
        if self._token is None:
            self._token = await self._authenticate(url)
        return {"Authorization": self._token} if self._token else None

    async def _authenticate(self, url: str) -> str:
        """A fresh token from ``url``; AuthFailed when etcd refuses the credentials."""
        self.requests += 1
        self.authentications += 1
        body = {"name": self.username, "password": self._password}
        status, message = await self.client.request_json(
            "POST", f"{url}/v3/auth/authenticate", body
        )
        token = message.get("token") if isinstance(message, dict) else None
        if status == 200 and isinstance(token, str) and token:
            return token
        code = _grpc_code(message)
        if code == _INVALID_ARGUMENT:
            raise AuthFailed(
                f"{shown(url)}: etcd refused the user name or password of user "
                f"{self.username!r} (check etcd3 username/password)"
            )
        if code == _FAILED_PRECONDITION:
            log.debug("etcd %s: authentication is not enabled; no token sent", shown(url))
            return ""
        raise HttpError(f"{shown(url)}: authenticate: {_error_words(status, message)}")

    async def _call(self, url: str, path: str, body: dict[str, Any]) -> Any:
        """One JSON call with the token; once more after a refresh when etcd says it expired."""
        for attempt in (1, 2):
            headers = await self._headers(url)
            self.requests += 1
            status, message = await self.client.request_json("POST", url + path, body, headers)
            if status == 200:
                return message
            code = _grpc_code(message)
            if self.username and (status == 401 or code == _UNAUTHENTICATED) and attempt == 1:
                self._token = None  # expired or revoked: authenticate again, once
                continue
            if self.username and (status == 403 or code == _PERMISSION_DENIED):
                raise AuthFailed(
                    f"{shown(url)}: etcd user {self.username!r} may not read this prefix"
                )
            raise HttpError(_error_words(status, message))
        raise AssertionError("unreachable")  # pragma: no cover

    async def range_prefix(self, prefix: str) -> tuple[int, list[EtcdEvent]]:
        """Every key under ``prefix`` and the store's revision (a linearizable read).

        Raises :class:`Unreachable` when no endpoint answers (each request
        within ``timeout``); whatever an endpoint does wrong (refuses TLS,
        closes, stalls, sends too much or the wrong shape) is that endpoint's
        reason, and the next is tried. :class:`AuthFailed` at once.
        """
        body = {"key": _b64(prefix.encode()), "range_end": _b64(prefix_end(prefix))}
        reasons: dict[str, str] = {}
        for index, url in self.endpoints.in_turn():
            try:
                answer = _range_answer(await self._call(url, "/v3/kv/range", body))
            except AuthFailed:
                raise
            except Exception as exc:  # any peer's failure: its reason, then the next one
                reasons[shown(url)] = _reason(exc)
                continue
            self.endpoints.answered(index)
            return answer
        raise Unreachable(f"range {prefix!r}", reasons)

    async def watch_prefix(
        self, prefix: str, start_revision: int
    ) -> AsyncIterator[tuple[int, list[EtcdEvent]]]:
        """Yield ``(revision, events)`` for every change under ``prefix`` from ``start_revision``.

        Connects to the first endpoint that answers within ``timeout``, then
        waits for events without a limit; a message, once begun, must end
        within ``timeout``. Raises :class:`Unreachable` when none answers, or
        when the stream ends, breaks, misbehaves (a cap exceeded, a stall
        mid-message, the wrong shape) or etcd cancels the watch (e.g.
        ``start_revision`` was compacted, or the token was refused: read the
        prefix again); :class:`AuthFailed` at once.
        """
        body = {
            "create_request": {
                "key": _b64(prefix.encode()),
                "range_end": _b64(prefix_end(prefix)),
                "start_revision": str(start_revision),
            }
        }
        reasons: dict[str, str] = {}
        for index, url in self.endpoints.in_turn():
            endpoint = shown(url)
            try:
                headers = await self._headers(url)
                self.requests += 1
                stream = await self.client.open_stream("POST", f"{url}/v3/watch", body, headers)
            except AuthFailed:
                raise
            except Exception as exc:  # any peer's failure: its reason, then the next one
                reasons[endpoint] = _reason(exc)
                continue
            self.endpoints.answered(index)
            try:
                if stream.status != 200:
                    self._drop_token(stream.status == 401)
                    raise Unreachable("watch", {endpoint: f"HTTP {stream.status}"})
                async for message in stream.json_lines(idle=self.timeout):
                    yield self._watched(message, endpoint)
            except Unreachable:
                raise
            except Exception as exc:  # the stream broke or misbehaved
                raise Unreachable("watch", {endpoint: _reason(exc)}) from exc
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.shield(asyncio.wait_for(stream.aclose(), self.timeout))
            raise Unreachable("watch", {endpoint: "the stream ended"})
        raise Unreachable("watch", reasons)

    def _drop_token(self, when: bool) -> None:
        if when and self.username:
            self._token = None

    def _watched(self, message: Any, endpoint: str) -> tuple[int, list[EtcdEvent]]:
        """:func:`_watch_message`, dropping the token when etcd refused the watch for it."""
        try:
            return _watch_message(message, endpoint)
        except Unreachable:
            result = message.get("result") if isinstance(message, dict) else None
            refused_at_creation = isinstance(result, dict) and bool(result.get("created"))
            self._drop_token(refused_at_creation or _grpc_code(message) == _UNAUTHENTICATED)
            raise


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
