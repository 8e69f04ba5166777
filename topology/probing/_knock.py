"""A bare TCP connect to a host that refused its last probe: does anything listen yet?

During a failover the probe loop probes every few milliseconds, and a
stopped primary refuses every connect. A driver's refused connect is not
cheap: before it opens a socket, asyncpg parses its arguments, looks for
files under ``~/.postgresql`` and builds an SSL context (measured here:
1.4 ms of CPU per refused connect under the default ``sslmode=prefer``,
0.45 ms with ``sslmode=disable``). In a burst that CPU is taken from the
probes of the replicas, one of which is being promoted.

So a prober whose host refused its last connect first *knocks*: one
non-blocking TCP connect per address, closed at once. Every address
refusing, the probe fails as the driver's connect would have, with the
same ``ConnectionRefusedError`` (``Reason.CONNECTION_REFUSED``). Anything
else (accepted, unreachable, a name that does not resolve) and the
driver's connect follows, whose own outcome is the one reported: the knock
never decides more than "still refused".

Cost: one TCP handshake more when the host listens again, and a server
process that exits at once (PostgreSQL logs nothing for a connection that
sends no byte). Timeouts and cancellation are the caller's (the prober
bounds the knock with its connect deadline); the socket is closed on
every path. A name is resolved through the event loop's resolver, as the
drivers do; an IP address without a lookup.

Example::

    await knock(HostAddress("10.0.0.5", 5432))  # raises ConnectionRefusedError, or returns
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from topology.hosts import HostAddress

__all__ = ["knock"]


async def knock(address: HostAddress) -> None:
    """Return when ``address`` may accept a connection; raise when every address refuses."""
    refused: ConnectionRefusedError | None = None
    for family, sockaddr in await _addresses(address):
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, sockaddr)
            return  # something listens: the driver's connect says what
        except ConnectionRefusedError as exc:
            refused = exc
        except OSError:
            return  # not a refusal: left to the driver, whose error is exact
        finally:
            sock.close()
    if refused is None:
        return  # no address at all: the driver reports that in its own words
    raise refused


async def _addresses(address: HostAddress) -> list[tuple[socket.AddressFamily, Any]]:
    numeric = socket.AI_NUMERICHOST | socket.AI_NUMERICSERV
    try:
        infos = socket.getaddrinfo(
            address.host, address.port, type=socket.SOCK_STREAM, flags=numeric
        )
    except socket.gaierror:  # a name: resolved off the event loop, as the drivers do
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                address.host, address.port, type=socket.SOCK_STREAM
            )
        except OSError:
            return []
    return [(info[0], info[4]) for info in infos]
