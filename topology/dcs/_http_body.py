"""What an HTTP peer we do not trust may make us read: :class:`HttpLimits` and the typed errors.

The transport (:mod:`topology.dcs._http`, over httpx) holds every answer to
:class:`HttpLimits`; this module has the caps, the errors a misbehaving peer
becomes, and the two bounded readers of a body: :func:`read_whole` (one JSON
document) and :class:`LineSplitter` (a stream of one JSON message per line,
etcd's watch). Neither keeps more than its cap plus one piece (httpx hands
over at most 64 KiB per read), whatever the peer sends.

Errors are :class:`HttpError` s whose messages name the endpoint and, for a
cap, the cap and its limit; never a secret (no request header is ever put in
a message), and the peer's own bytes only repr-escaped and cut short.
Nothing here waits: timeouts are the transport's (see :mod:`topology.dcs._http`).
:func:`mapped` turns httpx's errors into these, judging by the exception types
under httpx's (h11's, ssl's, the OS's); :func:`ssl_context` loads the TLS files.
"""

from __future__ import annotations

import contextlib
import json
import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import h11
import httpx

from topology.dcs.patroni_config import TlsFiles
from topology.errors import ConfigurationError

__all__ = [
    "BadAnswer",
    "Disconnected",
    "HttpError",
    "HttpLimits",
    "LineSplitter",
    "ReadTimeout",
    "TlsError",
    "TooLarge",
    "declared_length",
    "loads",
    "mapped",
    "read_whole",
    "ssl_context",
]

