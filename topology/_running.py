"""A cluster's life: starting where it is used, refreshing on demand, closing for good.

:class:`Runner` is the collaborator of :class:`topology.ClusterResolver` that
runs it: ``start()`` / ``ensure_started()`` launch the supervised background
tasks (:mod:`topology._lifecycle`: the probe loop, and the DCS follower when
there is one) on the running event loop and wait for a first snapshot;
``refresh()`` asks for a round now; ``next_view()`` waits for the next
publication; ``close()`` stops everything, for good (any later call raises
:class:`ResolverClosedError`).

Timeouts: every wait here is bounded by the caller's deadline (or
``wait_timeout`` / ``probe_timeout``); ``close(timeout)`` returns within
about ``timeout`` seconds, terminating the connections that do not close
politely in time. Concurrency: everything runs on the cluster's event loop.
"""

from __future__ import annotations

import asyncio
import time

from topology._lifecycle import DCS_FOLLOWER, PROBE_LOOP, Lifecycle
from topology._steering import Steering
from topology.probing._probe_loop import ProbeLoop
from topology.probing.snapshot import Snapshot
from topology.settings import Timing
from topology.view import ClusterView
from topology.view.caught_up import CaughtUpFinder

__all__ = ["Runner"]


class Runner:
    """Start, refresh, wait, close: see the module docstring."""

    def __init__(
        self,
        lifecycle: Lifecycle,
        steering: Steering,
        loop: ProbeLoop,
        caught_up: CaughtUpFinder,
        timing: Timing,
    ) -> None:
        self._lifecycle = lifecycle
        self._steering = steering
        self._publisher = steering.publisher
        self._loop = loop
        self._caught_up = caught_up
        self._probe_timeout = float(timing.probe_timeout)
        self._wait_timeout = float(timing.wait_timeout)

    @property
    def running(self) -> bool:
        return self._lifecycle.running

    async def refresh(self, timeout: float | None) -> Snapshot:
        """The complete snapshot of a round started after this call, or the latest one
        after ``timeout`` (default ``wait_timeout + probe_timeout``)."""
        limit = self._wait_timeout + self._probe_timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        await self.ensure_started(deadline)
        target = self._loop.rounds + 1  # the next round to start
        self._loop.wake()
        while time.monotonic() < deadline:
            snapshot = self._publisher.view.snapshot
            if snapshot.complete and snapshot.round >= target:
                break
            await self._steering.next_publication(deadline - time.monotonic())
        return self._publisher.view.snapshot

    async def next_view(self, deadline: float) -> ClusterView:
        """The view after the next publication (or at ``deadline``), starting if stopped."""
        if not self.running:
            await self.ensure_started(deadline)
        await self._steering.next_publication(deadline - time.monotonic())
        return self._publisher.view

    async def ensure_started(self, deadline: float) -> None:
        """Run on this event loop (see the module docstring); wait for a first snapshot."""
        tasks = [(PROBE_LOOP, self._probe)]
        if self._steering.dcs is not None:  # first: the probe loop may wait for its first list
            tasks.insert(0, (DCS_FOLLOWER, self._follow))
        if self._lifecycle.launch(tasks):
            # It ran on another event loop, gone or busy elsewhere: its
            # connections cannot be used from here; drop them without a word.
            self._loop.terminate()
            self._publisher.forget_waiters()
        if self._publisher.view.snapshot.round == 0:
            await self._steering.next_publication(deadline - time.monotonic())

    async def _probe(self) -> None:
        """The probe loop's task (supervised: restarted if it dies)."""
        try:
            dcs = self._steering.dcs
            if dcs is not None and not self._loop.probers:
                # Nothing to probe before the DCS lists the members.
                await dcs.follower.wait_first_view(self._probe_timeout)
            await self._loop.run()
        except asyncio.CancelledError:
            self._publisher.stop_fast_path()
            if not self._lifecycle.closed:
                # Cancelled by someone else, typically asyncio.run() shutting its
                # loop down: drop the connections while that loop still runs.
                self._loop.terminate()
            raise

    async def _follow(self) -> None:
        """The DCS follower's task (supervised: restarted if it dies)."""
        dcs = self._steering.dcs
        if dcs is not None:
            # A restarted follower tells everything again: what it held may
            # not have been applied when it died.
            dcs.follower.view = None
            await dcs.follower.start()

    async def close(self, timeout: float) -> None:
        """Stop everything, for good, within about ``timeout`` s (module docstring)."""
        deadline = time.monotonic() + timeout
        if not await self._lifecycle.stop(timeout / 2):
            return
        self._publisher.stop_fast_path()
        await self._publisher.announcer.cancel_tasks(0.1)
        remaining = max(deadline - time.monotonic(), 0.01)
        await asyncio.gather(self._caught_up.close(remaining), self._loop.close(remaining))
        await asyncio.sleep(0)  # transports closed above finish on the next iteration
        self._publisher.forget_waiters()
