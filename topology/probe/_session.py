"""One probe round at a time over a fixed host list, for the CLI.

A thin face over the resolver's own machinery: the same :class:`HostProber`
per host (one connection kept and reused between ``--watch`` rounds) and
the same round (:class:`topology._loop.ProbeLoop.round`: every host probed
concurrently, one snapshot built with :func:`~topology.snapshot.build_snapshot`
from the previous one, so a host once seen behind a higher timeline stays a
stale primary).

Timeouts: a round ends within about ``timeout`` (each probe is bounded by
it, plus the prober's short grace); a safety deadline of ``timeout +
ROUND_SLACK`` marks any host still unanswered as unknown rather than wait.
:meth:`ProbeSession.close` closes every connection politely within
``close_timeout`` and terminates the rest. Not thread-safe; one round at a
time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from topology._loop import ProbeLoop
from topology.hosts import ConnectOptions, HostAddress
from topology.probe import HostProber, ProbeDriver
from topology.snapshot import HostState, Snapshot, build_snapshot

__all__ = ["ROUND_SLACK", "ProbeSession"]

ROUND_SLACK = 1.0  # beyond the probe timeout: only a bug or a stalled event loop gets here


class ProbeSession:
    """Probers for ``hosts`` (``options[i]`` for ``hosts[i]``) and the last snapshot."""

    def __init__(
        self,
        hosts: Sequence[HostAddress],
        options: Sequence[ConnectOptions],
        driver: str | ProbeDriver,
        *,
        timeout: float,
        close_timeout: float = 0.5,
    ) -> None:
        self.timeout = timeout
        self.close_timeout = min(close_timeout, timeout)
        self.probers = [
            HostProber(address, opts, driver, timeout=timeout)
            for address, opts in zip(hosts, options, strict=True)
        ]
        self.snapshot = Snapshot.empty(prober.host for prober in self.probers)
        self._loop = ProbeLoop(
            self.probers,
            current=lambda: self.snapshot,
            publish=self._publish,
            fast=lambda: False,
            early=lambda provisional: False,
            interval=timeout,
            fast_interval=timeout,
        )

    def _publish(self, snapshot: Snapshot, started: float) -> None:
        self.snapshot = snapshot

    async def round(self) -> Snapshot:
        """Probe every host once, concurrently; the new snapshot (also kept as ``snapshot``)."""
        try:
            return await asyncio.wait_for(self._loop.round(), self.timeout + ROUND_SLACK)
        except asyncio.TimeoutError:
            previous = self.snapshot
            unknown = [HostState(state.host) for state in previous.hosts]
            self.snapshot = build_snapshot(unknown, previous, taken_at=time.time())
            return self.snapshot

    async def close(self) -> None:
        """Close every probe connection within about ``close_timeout`` seconds."""
        await asyncio.gather(*(prober.close(self.close_timeout) for prober in self.probers))
