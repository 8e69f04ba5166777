"""A cluster's life: starting where it is used, refreshing on demand, closing for good.

:class:`Running` is the part of :class:`topology.ClusterResolver` that runs
it: ``start()`` / ``ensure_started()`` launch the supervised background
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
from topology.dcs._aware import DcsAware
from topology.probing.snapshot import Snapshot
from topology.view import ClusterView

__all__ = ["Running"]


class Running(DcsAware):
    """Start, refresh, wait, close: see the module docstring (ClusterResolver is one)."""

    probe_timeout: float
    wait_timeout: float
    _lifecycle: Lifecycle

    @property
    def running(self) -> bool:
        return self._lifecycle.running

    async def refresh(self, timeout: float | None = None) -> Snapshot:
        """Probe now: return the complete snapshot of a round started after this call.

        Coalesced with every other refresh and failure report (single flight).
        Starts the cluster if needed. Waits at most ``timeout`` seconds
        (default: ``wait_timeout + probe_timeout``), then returns the latest
        snapshot, complete or not.
        """
        limit = self.wait_timeout + self.probe_timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        await self.ensure_started(deadline)
        target = self._source.rounds + 1  # the next round to start
        self._source.wake()
        while time.monotonic() < deadline:
            snapshot = self.view.snapshot
            if snapshot.complete and snapshot.round >= target:
                break
            await self._next_publication(deadline - time.monotonic())
        return self.view.snapshot

    async def next_view(self, deadline: float) -> ClusterView:
        """Wait for the next view to be published, until ``deadline`` (monotonic) at most.

        Starts the cluster first if it is not running (its task cancelled, or
        never started); raises :class:`ResolverClosedError` once closed.
        Returns the view then current, new or not.
        """
        if not self.running:
            await self.ensure_started(deadline)
        await self._next_publication(deadline - time.monotonic())
        return self.view

    async def start(self) -> None:
        """Start the loop and wait for the first snapshot (at most ``wait_timeout``)."""
        await self.ensure_started(time.monotonic() + self.wait_timeout)

    async def ensure_started(self, deadline: float) -> None:
        """Start the loop on this event loop unless it runs there; wait for a first snapshot.

        Waits until ``deadline`` (a :func:`time.monotonic` time) at most; a
        no-op when the cluster runs here and has published. Raises
        :class:`ResolverClosedError` once :meth:`close` was called.
        """
        tasks = [(PROBE_LOOP, self._probe)]
        if self._dcs is not None:  # first: the probe loop may wait for its first list
            tasks.insert(0, (DCS_FOLLOWER, self._follow))
        if self._lifecycle.launch(tasks):
            # It ran on another event loop, gone or busy elsewhere: its
            # connections cannot be used from here; drop them without a word.
            self._source.terminate()
            self._forget_waiters()
        if self.view.snapshot.round == 0:
            await self._next_publication(deadline - time.monotonic())

    async def _probe(self) -> None:
        """The probe loop's task (supervised: restarted if it dies)."""
        try:
            if self._dcs is not None and not self.hosts:
                # Nothing to probe before the DCS lists the members.
                await self._dcs.wait_first_view(self.probe_timeout)
            await self._source.run()
        except asyncio.CancelledError:
            self._stop_fast_path()
            if not self._lifecycle.closed:
                # Cancelled by someone else, typically asyncio.run() shutting its
                # loop down: drop the connections while that loop still runs.
                self._source.terminate()
            raise

    async def _follow(self) -> None:
        """The DCS follower's task (supervised: restarted if it dies)."""
        if self._dcs is not None:
            # A restarted follower tells everything again: what it held may
            # not have been applied when it died.
            self._dcs.view = None
            await self._dcs.start()

    async def close(self, timeout: float = 5.0) -> None:
        """Stop the loop and close every probe connection, within about ``timeout`` s.

        Connections that do not close politely in time are terminated. For
        good: later calls raise :class:`ResolverClosedError`. Idempotent;
        safe without a start.
        """
        deadline = time.monotonic() + timeout
        if not await self._lifecycle.stop(timeout / 2):
            return
        self._stop_fast_path()
        await self._announcer.cancel_tasks(0.1)
        remaining = max(deadline - time.monotonic(), 0.01)
        await asyncio.gather(self._caught_up.close(remaining), self._source.close(remaining))
        await asyncio.sleep(0)  # transports closed above finish on the next iteration
        self._forget_waiters()
