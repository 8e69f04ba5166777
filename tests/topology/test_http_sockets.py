"""The DCS sources' HTTP sockets are closed whatever cancels them (topology.dcs._http_sockets).

A peer that accepts TCP and then says nothing: a TLS handshake cancelled
from outside must close its socket at once (httpcore leaves it to the
garbage collector), and closing the backend closes whatever is still open.
The peer sees each close as an end of stream.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator

import pytest

from topology.dcs._http_sockets import TrackedBackend


class SilentPeer:
    """Accepts connections, reads until the other side closes, never writes."""

    def __init__(self) -> None:
        self.accepted = 0
        self.closed = 0
        self.server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            while await reader.read(4096):
                pass
        finally:
            self.closed += 1
            writer.close()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])


@pytest.fixture
async def peer() -> AsyncIterator[tuple[SilentPeer, int]]:
    silent = SilentPeer()
    port = await silent.start()
    yield silent, port
    assert silent.server is not None
    silent.server.close()
    await silent.server.wait_closed()


async def _until(check: object, what: str) -> None:
    for _ in range(500):
        if check():  # type: ignore[operator]
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"not within 5 s: {what}")


async def test_a_cancelled_handshake_closes_its_socket(peer: tuple[SilentPeer, int]) -> None:
    silent, port = peer
    backend = TrackedBackend()
    stream = await backend.connect_tcp("127.0.0.1", port, timeout=5)
    context = ssl.create_default_context()
    handshake = asyncio.ensure_future(stream.start_tls(context, "localhost", timeout=30))
    await _until(lambda: silent.accepted == 1, "accepted")
    await asyncio.sleep(0.05)  # the ClientHello is out; the peer never answers
    handshake.cancel()
    with pytest.raises(asyncio.CancelledError):
        await handshake
    assert backend.open_streams == 0
    await _until(lambda: silent.closed == 1, "the peer sees the socket closed")


async def test_closing_the_backend_closes_what_is_left_open(peer: tuple[SilentPeer, int]) -> None:
    silent, port = peer
    backend = TrackedBackend()
    for _ in range(3):
        await backend.connect_tcp("127.0.0.1", port, timeout=5)
    assert backend.open_streams == 3
    await backend.aclose()
    assert backend.open_streams == 0
    await _until(lambda: silent.closed == 3, "the peer sees every socket closed")
