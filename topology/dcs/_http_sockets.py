"""Every socket an HTTP client opened is closed when the client is (httpcore's backend, wrapped).

httpcore closes the TCP stream of a TLS handshake that fails, but not of one
*cancelled* from outside (it catches ``Exception``, and a cancellation is
not one), nor of a connection cancelled at other awkward moments: the
socket is left to the garbage collector and a ``ResourceWarning``. A
source's owner cancels its calls whenever it closes, so this happens.

:class:`TrackedBackend` wraps httpcore's own backend: each stream it opens
is registered until closed; a handshake that ends in any exception,
cancellation included, closes its TCP stream; :meth:`TrackedBackend.aclose`
closes whatever is still open. :func:`tracked_transport` builds an httpx
transport on it.

Example::

    backend = TrackedBackend()
    client = httpx.AsyncClient(transport=tracked_transport(backend, verify=ctx))
    ...
    await client.aclose()
    await backend.aclose()  # sockets httpcore lost track of
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

__all__ = ["TrackedBackend", "tracked_transport"]


class _Stream(httpcore.AsyncNetworkStream):
    def __init__(self, inner: httpcore.AsyncNetworkStream, open_: set[_Stream]) -> None:
        self._inner = inner
        self._open = open_
        open_.add(self)

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        self._open.discard(self)
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            tls = await self._inner.start_tls(ssl_context, server_hostname, timeout)
        except BaseException:
            self._open.discard(self)
            with contextlib.suppress(Exception):
                await self._inner.aclose()
            raise
        self._open.discard(self)  # the TLS stream owns the socket from now on
        return _Stream(tls, self._open)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class TrackedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's default backend, with every stream registered until it is closed."""

    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()
        self._open: set[_Stream] = set()

    @property
    def open_streams(self) -> int:
        return len(self._open)

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return _Stream(stream, self._open)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_unix_socket(path, timeout, socket_options)
        return _Stream(stream, self._open)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)

    async def aclose(self) -> None:
        """Close every stream still open (never raises)."""
        for stream in list(self._open):
            with contextlib.suppress(Exception):
                await stream.aclose()


def tracked_transport(backend: TrackedBackend, **kwargs: Any) -> httpx.AsyncHTTPTransport:
    """An httpx transport (``kwargs`` as httpx's) whose connections open through ``backend``."""
    transport = httpx.AsyncHTTPTransport(**kwargs)
    # httpx offers no parameter for it; httpcore's pool hands this to each connection.
    transport._pool._network_backend = backend
    return transport
