"""The smallest HTTP/1.1 client that the DCS sources need (standard library only).

One request per connection (``Connection: close``), JSON bodies, and either
a whole answer (:meth:`Response.json`) or a stream read line by line
(:meth:`Response.json_lines`): etcd's JSON gateway streams a watch as one
JSON message per line. No TLS yet, no redirects, no keep-alive: the callers
make a request every few seconds at most.

Every byte read from the peer is bounded (:class:`HttpLimits`): the status
line, the number and the size of the headers, a whole body, each chunk, each
streamed line. Going over a cap raises :class:`TooLarge`, naming the
endpoint, the cap and its limit; an answer that is not HTTP, or is cut short,
raises :class:`BadAnswer`; a peer that stops sending, :class:`ReadTimeout`.
All three are :class:`HttpError` s. Reading body pieces of at most 64 KiB
keeps memory within a cap plus one piece, whatever the peer sends.

Timeouts: :func:`open_request` (connect + request + response head) is the
caller's to bound (:func:`topology._within.within`, which, unlike
``asyncio.wait_for`` on Python < 3.12, never loses a cancellation). After the head, every read must
deliver within ``idle`` seconds; a whole answer must also be complete by
``deadline`` (loop time). A stream may wait without limit *between* messages
(an idle watch is silent; its liveness is the caller's business), but a
message that has begun must end within ``idle`` seconds. On any failure or
cancellation before :func:`open_request` returns, the socket is closed;
after, the caller closes the :class:`Response`.

Example::

    response = await within(
        open_request("127.0.0.1", 8008, "GET", "/cluster"), 1.0, Response.close)
    try:
        document = await response.json(idle=1.0)
    finally:
        response.close()
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

from topology._http_body import BadAnswer, Body, HttpError, HttpLimits, ReadTimeout, TooLarge
from topology._within import within

__all__ = [
    "BadAnswer",
    "Endpoints",
    "HttpError",
    "HttpLimits",
    "ReadTimeout",
    "Response",
    "TooLarge",
    "Unreachable",
    "get_json",
    "open_request",
    "why",
]

_T = TypeVar("_T")


class Endpoints:
    """``(host, port)`` endpoints tried in turn, the one that answered last first.

    Not thread-safe: one event loop. Example::

        for index, host, port in endpoints.in_turn():
            ...  # on an answer: endpoints.answered(index)
    """

    def __init__(self, items: list[tuple[str, int]]) -> None:
        self.items = items
        self._first = 0

    def __str__(self) -> str:
        return ",".join(f"{host}:{port}" for host, port in self.items)

    def in_turn(self) -> list[tuple[int, str, int]]:
        count = len(self.items)
        indexes = [(self._first + step) % count for step in range(count)]
        return [(i, *self.items[i]) for i in indexes]

    def answered(self, index: int) -> None:
        self._first = index


@dataclass(slots=True)
class Response:
    """An answer's status and headers, and its body still on the socket (caller closes)."""

    status: int
    headers: dict[str, str]
    endpoint: str
    limits: HttpLimits
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    def close(self) -> None:
        self.writer.close()

    async def json(self, *, idle: float, deadline: float | None = None) -> Any:
        """The whole body as one JSON document (None when empty), within the caps."""
        body = Body(self.reader, self.headers, self.endpoint, self.limits, idle, deadline)
        data = bytearray()
        async for piece in body.pieces(stream=False):
            data += piece
        return _loads(data, self.endpoint) if data.strip() else None

    async def json_lines(self, *, idle: float) -> AsyncIterator[Any]:
        """The body's JSON messages, one per line, as they arrive (a stream; see module doc).

        Splitting is linear in the bytes received; a line over
        ``limits.line`` raises :class:`TooLarge`.
        """
        body = Body(self.reader, self.headers, self.endpoint, self.limits, idle, None)
        body.between_messages = True
        cap = self.limits.line
        partial = bytearray()
        async for piece in body.pieces(stream=True):
            start = 0
            while (end := piece.find(b"\n", start)) >= 0:
                partial += piece[start:end]
                start = end + 1
                if len(partial) > cap:
                    raise TooLarge(self.endpoint, "line", cap)
                if partial.strip():
                    yield _loads(partial, self.endpoint)
                partial = bytearray()
            partial += piece[start:]
            if len(partial) > cap:
                raise TooLarge(self.endpoint, "line", cap)
            body.between_messages = not partial.strip()
        if partial.strip():
            yield _loads(partial, self.endpoint)


