"""The smallest HTTP/1.1 client that the DCS watches need (standard library only).

One request per connection (``Connection: close``), JSON bodies, and either
a whole answer or a chunked one read line by line: etcd's JSON gateway
streams a watch as one JSON message per line. No TLS yet, no redirects, no
keep-alive: the callers make a request every few seconds at most.

Timeouts are the caller's: wrap :func:`open_request` (connect + request +
response head) in ``asyncio.wait_for``; on any failure or cancellation
before it returns, the socket is closed. After it returns, the caller owns
the socket and must close the writer.

Example::

    status, headers, reader, writer = await asyncio.wait_for(
        open_request("127.0.0.1", 8008, "GET", "/cluster"), 1.0)
    try:
        answer = [message async for message in json_lines(reader, headers)]
    finally:
        writer.close()
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

__all__ = ["Endpoints", "HttpError", "Unreachable", "get_json", "json_lines", "open_request", "why"]

MAX_LINE = 4 * 1024 * 1024  # one message; Patroni's values are a few hundred bytes


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


class HttpError(Exception):
    """Not an HTTP answer, or not the one expected."""


async def open_request(
    host: str, port: int, method: str, path: str, body: Any = None
) -> tuple[int, dict[str, str], asyncio.StreamReader, asyncio.StreamWriter]:
    """Send one request; return the status, the headers and the open stream (caller closes)."""
    reader, writer = await asyncio.open_connection(host, port, limit=MAX_LINE)
    try:
        payload = b"" if body is None else json.dumps(body).encode()
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: application/json\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
            "Connection: close\r\n\r\n"
        )
        writer.write(head.encode() + payload)
        await writer.drain()
        status_line = await reader.readline()
        fields = status_line.split(b" ", 2)
        if len(fields) < 2 or not fields[1].isdigit():
            raise HttpError(f"not an HTTP answer: {status_line[:40]!r}")
        headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
    except BaseException:  # timed out or cancelled too: never leave the socket open
        writer.close()
        raise
    return int(fields[1]), headers, reader, writer


async def _chunks(reader: asyncio.StreamReader, headers: dict[str, str]) -> AsyncIterator[bytes]:
    if headers.get("transfer-encoding", "").lower() != "chunked":
        length = headers.get("content-length")
        yield await (reader.readexactly(int(length)) if length else reader.read())
        return
    while True:
        size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
        if size == 0:
            return
        data = await reader.readexactly(size)
        await reader.readexactly(2)  # the CRLF after each chunk
        yield data


async def json_lines(reader: asyncio.StreamReader, headers: dict[str, str]) -> AsyncIterator[Any]:
    """The JSON messages of a body, one per line (a single document is one message)."""
    buffer = b""
    async for chunk in _chunks(reader, headers):
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if line.strip():
                yield json.loads(line)
    if buffer.strip():
        yield json.loads(buffer)


async def get_json(host: str, port: int, path: str) -> tuple[int, Any]:
    """``GET path``: the status and the JSON document (None when the body is empty)."""
    status, headers, reader, writer = await open_request(host, port, "GET", path)
    try:
        body = b"".join([chunk async for chunk in _chunks(reader, headers)])
    finally:
        writer.close()
    return status, json.loads(body) if body.strip() else None


class Unreachable(Exception):
    """No endpoint answered (etcd, Patroni REST); ``reasons`` maps each endpoint tried to why."""

    def __init__(self, call: str, reasons: dict[str, str], what: str = "etcd") -> None:
        self.reasons = dict(reasons)
        detail = "; ".join(f"{endpoint}: {words}" for endpoint, words in reasons.items())
        super().__init__(f"{what} {call}: no endpoint answered ({detail})")


def why(exc: BaseException) -> str:
    """Why a call failed, in a few words (no secrets: our calls carry none)."""
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, Unreachable):
        return "; ".join(exc.reasons.values())
    text = str(exc)
    return f"{type(exc).__name__}: {text}"[:200] if text else type(exc).__name__