_MIB = 1024 * 1024
_H11_HEAD = 100 * 1024  # httpcore's h11 max_incomplete_event_size: a head over it is refused


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """Caps on what one response may make us read, in bytes (``header_count``: headers).

    ``body``: a whole (non-streamed) answer, e.g. etcd's range of a prefix
    (Patroni's keys for a few members are a few KiB); ``line``: one streamed
    message (a watch event batch); ``status_line``, ``header_count``,
    ``header_bytes``: the response head (h11, under httpx, also refuses a head
    over 100 KiB as it reads: reported as ``header_bytes``). ``chunk``: kept
    for compatibility; httpx does not show chunk boundaries, so a chunked
    body is held to ``body`` (a whole answer) or ``line`` (a stream) instead.
    """

    status_line: int = 1024
    header_count: int = 100
    header_bytes: int = 64 * 1024
    body: int = 8 * _MIB
    chunk: int = 8 * _MIB
    line: int = _MIB

    def __post_init__(self) -> None:
        for name in ("status_line", "header_count", "header_bytes", "body", "chunk", "line"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigurationError(
                    f"HttpLimits.{name} must be a positive integer, not {value!r}"
                )


class HttpError(Exception):
    """Not an HTTP answer, or not the one expected."""


class BadAnswer(HttpError, ValueError):
    """The peer's answer is not well-formed HTTP or JSON, or not of the expected shape."""


class TooLarge(HttpError):
    """The peer sent more than one of :class:`HttpLimits`' caps allows."""

    def __init__(self, endpoint: str, cap: str, limit: int, unit: str = "bytes") -> None:
        self.endpoint, self.cap, self.limit = endpoint, cap, limit
        shown = (
            f"{limit // _MIB} MiB" if unit == "bytes" and limit % _MIB == 0 else f"{limit} {unit}"
        )
        super().__init__(f"{endpoint}: over the {cap} cap of {shown} (HttpLimits.{cap})")


class ReadTimeout(HttpError):
    """The peer stopped sending mid-answer (or sent too slowly to finish in time)."""


class Disconnected(BadAnswer):
    """The peer closed the connection before a byte of its answer."""


class TlsError(HttpError):
    """The TLS handshake failed: the server's certificate not trusted, or ours refused.

    ``alert`` is True when the server ended the session with a TLS alert
    after the handshake (TLS 1.3 checks the client's certificate then).
    """

    alert = False


def loads(data: bytes | bytearray, endpoint: str) -> Any:
    """One JSON document; BadAnswer when it is not JSON (or nested too deep to parse)."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:  # RecursionError: "[[[[..." nested deep
        raise BadAnswer(f"{endpoint}: not JSON ({type(exc).__name__})") from None


def declared_length(headers: Any, endpoint: str) -> int | None:
    """The ``Content-Length`` the peer announced, if any; BadAnswer when it is not a number."""
    text = headers.get("content-length")
    if text is None:
        return None
    if not text.isdigit() or len(text) > 19:
        raise BadAnswer(f"{endpoint}: bad Content-Length {text[:24]!r}")
    return int(text)


async def read_whole(pieces: AsyncIterator[bytes], endpoint: str, limits: HttpLimits) -> bytes:
    """Every piece of a body, up to ``limits.body`` bytes (TooLarge past it)."""
    data = bytearray()
    async for piece in pieces:
        data += piece
        if len(data) > limits.body:
            raise TooLarge(endpoint, "body", limits.body)
    return bytes(data)


class LineSplitter:
    """Splits a stream into JSON messages, one per line; each line within ``cap`` bytes.

    Linear in the bytes fed; ``partial`` says whether a message has begun
    (the transport then holds the peer to its idle timeout).
    """

    def __init__(self, endpoint: str, cap: int) -> None:
        self.endpoint = endpoint
        self.cap = cap
        self._partial = bytearray()

    @property
    def partial(self) -> bool:
        return bool(self._partial.strip())

    def feed(self, piece: bytes) -> list[Any]:
        messages = []
        start = 0
        while (end := piece.find(b"\n", start)) >= 0:
            self._partial += piece[start:end]
            start = end + 1
            self._check()
            if self._partial.strip():
                messages.append(loads(self._partial, self.endpoint))
            self._partial = bytearray()
        self._partial += piece[start:]
        self._check()
        return messages

    def end(self) -> list[Any]:
        """What is left when the stream ends (a last line without its newline)."""
        left, self._partial = self._partial, bytearray()
        return [loads(left, self.endpoint)] if left.strip() else []

    def _check(self) -> None:
        if len(self._partial) > self.cap:
            raise TooLarge(self.endpoint, "line", self.cap)


def ssl_context(tls: TlsFiles) -> ssl.SSLContext:
    """A client context verifying the server (``tls.cacert``, else the system's CAs).

    Reads the files now (ConfigurationError naming the file's role when one
    cannot be loaded; no file content is ever shown).
    """
    try:
        context = ssl.create_default_context(cafile=tls.cacert)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(f"cannot load the CA file {tls.cacert!r} ({exc})") from None
    if tls.cert:
        try:
            context.load_cert_chain(tls.cert, tls.key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(
                f"cannot load the client certificate {tls.cert!r} / key {tls.key!r} "
                f"({type(exc).__name__})"
            ) from None
    return context


@contextlib.contextmanager
def mapped(endpoint: str, phase: str) -> Iterator[None]:
    """httpx's errors as ours (see the module docstring); ``phase``: head, body or stream."""
    try:
        yield
    except httpx.TimeoutException as exc:
        if isinstance(exc, httpx.ConnectTimeout):
            raise ReadTimeout(f"{endpoint}: the connection was not made in time") from None
        raise ReadTimeout(f"{endpoint}: the {phase} did not arrive in time (timeout)") from None
    except httpx.TransportError as exc:
        raise _transport_error(exc, endpoint, phase) from None
    except ssl.SSLError as exc:
        # An alert read after the handshake: anyio passes it on as it came, and
        # neither httpcore nor httpx maps it. ``reason`` is OpenSSL's constant.
        reason = getattr(exc, "reason", None) or "SSLError"
        error = TlsError(f"{endpoint}: TLS alert from the server ({reason})")
        error.alert = True
        raise error from None


def _transport_error(exc: httpx.TransportError, endpoint: str, phase: str) -> Exception:
    """Judged by the exception types under httpx's (h11's, ssl's, the OS's), not by text."""
    causes = _causes(exc)
    for cause in causes:
        if isinstance(cause, ssl.SSLCertVerificationError):
            words = cause.verify_message or "certificate verify failed"
            return TlsError(f"{endpoint}: TLS: the server's certificate is not trusted ({words})")
        if isinstance(cause, ssl.SSLError):
            error = TlsError(f"{endpoint}: TLS handshake failed ({cause.reason or 'SSLError'})")
            error.alert = "_ALERT_" in (cause.reason or "")  # OpenSSL's constant: the peer's alert
            return error
        if isinstance(cause, h11.RemoteProtocolError):
            return _protocol_error(cause, endpoint, phase)
        if isinstance(cause, ConnectionRefusedError):
            return ConnectionRefusedError(f"{endpoint}: connection refused")
        if isinstance(cause, OSError) and cause.errno is not None:
            return OSError(cause.errno, f"{endpoint}: {cause.strerror}")
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError)) and phase == "head":
        return Disconnected(f"{endpoint}: closed the connection before answering")
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError)):
        return BadAnswer(f"{endpoint}: closed the connection mid-{phase}")
    return HttpError(f"{endpoint}: {type(exc).__name__}")


def _protocol_error(cause: h11.RemoteProtocolError, endpoint: str, phase: str) -> Exception:
    if cause.error_status_hint == 431:  # h11's "receive buffer too long": a head over 100 KiB
        return TooLarge(endpoint, "header_bytes", _H11_HEAD)
    if phase == "head":
        return BadAnswer(f"{endpoint}: not an HTTP answer (h11: {str(cause)[:60]!r})")
    # h11 says "peer closed connection without sending complete message body: incomplete
    # chunked read" (or "... received N bytes, expected M"): its own words, not the peer's.
    text = str(cause)
    if text.startswith("peer closed connection"):
        where = "mid-chunk" if "chunked" in text else "mid-body"
        return BadAnswer(f"{endpoint}: closed the connection {where}")
    return BadAnswer(f"{endpoint}: a malformed body framing (h11: {text[:60]!r})")


def _causes(exc: BaseException) -> list[BaseException]:
    found: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(found) < 8:
        found.append(current)
        current = current.__cause__ or current.__context__
    return found