def _loads(data: bytes | bytearray, endpoint: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:  # RecursionError: "[[[[..." nested deep
        raise BadAnswer(f"{endpoint}: not JSON ({type(exc).__name__})") from None


async def _bounded(what: Awaitable[_T], endpoint: str, where: str) -> _T:
    """``what``, with the peer's misbehaviour turned into typed errors naming ``endpoint``."""
    try:
        return await what
    except asyncio.LimitOverrunError:
        raise BadAnswer(f"{endpoint}: {where} line too long") from None
    except asyncio.IncompleteReadError:
        raise BadAnswer(f"{endpoint}: closed the connection in the {where}") from None


async def _read_head(
    reader: asyncio.StreamReader, endpoint: str, limits: HttpLimits
) -> tuple[int, dict[str, str]]:
    status_line = await _bounded(reader.readuntil(b"\n"), endpoint, "status")
    if len(status_line) > limits.status_line:
        raise TooLarge(endpoint, "status_line", limits.status_line)
    fields = status_line.split(b" ", 2)
    if len(fields) < 2 or not fields[0].startswith(b"HTTP/") or not fields[1].isdigit():
        raise BadAnswer(f"{endpoint}: not an HTTP answer: {status_line[:40]!r}")
    headers: dict[str, str] = {}
    size = count = 0
    while (line := await _bounded(reader.readuntil(b"\n"), endpoint, "header")) not in (
        b"\r\n",
        b"\n",
    ):
        size, count = size + len(line), count + 1
        if size > limits.header_bytes:
            raise TooLarge(endpoint, "header_bytes", limits.header_bytes)
        if count > limits.header_count:
            raise TooLarge(endpoint, "header_count", limits.header_count, unit="headers")
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(fields[1]), headers


async def open_request(
    host: str,
    port: int,
    method: str,
    path: str,
    body: Any = None,
    limits: HttpLimits | None = None,
) -> Response:
    """Send one request; return the status, the headers and the open stream (caller closes).

    Unbounded in time: wrap it in :func:`topology._within.within`. Bounded in bytes by
    ``limits`` (default :class:`HttpLimits`).
    """
    limits = limits or HttpLimits()
    endpoint = f"{host}:{port}"
    # The stream's own limit bounds each line read with readuntil (status, headers, chunk sizes).
    reader, writer = await asyncio.open_connection(host, port, limit=limits.header_bytes)
    try:
        payload = b"" if body is None else json.dumps(body).encode()
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: application/json\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
            "Connection: close\r\n\r\n"
        )
        writer.write(head.encode() + payload)
        await writer.drain()
        status, headers = await _read_head(reader, endpoint, limits)
    except BaseException:  # timed out or cancelled too: never leave the socket open
        writer.close()
        raise
    return Response(status, headers, endpoint, limits, reader, writer)


async def get_json(
    host: str, port: int, path: str, *, timeout: float, limits: HttpLimits | None = None
) -> tuple[int, Any]:
    """``GET path``: the status and the JSON document (None when the body is empty).

    The whole call, connect included, ends within ``timeout`` seconds
    (``asyncio.TimeoutError`` or :class:`ReadTimeout` otherwise).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    opening = open_request(host, port, "GET", path, None, limits)
    response = await within(opening, timeout, Response.close)
    try:
        document = await response.json(idle=timeout, deadline=deadline)
    finally:
        response.close()
    return response.status, document


class Unreachable(Exception):
    """No endpoint answered (etcd, Patroni REST); ``reasons`` maps each endpoint tried to why."""

    def __init__(self, call: str, reasons: dict[str, str], what: str = "etcd") -> None:
        self.reasons = dict(reasons)
        detail = "; ".join(f"{endpoint}: {words}" for endpoint, words in reasons.items())
        super().__init__(f"{what} {call}: no endpoint answered ({detail})")


def why(exc: BaseException) -> str:
    """Why a call failed, in a few words (no secrets: our calls carry none).

    A peer's text appears only inside our errors' messages, repr-escaped and cut short.
    """
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, Unreachable):
        return "; ".join(exc.reasons.values())
    text = str(exc)
    return f"{type(exc).__name__}: {text}"[:200] if text else type(exc).__name__
