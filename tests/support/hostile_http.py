"""A misbehaving HTTP endpoint for the DCS client: real loopback sockets, one named behaviour.

:class:`HostileHttp` is an asyncio server on 127.0.0.1 (a free port) that
answers every request the way its ``behaviour`` says (see :data:`BEHAVIOURS`);
``behaviour`` may be changed while it runs, e.g. to ``"good"`` to see a
client recover on the same endpoint. Answering well (``"good"``, and every
request a watch behaviour does not concern) means forwarding the bytes to
``upstream`` (a real etcd) when given, else serving ``document`` (a Patroni
``/cluster`` answer) for ``GET /cluster``, an empty etcd range answer for
``/v3/kv/range``, and an idle watch for ``/v3/watch``.

Nothing here is a mock: the client under test opens real TCP connections and
reads what a broken or hostile peer would send. An endless answer stops at
``max_bytes`` (100 MiB) or when the client goes away. Every connection's task
is cancelled by :meth:`HostileHttp.close`.

Example::

    async with HostileHttp("accept_and_close") as bad:
        watch = PatroniRest([bad.url, good.url], timeout=0.5)
"""

from __future__ import annotations

import asyncio
import json
import ssl
from types import TracebackType
from typing import Any

__all__ = ["BEHAVIOURS", "LAGGING_WATCHES", "WATCH_BEHAVIOURS", "HostileHttp"]

_FILL = b"0," * 32 * 1024  # 64 KiB of a JSON list that never ends
BEHAVIOURS = (
    "accept_and_close",  # reads the request, closes without a byte
    "garbage_status",  # a status line that is not HTTP
    "endless_headers",  # headers forever
    "endless_body",  # no Content-Length, a body that never ends
    "huge_content_length",  # announces 10 TB, sends a little, then stalls
    "truncated_chunk",  # announces a 1 KiB chunk, sends 100 bytes, closes
    "oversize_chunk",  # announces a 16 TiB chunk, then streams it
    "json_list",  # valid JSON of the wrong shape: a list
    "json_string",  # ... a string
    "json_missing_keys",  # ... an object without the keys expected
    "json_nested",  # JSON nested 100,000 deep (json's recursion limit)
    "slow_drip",  # a well-formed answer, one byte per 100 ms
)
WATCH_BEHAVIOURS = (
    "watch_stalls_mid_line",  # the watch sends half a message, then nothing
    "watch_endless_line",  # the watch sends one line that never ends
)
# With ``upstream``: every other request is forwarded, the watch is not quite right.
LAGGING_WATCHES = (
    "watch_deaf",  # the watch is created, then says nothing while the store changes
    "watch_late",  # the watch is forwarded, each piece ``watch_delay`` s late
)
_WRONG_SHAPES = {
    "json_list": b"[1, 2, 3]",
    "json_string": b'"not an object"',
    "json_missing_keys": b'{"note": "no header, no members"}',
    "json_nested": b"[" * 100_000 + b"]" * 100_000,
}
_EMPTY_RANGE = b'{"header": {"revision": "1"}, "count": "0"}'
_CREATED = b'{"result": {"header": {"revision": "1"}, "created": true}}\n'


def _head(status: str = "200 OK", *fields: str) -> bytes:
    lines = [f"HTTP/1.1 {status}", "Content-Type: application/json", *fields]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


