"""A fault-injecting TCP proxy on loopback: put it between a client and a real server.

``FaultProxy(port).start()`` listens on ``127.0.0.1`` (a free port) and forwards
every accepted connection to ``127.0.0.1:port``; :meth:`FaultProxy.set` switches
the fault at run time, for open connections and new ones alike:

- :data:`PASS`: forward as is.
- :func:`latency`: each chunk waits ``seconds`` before it is forwarded.
- :func:`bandwidth`: at most ``rate`` bytes/s per direction and connection.
- :func:`black_hole`: nothing crosses. A new connection is accepted and never
  reaches the server: it is read and dropped, and hears nothing, ever (a dead
  host behind a dropping firewall). Open connections stall both ways until the
  fault is lifted, then go on: TCP retransmits through a partition, so an
  established stream is delayed, never silently cut short.
- :func:`half_open`: stop reading from the peer in ``direction`` (the kernel's
  buffers fill, then the peer's writes block).
- :func:`drip`: one byte every ``interval`` seconds in ``direction``.
- :func:`reset_after`: forward ``nbytes`` more bytes in ``direction``, then
  reset the client (RST: SO_LINGER 0) and close the server side with a FIN after
  what was forwarded, so the server processes it. ``reset_after(0, "s2c")`` armed
  before a COMMIT: the server commits, the client never hears.
- :func:`refuse`: stop listening (new connections are refused); open ones go on.

:meth:`FaultProxy.reset_now` resets every open connection at once (both sides).

A ``rewriter`` factory (see :mod:`tests.support.pgwire`) gives each connection an
object that sees the client's bytes and may rewrite the server's.

Concurrency: the proxy runs its own event loop in a daemon thread, so it works
under sync and async clients alike; every public method may be called from any
thread and waits at most ``CONTROL_TIMEOUT`` seconds. :meth:`stop` aborts every
connection, closes the listener and joins the thread; it is idempotent. Memory:
at most one chunk (64 KiB) per direction and connection is held.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import socket
import struct
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

__all__ = [
    "PASS",
    "Fault",
    "FaultProxy",
    "Rewriter",
    "bandwidth",
    "black_hole",
    "drip",
    "half_open",
    "latency",
    "refuse",
    "reset_after",
]

HOST = "127.0.0.1"
CHUNK = 65536
CONTROL_TIMEOUT = 5.0
T = TypeVar("T")


@dataclass(frozen=True, eq=False)
class Fault:
    """What the proxy does to the bytes; compared by identity (each arming is new)."""

    kind: str = "pass"
    direction: str = "both"  # "c2s" (client to server), "s2c" or "both"
    seconds: float = 0.0  # latency per chunk; drip interval per byte
    rate: int = 0  # bandwidth, bytes/s
    nbytes: int = 0  # reset_after: bytes still forwarded

    def hits(self, direction: str) -> bool:
        return self.direction in ("both", direction)


PASS = Fault()


def latency(seconds: float, direction: str = "both") -> Fault:
    return Fault("latency", direction, seconds=seconds)


def bandwidth(rate: int, direction: str = "both") -> Fault:
    return Fault("bandwidth", direction, rate=max(1, rate))


def black_hole() -> Fault:
    return Fault("black_hole")


def half_open(direction: str = "s2c") -> Fault:
    return Fault("half_open", direction)


def drip(interval: float, direction: str = "s2c") -> Fault:
    return Fault("drip", direction, seconds=interval)


def reset_after(nbytes: int, direction: str = "s2c") -> Fault:
    return Fault("reset_after", direction, nbytes=nbytes)


def refuse() -> Fault:
    return Fault("refuse")


class Rewriter(Protocol):
    """Per-connection hook: sees the client's bytes, returns the server's (maybe changed)."""

    def client_bytes(self, data: bytes) -> None: ...

    def server_bytes(self, data: bytes) -> bytes: ...


@dataclass(eq=False)
class _Link:
    """One proxied connection: the client side, the server side (None in a black hole)."""

    client: asyncio.StreamWriter
    server: asyncio.StreamWriter | None = None
    rewriter: Rewriter | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)  # the two pumps
    armed: Fault | None = None  # the reset_after fault whose budget ``left`` is
    left: int = 0


def _abort(writer: asyncio.StreamWriter | None) -> None:
    """Close ``writer``'s socket with a RST (SO_LINGER 0), dropping unsent data."""
    if writer is None or writer.transport.is_closing():
        return
    sock = writer.get_extra_info("socket")
    with contextlib.suppress(OSError):
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class FaultProxy:
    """``127.0.0.1:<free port>`` -> ``target_host:target_port``; see the module docstring."""

    def __init__(
        self,
        target_port: int,
        target_host: str = HOST,
        *,
        rewriter: Callable[[], Rewriter] | None = None,
        name: str = "proxy",
    ) -> None:
        self.target = (target_host, target_port)
        self.name = name
        self.port = 0
        self.accepted = 0
        self.resets = 0
        self._rewriter = rewriter
        self._fault: Fault = PASS
        self._links: set[_Link] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._changed: asyncio.Event | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        self._closing = False

    @property
    def host(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def open_connections(self) -> int:
        return len(self._links)

    def __repr__(self) -> str:
        return f"FaultProxy({self.name} {self.host} -> {self.target[1]}, {self._fault.kind})"

    # --- control (any thread) ------------------------------------------------------
    def start(self) -> FaultProxy:
        """Start the thread and listen; returns once the port is bound."""
        if self._thread is not None:
            raise RuntimeError("FaultProxy already started")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"faultproxy-{self.name}", daemon=True
        )
        self._thread.start()
        self._call(self._listen())
        return self

    def set(self, fault: Fault) -> None:
        """Switch to ``fault`` now (open connections included)."""
        self._call(self._apply(fault))

    def reset_now(self) -> int:
        """RST every open connection (client and server side); returns how many."""
        return self._call(self._reset_all())

    def stop(self) -> None:
        """Abort every connection, stop listening, end the thread (idempotent)."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        with contextlib.suppress(concurrent.futures.TimeoutError, RuntimeError):
            self._call(self._shutdown())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(CONTROL_TIMEOUT)
        if not thread.is_alive():
            loop.close()
        self._loop = self._thread = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._loop is None:
            coro.close()
            raise RuntimeError("FaultProxy not started")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(CONTROL_TIMEOUT)

    # --- in the proxy's loop ---------------------------------------------------------
    async def _listen(self) -> None:
        self._changed = self._changed or asyncio.Event()
        self._server = await asyncio.start_server(
            self._accept, HOST, self.port, reuse_address=True, backlog=128
        )
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _apply(self, fault: Fault) -> None:
        self._fault = fault
        if fault.kind == "refuse" and self._server is not None:
            self._server.close()
            self._server = None
        elif fault.kind != "refuse" and self._server is None:
            await self._listen()
        assert self._changed is not None
        self._changed.set()  # wake paused pumps: they read the new fault
        self._changed = asyncio.Event()

    async def _reset_all(self) -> int:
        links = list(self._links)
        for link in links:
            self._cut(link, server_rst=True)
        return len(links)

    async def _shutdown(self) -> None:
        self._closing = True  # a connection accepted from now on is aborted at once
        if self._server is not None:
            self._server.close()
            self._server = None
        # Connections accepted just before the close get their transport and
        # handler a few loop turns later: let them arrive (and be aborted).
        await asyncio.sleep(0.05)
        tasks = [task for link in self._links for task in link.tasks]
        tasks += self._handlers
        for link in list(self._links):
            self._cut(link, server_rst=True)
        for task in tasks:
            task.cancel()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), CONTROL_TIMEOUT)

    def _cut(self, link: _Link, *, server_rst: bool) -> None:
        """RST the client; the server side gets a RST too or a FIN after what was sent."""
        self.resets += 1
        for task in link.tasks:  # the pumps, unless one of them is cutting
            if task is not asyncio.current_task():
                task.cancel()
        _abort(link.client)
        if server_rst:
            _abort(link.server)
        elif link.server is not None and not link.server.transport.is_closing():
            link.server.close()  # FIN after the bytes already written: the server reads them
        self._links.discard(link)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._closing:  # stop() began: its sweep of the connections has passed
            _abort(writer)
            writer.close()
            return
        self.accepted += 1
        link = _Link(writer, rewriter=self._rewriter() if self._rewriter else None)
        self._links.add(link)
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        clean = False
        try:
            if self._fault.kind == "black_hole":
                await self._sink(reader)
                return
            up_reader, server = await asyncio.wait_for(
                asyncio.open_connection(*self.target), CONTROL_TIMEOUT
            )
            link.server = server
            link.tasks = [
                asyncio.ensure_future(self._pump(link, reader, server, "c2s")),
                asyncio.ensure_future(self._pump(link, up_reader, writer, "s2c")),
            ]
            await asyncio.wait(link.tasks, return_when=asyncio.FIRST_EXCEPTION)
            clean = all(t.done() and not t.cancelled() and not t.exception() for t in link.tasks)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
            pass  # the server refused or a side broke: the client gets a RST below
        except asyncio.CancelledError:
            pass  # stop(): asyncio's server callback must not see a cancelled handler
        finally:
            self._handlers.discard(handler)
            if link in self._links and clean:
                self._links.discard(link)
                for side in (link.client, link.server):
                    if side is not None and not side.transport.is_closing():
                        side.close()
            elif link in self._links:
                self._cut(link, server_rst=True)

    async def _sink(self, reader: asyncio.StreamReader) -> None:
        """A black-holed connection: read and drop until the client goes."""
        while await reader.read(CHUNK):
            pass

    async def _pump(
        self,
        link: _Link,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        direction: str,
    ) -> None:
        """Copy one direction until EOF, applying the current fault to each chunk."""
        while link in self._links:
            if self._stalls(direction):
                assert self._changed is not None
                await self._changed.wait()  # not reading: the peer's buffers fill up
                continue
            data = await source.read(CHUNK)
            if not data:
                if not sink.transport.is_closing() and sink.can_write_eof():
                    sink.write_eof()
                return
            while self._stalls(direction):
                assert self._changed is not None
                await self._changed.wait()  # read just before the fault: hold it back
            if link.rewriter is not None:
                if direction == "c2s":
                    link.rewriter.client_bytes(data)
                else:
                    data = link.rewriter.server_bytes(data)
            await self._forward(link, sink, direction, data)

    def _stalls(self, direction: str) -> bool:
        """Whether an open connection holds ``direction`` back now. A black hole
        holds both: TCP retransmits through a partition, so bytes are late, never lost."""
        fault = self._fault
        return fault.kind == "black_hole" or (fault.kind == "half_open" and fault.hits(direction))

    async def _forward(
        self, link: _Link, sink: asyncio.StreamWriter, direction: str, data: bytes
    ) -> None:
        """Write ``data`` to ``sink`` the way the fault in force says."""
        fault = self._fault
        if not fault.hits(direction) or fault.kind in ("pass", "refuse", "half_open", "black_hole"):
            await _write(sink, data)
        elif fault.kind == "latency":
            await asyncio.sleep(fault.seconds)
            await _write(sink, data)
        elif fault.kind == "bandwidth":
            step = max(1, fault.rate // 20)
            for start in range(0, len(data), step):
                await _write(sink, data[start : start + step])
                await asyncio.sleep(min(step, len(data) - start) / fault.rate)
        elif fault.kind == "drip":
            for start in range(len(data)):
                await _write(sink, data[start : start + 1])
                await asyncio.sleep(fault.seconds)
        elif fault.kind == "reset_after":
            await self._count_down(link, sink, fault, data)
        else:
            raise ValueError(f"unknown fault {fault.kind!r}")

    async def _count_down(
        self, link: _Link, sink: asyncio.StreamWriter, fault: Fault, data: bytes
    ) -> None:
        if link.armed is not fault:  # first chunk since this fault was set
            link.armed, link.left = fault, fault.nbytes
        if len(data) <= link.left:
            link.left -= len(data)
            await _write(sink, data)
            return
        if link.left:
            sink.write(data[: link.left])
        link.left = 0
        # The server keeps what it was sent and sees a FIN; the client gets a RST.
        self._cut(link, server_rst=False)


async def _write(sink: asyncio.StreamWriter, data: bytes) -> None:
    if sink.transport.is_closing():
        raise ConnectionResetError("the other side is closed")
    sink.write(data)
    await sink.drain()
