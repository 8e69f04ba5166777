"""One probe round at a time over a fixed host list, for the CLI.

A thin face over the resolver's own machinery: the same :class:`HostProber`
per host (one connection kept and reused between ``--watch`` rounds), every
host probed concurrently as in the resolver's rounds, and one snapshot per
round built by the same :func:`~topology.probing.snapshot.build_snapshot` from the
previous one (so a host once seen behind a higher timeline stays a stale
primary).

Two ways to probe:

- :meth:`ProbeSession.round` probes every host once, concurrently. It ends
  within about ``timeout`` (each probe is bounded by it, plus the prober's
  short grace); a safety deadline of ``timeout + ROUND_SLACK`` marks any
  host still unanswered as unknown (its probe is cancelled, which
  terminates its connection) rather than wait.
- :meth:`ProbeSession.follow` (for ``--watch``) probes each host on its own,
  at every tick of a shared clock (``start + k * interval``), until
  cancelled; :meth:`ProbeSession.take` builds a snapshot from the latest
  answer of every host at any time. A frozen or black-holed host then
  delays only its own row (unknown once its probe waits too long, down when
  it times out), never the others': a promoted replica shows up at the next
  tick. A host whose probe outlasts a tick skips that tick.
:meth:`ProbeSession.close` closes every connection politely within
``close_timeout`` and terminates the rest. Not thread-safe; one round at a
time.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence

from topology.hosts import ConnectOptions, HostAddress
from topology.probing.drivers import ProbeDriver
from topology.probing.prober import HostProber
from topology.probing.result import ProbeResult
from topology.probing.snapshot import HostState, Snapshot, build_snapshot
from topology.trace import ProbeEnded, Tracer

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
        tracer: Tracer | None = None,
    ) -> None:
        self.timeout = timeout
        self._tracer = tracer  # hears ProbeEnded, as the resolver's tracer does
        self.close_timeout = min(close_timeout, timeout)
        self.probers = [
            HostProber(address, opts, driver, timeout=timeout)
            for address, opts in zip(hosts, options, strict=True)
        ]
        self.snapshot = Snapshot.empty(prober.host for prober in self.probers)
        self.rounds = 0
        self._latest: dict[int, ProbeResult] = {}
        self._inflight: dict[int, float] = {}  # host index -> loop time its probe started

    async def round(self) -> Snapshot:
        """Probe every host once, concurrently; the new snapshot (also kept as ``snapshot``)."""
        self.rounds += 1
        started = time.monotonic()
        tasks = [asyncio.ensure_future(prober.probe()) for prober in self.probers]
        try:
            await asyncio.wait(tasks, timeout=self.timeout + ROUND_SLACK)
        finally:
            late = [task for task in tasks if not task.done()]
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=_CANCEL_GRACE)
        items: list[ProbeResult | HostState] = []
        for index, (task, prober) in enumerate(zip(tasks, self.probers, strict=True)):
            if task.done() and not task.cancelled():
                items.append(task.result())
                self._latest[index] = task.result()  # what follow() starts from
                self._ended(task.result(), time.monotonic() - started)
            else:
                items.append(HostState(prober.host))
        self.snapshot = build_snapshot(
            items, self.snapshot, round=self.rounds, taken_at=time.time()
        )
        return self.snapshot

    async def follow(self, start: float, interval: float) -> None:
        """Probe every host at each tick ``start + k * interval`` (loop time) until cancelled.

        Cancelling it cancels the probes in flight, which terminate their connections.
        """
        loops = [self._follow(index, start, interval) for index in range(len(self.probers))]
        await asyncio.gather(*loops)

    async def _follow(self, index: int, start: float, interval: float) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(max(start - loop.time(), 0.0))
        while True:
            self._inflight[index] = started = loop.time()
            self._latest[index] = result = await self.probers[index].probe()
            del self._inflight[index]
            self._ended(result, loop.time() - started)
            elapsed = loop.time() - start
            next_tick = start + (math.floor(elapsed / interval) + 1) * interval
            await asyncio.sleep(max(next_tick - loop.time(), 0.0))

    def _ended(self, result: ProbeResult, latency: float) -> None:
        if self._tracer is not None:
            role = None if not result.ok else "replica" if result.in_recovery else "primary"
            reason = None if result.error is None else result.error.reason.words
            self._tracer(ProbeEnded(result.host, latency, role, reason))

    def take(self, patience: float) -> Snapshot:
        """A snapshot of every host's latest answer (its previous state while none came yet).

        A host that was up but whose probe has now been waiting for more than
        ``patience`` seconds is shown as unknown: a frozen primary must not
        look like a primary (or a split brain) until its probe times out.
        """
        self.rounds += 1
        now = asyncio.get_running_loop().time()
        items: list[ProbeResult | HostState] = []
        for index, state in enumerate(self.snapshot.hosts):
            latest = self._latest.get(index)
            waiting = now - self._inflight.get(index, now)
            if latest is not None and latest.ok and waiting > patience:
                items.append(HostState(state.host))
            else:
                items.append(latest or state)
        self.snapshot = build_snapshot(
            items, self.snapshot, round=self.rounds, taken_at=time.time()
        )
        return self.snapshot

    async def close(self) -> None:
        """Close every probe connection within about ``close_timeout`` seconds."""
        await asyncio.gather(*(prober.close(self.close_timeout) for prober in self.probers))