class HostileHttp:
    """One misbehaving endpoint (see the module docstring). ``url``: ``http://127.0.0.1:port``."""

    def __init__(
        self,
        behaviour: str,
        *,
        document: Any = None,
        upstream: tuple[str, int] | None = None,
        max_bytes: int = 100 * 1024 * 1024,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        if behaviour not in (*BEHAVIOURS, *WATCH_BEHAVIOURS, *LAGGING_WATCHES, "good"):
            raise ValueError(f"unknown behaviour {behaviour!r}")
        self.behaviour = behaviour
        self.document = document
        self.upstream = upstream
        self.max_bytes = max_bytes
        self.tls = tls  # a server context: serve https (issue 22: Patroni REST over TLS)
        self.requests: list[str] = []  # "METHOD /path" of each request read
        self.watch_delay = 0.25  # seconds each piece of a "watch_late" stream is held
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    async def __aenter__(self) -> HostileHttp:
        self._server = await asyncio.start_server(self._accepted, "127.0.0.1", 0, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        for writer in self._writers:
            writer.close()
        self._writers.clear()
        if self._server is not None:
            await asyncio.wait_for(self._server.wait_closed(), 5)

    def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A task cancelled before its first step never runs its finally: close()
        # closes what such a task would have (a transport left open is a ResourceWarning).
        self._writers.add(writer)
        task = asyncio.ensure_future(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            method, path = head.split(b" ", 2)[:2]
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            body = await reader.readexactly(length)
            request = f"{method.decode()} {path.decode()}"
            self.requests.append(request)
            await self._answer(request, head + body, reader, writer)
        except (ConnectionError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            # ssl.SSLError is an OSError: a client that refuses our certificate goes away too
            pass  # the client went away: that is how most of these end
        finally:
            writer.close()

    async def _answer(
        self, request: str, raw: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        behaviour = self.behaviour
        is_watch = request.endswith("/v3/watch")
        if behaviour == "good" or (behaviour in WATCH_BEHAVIOURS and not is_watch):
            await self._good(request, raw, reader, writer)
        elif behaviour in LAGGING_WATCHES:
            await self._lagging(behaviour, is_watch, raw, reader, writer)
        elif behaviour in WATCH_BEHAVIOURS:
            await self._bad_watch(behaviour, writer)
        elif behaviour in _WRONG_SHAPES:
            data = _WRONG_SHAPES[behaviour]
            writer.write(_head("200 OK", f"Content-Length: {len(data)}") + data)
            await writer.drain()
        elif behaviour == "slow_drip":
            for byte in self._good_bytes(request):
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.1)
        else:
            await self._broken(behaviour, writer)

    async def _broken(self, behaviour: str, writer: asyncio.StreamWriter) -> None:
        if behaviour == "accept_and_close":
            return
        if behaviour == "garbage_status":
            writer.write(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
        elif behaviour == "endless_headers":
            writer.write(b"HTTP/1.1 200 OK\r\n")
            await self._endless(
                writer, lambda n: b"".join(b"X-Filler: %d-%d\r\n" % (n, i) for i in range(100))
            )
        elif behaviour == "endless_body":
            writer.write(_head() + b"[")
            await self._endless(writer, lambda n: _FILL)
        elif behaviour == "huge_content_length":
            writer.write(_head("200 OK", "Content-Length: 10000000000000") + b'{"header": ')
            await writer.drain()
            await asyncio.Event().wait()  # stall: the client's deadline must end it
        elif behaviour == "truncated_chunk":
            writer.write(_head("200 OK", "Transfer-Encoding: chunked") + b"400\r\n" + b" " * 100)
        elif behaviour == "oversize_chunk":
            writer.write(_head("200 OK", "Transfer-Encoding: chunked") + b"100000000000\r\n[")
            await self._endless(writer, lambda n: _FILL)
        await writer.drain()

    async def _endless(self, writer: asyncio.StreamWriter, piece: Any) -> None:
        sent = 0
        number = 0
        while sent < self.max_bytes and not writer.is_closing():
            data = piece(number)
            writer.write(data)
            await writer.drain()
            # drain() returns at once while the kernel takes the bytes: yield, or
            # this loop would starve the client under test on the same event loop.
            await asyncio.sleep(0)
            sent += len(data)
            number += 1

    async def _bad_watch(self, behaviour: str, writer: asyncio.StreamWriter) -> None:
        writer.write(_head("200 OK", "Transfer-Encoding: chunked") + _chunk(_CREATED))
        if behaviour == "watch_stalls_mid_line":
            writer.write(_chunk(b'{"result": {"header": {"revision": "2"}, "ev'))
            await writer.drain()
            await asyncio.Event().wait()
        await self._endless(writer, lambda n: _chunk(b"a" * 60_000))

    def _good_bytes(self, request: str) -> bytes:
        cluster = request.endswith("/cluster")
        data = json.dumps(self.document).encode() if cluster else _EMPTY_RANGE
        return _head("200 OK", f"Content-Length: {len(data)}") + data

    async def _good(
        self, request: str, raw: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if self.upstream is not None:
            await self._forward(raw, reader, writer)
        elif request.endswith("/v3/watch"):
            writer.write(_head("200 OK", "Transfer-Encoding: chunked") + _chunk(_CREATED))
            await writer.drain()
            await asyncio.Event().wait()  # an idle watch: nothing changes
        else:
            writer.write(self._good_bytes(request))
            await writer.drain()

    async def _lagging(
        self,
        behaviour: str,
        is_watch: bool,
        raw: bytes,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        if not is_watch:  # one request per connection, so that each watch is seen here
            head, _, body = raw.partition(b"\r\n\r\n")
            await self._forward(head + b"\r\nConnection: close\r\n\r\n" + body, reader, writer)
        elif behaviour == "watch_late":
            await self._forward(raw, reader, writer, delay=self.watch_delay)
        else:  # deaf: created, then silence, as from an etcd member cut off from its peers
            writer.write(_head("200 OK", "Transfer-Encoding: chunked") + _chunk(_CREATED))
            await writer.drain()
            await asyncio.Event().wait()

    async def _forward(
        self,
        raw: bytes,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        delay: float = 0.0,
    ) -> None:
        """Pass the request and what follows to ``upstream``, and its answer back
        (each piece of the answer ``delay`` s late)."""
        assert self.upstream is not None
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        up_writer.write(raw)

        async def pump(
            source: asyncio.StreamReader, sink: asyncio.StreamWriter, delay: float = 0.0
        ) -> None:
            while data := await source.read(65536):
                if delay:
                    await asyncio.sleep(delay)
                sink.write(data)
                await sink.drain()

        ups = asyncio.ensure_future(pump(reader, up_writer))
        try:
            await pump(up_reader, writer, delay)
        finally:
            ups.cancel()
            await asyncio.wait({ups})
            if not ups.cancelled():
                ups.exception()  # retrieved: a client gone mid-request is no news here
            up_writer.close()
