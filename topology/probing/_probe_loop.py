"""The SQL probe source: rounds of concurrent probes, each publishing a snapshot.

:class:`ProbeLoop` is where :class:`topology.ClusterResolver`'s snapshots come from
(a DCS only hints at when and what to probe: :mod:`topology.dcs._follow`).

One round probes every host concurrently, so a round lasts about one probe
timeout at worst, whatever the number of dead or black-holed hosts. When a
round finds a primary the owner is waiting for while slower hosts are still
being probed, a provisional snapshot (``complete=False``) is published at once: a frozen
old primary must not delay the switch to its promoted replica by a whole
probe timeout. The complete snapshot follows when the round ends.

Between rounds the loop sleeps as long as the owner's ``pause()`` says
(``interval``, ``fast_interval`` or a burst: see :mod:`topology.pace`); ``wake()``
starts the next round at once. Wake-ups coalesce: any number of them during
a round cause exactly one more round (single flight).

While the owner is in a hurry (a failover under way), probes make a single
attempt (the loop itself retries every few milliseconds) and a round waits
at most ``patience`` seconds, otherwise ``slow_after``: a frozen or
black-holed host keeps its probe running across rounds, counted when it
ends, instead of holding every other host's news for a whole probe
timeout, and the owner hears of it (a frozen primary is a failure). While the owner
names a ``focus`` (a DCS named the new leader), rounds in a hurry probe only
those hosts: a fleet of processes that all heard the news at once does not
connect to every member at once.

Cancellation: cancelling the loop task cancels the probes in flight, which
terminate their connections; the task then ends within the probe grace
period. The loop survives any other exception (logged).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Protocol, cast

from topology.probing._round import Heard, ended_event, outcome, published_event, watched_result
from topology.probing._watch import BURST_WATCH, BUSY, FAST_STEP, MARGIN, Watches
from topology.probing.prober import HostProber
from topology.probing.result import ProbeResult
from topology.probing.snapshot import HostState, Role, Snapshot, build_snapshot
from topology.trace import ProbeStarted, Tracer

__all__ = ["ProbeLoop", "RoundOwner"]

log = logging.getLogger("topology")
_CANCEL_GRACE = 0.5


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class RoundOwner(Protocol):
    """What a :class:`ProbeLoop` asks its owner, and tells it (the cluster's steering).

    Every method is called on the event loop that runs the loop and must
    return at once: none may block or wait on the network.
    """

    def current(self) -> Snapshot:
        """The snapshot last published."""
        ...

    def publish(self, snapshot: Snapshot, round_started: float, answered: frozenset[str]) -> None:
        """Take a new snapshot. ``round_started``: the monotonic start of the oldest
        probe that answered (the round's start, unless a slow probe carried
        over); ``answered``: the hosts that answered in this round (the others'
        states are carried over from the previous snapshot)."""

    def pause(self) -> float:
        """Seconds after the start of the last round the next one starts
        (asked again after :meth:`ProbeLoop.reschedule`)."""
        ...

    def hurry(self) -> bool:
        """A failover under way: probes without retries, rounds that do not wait
        for slow hosts beyond ``patience`` seconds (otherwise ``slow_after``)."""
        ...

    def early(self, snapshot: Snapshot, answered: frozenset[str]) -> bool:
        """Whether a mid-round snapshot is worth publishing before the slower
        hosts answer (typically: it names a primary the fast path lacks)."""
        ...

    def straggling(self, hosts: frozenset[str]) -> None:
        """A round stopped waiting for these hosts."""

    def linger(self) -> bool:
        """Whether idle probe connections are kept between rounds."""
        ...

    def focus(self) -> frozenset[str] | None:
        """The only hosts a hurried round probes, or None for all of them."""
        ...


class ProbeLoop:
    """Runs probe rounds for a list of probers and hands each snapshot to its ``owner``.

    ``owner``: a :class:`RoundOwner`, which decides the pace and takes the
    snapshots. ``patience`` and ``slow_after``: how long a round waits for
    slow hosts, in a hurry and otherwise; ``system_identifier``: the pinned
    cluster identity, if any; ``watch_step``: the promotion watch's step
    (0: no watch; see :mod:`topology.probing._watch`).
    """

    def __init__(
        self,
        probers: Sequence[HostProber],
        owner: RoundOwner,
        *,
        patience: float,
        slow_after: float,
        system_identifier: int | None = None,
        tracer: Tracer | None = None,
        watch_step: float = 0.0,
    ) -> None:
        self._owner = owner
        self.probers = tuple(probers)
        # Replicas watched for their promotion while the loop rests (topology.probing._watch).
        self.watches = Watches(watch_step, self.wake) if watch_step > 0 else None
        self._retiring: set[asyncio.Task[None]] = set()
        self.patience = patience
        self.slow_after = slow_after
        self.system_identifier = system_identifier  # pinned cluster identity, if any
        # Probes still running, by host: a slow host is never probed twice at once.
        self._inflight: dict[str, asyncio.Task[ProbeResult]] = {}
        self._started_at: dict[str, float] = {}
        self.rounds = 0
        self.probes = 0
        self.probe_failures = 0
        self.last_round_duration: float | None = None
        self._wake_requested = False
        self._reschedule = False
        self.round_started_at = time.monotonic()  # of the last round (monotonic)
        self._sleeper: asyncio.Future[None] | None = None
        self._tracer = tracer  # already guarded (topology.trace.guarded)

    def terminate(self) -> None:
        """Drop every probe connection now, e.g. when the loop that ran them is gone."""
        if self.watches is not None:
            self.watches.cancel()
        for prober in self.probers:
            prober.terminate()

    async def close(self, timeout: float) -> None:
        """Close every probe connection within ``timeout`` s (terminating the slow ones)."""
        if self.watches is not None and (watched := self.watches.cancel()):
            await asyncio.wait(watched, timeout=timeout)
        await asyncio.gather(*(prober.close(timeout) for prober in self.probers))
        if self._retiring:
            await asyncio.wait(self._retiring, timeout=timeout)

    def set_probers(self, probers: Sequence[HostProber]) -> None:
        """Probe these hosts from the next round on; close the connections of the others.

        The round in flight ends with the hosts it started with. Never blocks:
        the connections of removed hosts are closed in a tracked task.
        """
        kept = {prober.host for prober in probers}
        removed = [p for p in self.probers if p.host not in kept]
        self.probers = tuple(probers)
        if self.watches is not None:
            self.watches.cancel(p.host for p in removed)
        for prober in removed:
            task = self._inflight.pop(prober.host, None)
            self._started_at.pop(prober.host, None)
            if task is not None:
                task.cancel()
            closing = asyncio.ensure_future(prober.close(self.slow_after))
            closing.set_name(f"topology-retire-{prober.host}")
            self._retiring.add(closing)
            closing.add_done_callback(self._retiring.discard)

    async def _let_go(self) -> None:
        """Close idle probe connections when the owner does not want them kept."""
        if self._owner.linger():
            return
        watched = self.watches or ()
        idle = [
            p
            for p in self.probers
            if p.host not in self._inflight and p.host not in watched and p.connected
        ]
        if idle:
            await asyncio.gather(*(prober.close(self.slow_after) for prober in idle))

    def reschedule(self) -> None:
        """Ask ``pause()`` again for the sleep under way (never blocks, never probes)."""
        self._reschedule = True
        if self._sleeper is not None:
            _resolve(self._sleeper)

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
            await self._let_go()
            await self._rest()

    async def _rest(self) -> None:
        """Sleep until ``pause()`` seconds after the last round started (or a wake-up).

        Fixed rate: a round slowed down by one host (a replica busy being
        promoted) is followed by the next one at once. :meth:`reschedule`
        makes this ask ``pause()`` again (the owner's reasons changed).
        """
        while not self._wake_requested:
            self._reschedule = False
            left = self.round_started_at + self._owner.pause() - time.monotonic()
            if left <= 0:
                return
            if self._owner.hurry():  # rests of milliseconds: a watch across the burst's rounds
                self._watch(BURST_WATCH, FAST_STEP)
            else:
                self._watch(left - MARGIN)
            await self._sleep(left)
            if not self._reschedule:
                return

    def _watch(self, seconds: float, step: float | None = None) -> None:
        """Watch the replicas for their promotion while the loop rests (topology.probing._watch)."""
        if self.watches is None or not self._owner.linger():
            return
        current = self._owner.current()
        replicas = [
            prober
            for prober in self.probers
            if prober.host not in self._inflight
            and (state := current.get(prober.host)) is not None
            and state.role is Role.REPLICA
        ]
        self.watches.start(replicas, seconds, step)

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
        """Probe every host once, concurrently, and publish; returns the round's snapshot.

        In a hurry (see the module docstring) probes make one attempt each,
        and the round ends ``patience`` seconds in (else ``slow_after``) even
        if slow hosts have not answered: their probes go on and count in a
        later round.
        """
        self._wake_requested = False
        self.round_started_at = started = time.monotonic()
        self.rounds += 1
        probers = self.probers
        current = self._owner.current()
        heard = Heard(
            [current.get(p.host) or HostState(p.host) for p in probers],
            {prober.host: index for index, prober in enumerate(probers)},
            started,
        )
        hurry = self._owner.hurry()
        tasks = self._launch(probers, hurry, self._owner.focus() if hurry else None)
        pending = set(tasks)
        limit: float | None = started + (self.patience if hurry else self.slow_after)
        try:
            while pending:
                timeout = None if limit is None else max(limit - time.monotonic(), 0.0)
                done, pending = await asyncio.wait(
                    pending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                if not done:
                    self._owner.straggling(frozenset(tasks[t] for t in pending))
                    if hurry or self._owner.hurry():
                        break  # their probes carry over to a later round
                    limit = None  # healthy otherwise: a complete round, as usual
                for task in done:
                    self._heard_from(heard, task, tasks[task])
                if pending:
                    self._maybe_publish_early(
                        heard.items, self.rounds, heard.oldest, frozenset(heard.answered)
                    )
        except asyncio.CancelledError:
            await self._cancel_inflight()
            raise
        return self._finish(heard, complete=not pending)

    def _heard_from(self, heard: Heard, task: asyncio.Task[ProbeResult], host: str) -> None:
        if self._inflight.get(host) is task:
            del self._inflight[host]
        if task.cancelled():
            return  # its host was removed mid-round
        result = outcome(task, host)
        heard.items[heard.index_of[host]] = result
        heard.answered.add(result.host)
        probe_started = self._started_at.pop(host, heard.started)
        heard.oldest = min(heard.oldest, probe_started)
        self.probes += 1
        self.probe_failures += not result.ok
        if self._tracer is not None:
            self._tracer(ended_event(result, time.monotonic() - probe_started))

    def _finish(self, heard: Heard, complete: bool) -> Snapshot:
        """Build the round's snapshot and publish it."""
        snapshot = build_snapshot(
            heard.items,
            self._owner.current(),
            round=self.rounds,
            taken_at=time.time(),
            complete=complete,
            system_identifier=self.system_identifier,
        )
        self.last_round_duration = duration = time.monotonic() - heard.started
        self._owner.publish(snapshot, heard.oldest, frozenset(heard.answered))
        if self._tracer is not None:
            self._tracer(published_event(snapshot, duration))
        return snapshot

    def _launch(
        self, probers: Sequence[HostProber], hurry: bool, focus: frozenset[str] | None
    ) -> dict[asyncio.Task[ProbeResult], str]:
        """A probe task per host: new ones, and those still running from earlier rounds.

        With ``focus``, only those hosts get a new probe (the others keep
        their last state, and their probes in flight go on).
        """
        tasks: dict[asyncio.Task[ProbeResult], str] = {}
        for prober in probers:
            task = self._inflight.get(prober.host)
            if task is None and self.watches is not None:
                watched = self.watches.take(prober.host)
                if watched is BUSY:
                    continue  # its state carries over; its news, if any, wakes the loop
                if isinstance(watched, asyncio.Task) and watched_result(watched):
                    tasks[cast("asyncio.Task[ProbeResult]", watched)] = prober.host
                    self._started_at[prober.host] = self.watches.ended_at.pop(prober.host)
                    continue
            if task is None and focus is not None and prober.host not in focus:
                continue
            if task is None:
                task = asyncio.ensure_future(prober.probe(retries=0 if hurry else None))
                task.set_name(f"topology-probe-{prober.host}")
                self._inflight[prober.host] = task
                self._started_at[prober.host] = time.monotonic()
                if self._tracer is not None:
                    self._tracer(ProbeStarted(prober.host))
            tasks[task] = prober.host
        return tasks

    async def _cancel_inflight(self) -> None:
        inflight: list[asyncio.Task[ProbeResult] | asyncio.Task[ProbeResult | None]]
        inflight = list(self._inflight.values())
        if self.watches is not None:
            inflight += self.watches.cancel()
        self._inflight.clear()
        self._started_at.clear()
        for task in inflight:
            task.cancel()
        if inflight:
            await asyncio.wait(inflight, timeout=_CANCEL_GRACE)

    def _maybe_publish_early(
        self,
        items: list[ProbeResult | HostState],
        number: int,
        started: float,
        answered: frozenset[str],
    ) -> None:
        current = self._owner.current()
        provisional = build_snapshot(
            items,
            current,
            round=number,
            taken_at=time.time(),
            complete=False,
            system_identifier=self.system_identifier,
        )
        if self._owner.early(provisional, answered):
            self._owner.publish(provisional, started, answered)
