"""What a cluster publishes, and when it wants news: one frozen view per change.

:class:`Publisher` holds the cluster's state between snapshots: the
:class:`~topology.view.ClusterView` readers see, when each suspect was
reported, the pace of a failover episode, and the latch that wakes the
callers waiting for the next publication. Every change of the view is one
assignment of a new frozen view; :mod:`topology.view._announce` then tells the
outside world.

:class:`topology.ClusterResolver` owns one (``cluster.view`` reads its
``view``); the cluster's steering (:mod:`topology._steering`) hands it each
round's snapshot and asks it when news is wanted.

Concurrency: not thread-safe; everything runs on the event loop that runs
the cluster (``ClusterResolver.report_failure`` hops there first). Nothing
here waits on the network; :meth:`Publisher.next_publication` waits at most
its timeout and may be cancelled.

Example::

    publisher = Publisher(("a:5432", "b:5432"), pace, Announcer(picker), stale_after=5.0)
    publisher.publish(snapshot, round_started, answered=frozenset({"a:5432"}))
    publisher.view.primary  # "a:5432", until a failure report or stale_after
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Iterable

from topology._supervise import Supervisor
from topology.pace import Pace
from topology.probing.snapshot import Snapshot
from topology.view import ClusterView
from topology.view._announce import Announcer

__all__ = ["ANNOUNCER", "Publisher"]

ANNOUNCER = "announcer"  # the supervised name of the announcements (see _announce)


class Publisher:
    """The cluster's published view and failover episode (see the module docstring)."""

    def __init__(
        self,
        hosts: Iterable[str],
        pace: Pace,
        announcer: Announcer,
        stale_after: float,
        supervisor: Supervisor | None = None,
    ) -> None:
        self.view = ClusterView(Snapshot.empty(hosts))
        self.pace = pace
        self.stale_after = stale_after
        self.announcer = announcer
        self.supervisor = supervisor or Supervisor()
        # The snapshot last announced in full: the next announcement tells
        # every change since, even if one in between failed half-way.
        self._announced = self.view.snapshot
        self.last_round_at: float | None = None
        # When each suspect was reported: only a probe started later clears it.
        self._suspects: dict[str, float] = {}
        self._remarks: dict[str, str] = {}
        self._published: asyncio.Future[None] | None = None

    # --- changes of the view -----------------------------------------------------
    def suspect(self, host: str, known: bool, reason: str) -> None:
        """``host`` was reported failing (``reason``, in words): off the fast path;
        ``known``: one of the cluster's."""
        if known:  # an unknown host could never be cleared by a probe
            self._suspects[host] = time.monotonic()
        view = self.view
        primary = None if host == view.primary else view.primary
        self.view = dataclasses.replace(view, primary=primary, suspects=frozenset(self._suspects))
        self.pace.failing()
        self.announcer.reported(host, reason, primary)

    def remark(self, source: str, words: str | None) -> None:
        """Say (or, with None, stop saying) something about ``source`` in every view."""
        if words is None:
            self._remarks.pop(source, None)
        else:
            self._remarks[source] = words
        self.view = dataclasses.replace(self.view, remarks=tuple(self._remarks.items()))

    def is_suspect(self, host: str) -> bool:
        return host in self._suspects

    def clear_suspect(self, host: str) -> None:
        """Stop doubting ``host`` (e.g. a former primary the DCS says was replaced)."""
        if self._suspects.pop(host, None) is not None:
            self.view = dataclasses.replace(self.view, suspects=frozenset(self._suspects))

    def forget(self, hosts: frozenset[str]) -> None:
        """Only ``hosts`` are the cluster's now: forget what was said of the others.

        A host no longer probed can never be cleared by a probe: a suspect
        kept would keep the rounds fast (a failover under way) for good.
        """
        if self._suspects.keys() - hosts:
            self._suspects = {h: t for h, t in self._suspects.items() if h in hosts}
            self.view = dataclasses.replace(self.view, suspects=frozenset(self._suspects))

    def stop_fast_path(self) -> None:
        """The loop stopped: no fast path until the next publication."""
        self.view = self.view.stopped()

    def publish(self, snapshot: Snapshot, round_started: float, answered: frozenset[str]) -> None:
        """Publish ``snapshot``: a new view, the waiters woken, the news announced.

        ``round_started``: the monotonic start of the oldest probe that
        answered; ``answered``: the hosts that answered in this round.
        """
        old = self.view.snapshot
        if snapshot.complete:
            self.last_round_at = snapshot.taken_at
        if self._suspects:
            # A suspect is cleared by an answer from a probe started after the report.
            self._suspects = {
                h: t for h, t in self._suspects.items() if t >= round_started or h not in answered
            }
        primary = snapshot.primary
        fast = None if primary in self._suspects else primary
        self.view = ClusterView(
            snapshot,
            fast,
            time.monotonic() + self.stale_after,
            frozenset(self._suspects),
            tuple(self._remarks.items()),
        )
        if fast is not None and not self._suspects:
            self.pace.settled()
        elif old.primary is not None and primary is None:
            self.pace.failing()  # lost without a report (a frozen primary timed out)
        published, self._published = self._published, None
        if published is not None and not published.done():
            published.set_result(None)
        self._announce()

    def _announce(self) -> None:
        """Tell the news since the last announcement made in full (supervised).

        If telling raises (a bug), the supervisor logs it and calls this again
        after a backoff: on_change callbacks miss no change (one may hear a
        change twice, when the failure came after them).
        """
        view = self.view
        try:
            self.announcer.announce(self._announced, view)
        except Exception as exc:
            self.supervisor.retry_later(ANNOUNCER, exc, self._announce)
        else:
            self._announced = view.snapshot

    # --- when news is wanted --------------------------------------------------------
    def wants_news(self) -> bool:
        """No primary known, or a failure report not cleared yet."""
        return self.view.snapshot.primary is None or bool(self._suspects)

    def in_episode(self) -> bool:
        """A failover under way, not a start-up: only then may rounds skip slow hosts."""
        return self.pace.episode_started is not None and self.wants_news()

    def pause(self) -> float:
        """Seconds the source sleeps before its next round."""
        return self.pace.pause(fast=self.wants_news())

    def worth_publishing_early(self, snapshot: Snapshot, answered: frozenset[str]) -> bool:
        """Whether a provisional snapshot brings a primary the fast path lacks."""
        # Only a primary that answered in this very round: a carried-over
        # state may be the one a failure report just put in doubt. Nor while
        # the cluster's identity is still to be learned (a complete round
        # does that): the host that answered first may belong to another one.
        primary = snapshot.primary
        if primary is None or primary not in answered or primary == self.view.primary:
            return False
        return snapshot.system_identifier is not None or all(
            state.system_identifier is None for state in snapshot.hosts
        )

    # --- waiting ---------------------------------------------------------------------
    async def next_publication(self, timeout: float) -> None:
        """Wait (at most ``timeout`` s) for the next snapshot to be published."""
        if self._published is None:
            self._published = asyncio.get_running_loop().create_future()
        await asyncio.wait((self._published,), timeout=max(timeout, 0.0))

    def forget_waiters(self) -> None:
        """Drop the latch: it belongs to an event loop that is gone or closing."""
        self._published = None
