"""Probing hosts: one host, one query, one :class:`ProbeResult`.

:class:`HostProber` keeps one connection per host and bounds every probe by
its timeout (see :mod:`topology.probe._prober`); :func:`probe_once` probes a
list of hosts concurrently, once, for tools such as the diagnostics CLI.
This is a package (not ``probe.py``) so that ``python -m topology.probe``
can run a ``__main__`` module without importing this code twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from topology.hosts import ConnectOptions, HostAddress
from topology.probe._drivers import DRIVERS, ProbeConnection, ProbeDriver, get_driver
from topology.probe._prober import HostProber
from topology.probe._result import PROBE_QUERY, ProbeResult

__all__ = [
    "DRIVERS",
    "PROBE_QUERY",
    "HostProber",
    "ProbeConnection",
    "ProbeDriver",
    "ProbeResult",
    "get_driver",
    "probe_once",
]


async def probe_once(
    hosts: Iterable[HostAddress],
    options: ConnectOptions,
    driver: str | ProbeDriver = "asyncpg",
    *,
    timeout: float = 1.0,
    retries: int = 2,
) -> list[ProbeResult]:
    """Probe every host concurrently, once, and close the connections.

    Returns one result per host, in order, within about ``timeout`` seconds
    plus the bounded close (at most ``timeout`` more for a host that stops
    answering between the probe and the close).
    """
    probers = [
        HostProber(address, options, driver, timeout=timeout, retries=retries) for address in hosts
    ]
    try:
        return list(await asyncio.gather(*(prober.probe() for prober in probers)))
    finally:
        await asyncio.gather(*(prober.close(timeout) for prober in probers))
