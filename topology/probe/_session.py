"""One probe round at a time over a fixed host list, for the CLI.

A thin face over the resolver's own machinery: the same :class:`HostProber`
per host (one connection kept and reused between ``--watch`` rounds), every
host probed concurrently as in the resolver's rounds, and one snapshot per
round built by the same :func:`~topology.snapshot.build_snapshot` from the
previous one (so a host once seen behind a higher timeline stays a stale
primary).

Timeouts: a round ends within about ``timeout`` (each probe is bounded by
it, plus the prober's short grace); a safety deadline of ``timeout +
ROUND_SLACK`` marks any host still unanswered as unknown (its probe is
cancelled, which terminates its connection) rather than wait.
:meth:`ProbeSession.close` closes every connection politely within
``close_timeout`` and terminates the rest. Not thread-safe; one round at a
time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from topology.hosts import ConnectOptions, HostAddress
from topology.probe import HostProber, ProbeDriver, ProbeResult
from topology.snapshot import HostState, Snapshot, build_snapshot

__all__ = ["ROUND_SLACK", "ProbeSession"]

ROUND_SLACK = 1.0  # beyond the probe timeout: only a bug or a stalled event loop gets here
_CANCEL_GRACE = 0.5  # a cancelled probe terminates its connection at once; this is ample


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
        self.rounds = 0

    async def round(self) -> Snapshot:
        """Probe every host once, concurrently; the new snapshot (also kept as ``snapshot``)."""
        self.rounds += 1
        tasks = [asyncio.ensure_future(prober.probe()) for prober in self.probers]
        try:
            await asyncio.wait(tasks, timeout=self.timeout + ROUND_SLACK)
        finally:
            late = [task for task in tasks if not task.done()]
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=_CANCEL_GRACE)
        items: list[ProbeResult | HostState] = [
            task.result() if task.done() and not task.cancelled() else HostState(prober.host)
            for task, prober in zip(tasks, self.probers, strict=True)
        ]
        self.snapshot = build_snapshot(
            items, self.snapshot, round=self.rounds, taken_at=time.time()
        )
        return self.snapshot

    async def close(self) -> None:
        """Close every probe connection within about ``close_timeout`` seconds."""
        await asyncio.gather(*(prober.close(self.close_timeout) for prober in self.probers))
