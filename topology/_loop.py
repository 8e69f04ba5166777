"""The background probe loop: rounds of concurrent probes, each publishing a snapshot.

One round probes every host concurrently, so a round lasts about one probe
timeout at worst, whatever the number of dead or black-holed hosts. When a
round finds a primary the owner is waiting for while slower hosts are still
being probed, a provisional snapshot (``complete=False``) is published at once: a frozen
old primary must not delay the switch to its promoted replica by a whole
probe timeout. The complete snapshot follows when the round ends.

Between rounds the loop sleeps as long as the owner's ``pause()`` says
(``interval``, ``fast_interval`` or a burst: see :mod:`topology._pace`); ``wake()``
starts the next round at once. Wake-ups coalesce: any number of them during
a round cause exactly one more round (single flight).

Cancellation: cancelling the loop task cancels the probes of the round in
flight, which terminate their connections; the task then ends within the
probe grace period. The loop survives any other exception (logged).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from topology.probe import HostProber, ProbeResult
from topology.snapshot import HostState, Snapshot, build_snapshot

__all__ = ["ProbeLoop"]

log = logging.getLogger("topology")
_CANCEL_GRACE = 0.5


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class ProbeLoop:
    """Runs probe rounds for a list of probers and hands each snapshot to ``publish``.

    ``publish(snapshot, round_started, answered)`` is called on the event
    loop with the new snapshot, the monotonic time its round started and
    the hosts that answered in this round (the others' states are carried
    over from the previous snapshot); it must not block. ``current()``
    returns the snapshot last published; ``pause()`` how many seconds to
    sleep before the next round; ``early(provisional,
    answered)`` whether a mid-round snapshot is worth publishing
    before the slower hosts answer (typically: it names a primary that the
    fast path does not offer yet).
    """

    def __init__(
        self,
        probers: Sequence[HostProber],
        *,
        current: Callable[[], Snapshot],
        publish: Callable[[Snapshot, float, frozenset[str]], None],
        pause: Callable[[], float],
        early: Callable[[Snapshot, frozenset[str]], bool],
    ) -> None:
        self.probers = tuple(probers)
        self._current = current
        self._publish = publish
        self._pause = pause
        self._early = early
        self.rounds = 0
        self.probes = 0
        self.probe_failures = 0
        self.last_round_duration: float | None = None
        self._wake_requested = False
        self._sleeper: asyncio.Future[None] | None = None

    def wake(self) -> None:
        """Start a round now, or right after the one in flight (coalesced). Never blocks."""
        self._wake_requested = True
        if self._sleeper is not None:
            _resolve(self._sleeper)

    async def run(self) -> None:
        """Loop until cancelled: a round, then a sleep (see the module docstring)."""
        while True:
            try:
                await self.round()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("probe round failed; the loop goes on")
            if not self._wake_requested:
                await self._sleep(self._pause())

    async def _sleep(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        self._sleeper = sleeper = loop.create_future()
        handle = loop.call_later(seconds, _resolve, sleeper)
        try:
            await sleeper
        finally:
            handle.cancel()
            self._sleeper = None

    async def round(self) -> Snapshot:
        """Probe every host once, concurrently, and publish; returns the complete snapshot."""
        self._wake_requested = False
        started = time.monotonic()
        self.rounds += 1
        number = self.rounds
        items: list[ProbeResult | HostState] = list(self._current().hosts)
        tasks = {
            asyncio.ensure_future(prober.probe()): index
            for index, prober in enumerate(self.probers)
        }
        for task, index in tasks.items():
            task.set_name(f"topology-probe-{self.probers[index].host}")
        pending = set(tasks)
        answered: set[str] = set()
        try:
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    result = task.result()
                    items[tasks[task]] = result
                    answered.add(result.host)
                    self.probes += 1
                    self.probe_failures += not result.ok
                if pending:
                    self._maybe_publish_early(items, number, started, frozenset(answered))
        except asyncio.CancelledError:
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=_CANCEL_GRACE)
            raise
        snapshot = build_snapshot(
            items, self._current(), round=number, taken_at=time.time(), complete=True
        )
        self.last_round_duration = time.monotonic() - started
        self._publish(snapshot, started, frozenset(answered))
        return snapshot

    def _maybe_publish_early(
        self,
        items: list[ProbeResult | HostState],
        number: int,
        started: float,
        answered: frozenset[str],
    ) -> None:
        current = self._current()
        provisional = build_snapshot(
            items, current, round=number, taken_at=time.time(), complete=False
        )
        if self._early(provisional, answered):
            self._publish(provisional, started, answered)
