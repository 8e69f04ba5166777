"""The probe loop's owner: it hands each round to the view, and says when the next one runs.

:class:`Steering` is the collaborator of :class:`topology.ClusterResolver`
that the :class:`~topology.probing._probe_loop.ProbeLoop` talks to (its
:class:`~topology.probing._probe_loop.RoundOwner`). It joins the two parts
that decide about rounds:

* the :class:`~topology.view._publisher.Publisher`, which publishes each
  snapshot and knows whether news is wanted (no primary, a suspect);
* with a DCS, the :class:`~topology.dcs._aware.DcsMode`, which may hold a
  round back (the store's confirmation is awaited), focus it on the leader
  the store named, refuse a round older than the store's news, and close
  probe connections between rounds.

It also takes the failure reports: the application's
(``ClusterResolver.report_failure``) and the loop's own, a primary too slow
to answer its probe (a frozen host fails nothing by itself).

Concurrency: everything runs on the cluster's event loop and returns at
once; :meth:`Steering.next_publication` waits at most its timeout.

Example::

    steering = Steering(publisher)
    loop = steering.steer(ProbeLoop(probers, steering, patience=0.05, slow_after=0.5))
    steering.failure("a:5432", exc)  # off the fast path, one round now
"""

from __future__ import annotations

import logging

from topology.dcs._aware import DcsMode
from topology.errors import classify
from topology.probing._probe_loop import ProbeLoop
from topology.probing.snapshot import Snapshot
from topology.view._publisher import Publisher

__all__ = ["Steering"]

log = logging.getLogger("topology")


class Steering:
    """Owns the rounds' decisions (see the module docstring); a ``RoundOwner``."""

    def __init__(self, publisher: Publisher) -> None:
        self.publisher = publisher
        self.dcs: DcsMode | None = None  # set when the cluster follows a DCS
        self.failure_reports = 0
        self._loop: ProbeLoop | None = None

    def steer(self, loop: ProbeLoop) -> ProbeLoop:
        """Take ``loop`` (built with this steering as its owner): failures wake it."""
        self._loop = loop
        return loop

    # --- what the loop asks and tells -------------------------------------------------
    def current(self) -> Snapshot:
        return self.publisher.view.snapshot

    def publish(self, snapshot: Snapshot, round_started: float, answered: frozenset[str]) -> None:
        if self.dcs is None or self.dcs.admits(snapshot, round_started):
            self.publisher.publish(snapshot, round_started, answered)

    def pause(self) -> float:
        pause = self.publisher.pause()
        return pause if self.dcs is None else self.dcs.pause(pause)

    def hurry(self) -> bool:
        return self.publisher.in_episode()

    def early(self, snapshot: Snapshot, answered: frozenset[str]) -> bool:
        return self.publisher.worth_publishing_early(snapshot, answered)

    def linger(self) -> bool:
        """SQL-only: probe connections stay open; with a DCS, see DcsMode.linger."""
        return self.dcs is None or self.dcs.linger()

    def focus(self) -> frozenset[str] | None:
        return None if self.dcs is None else self.dcs.focus()

    def straggling(self, hosts: frozenset[str]) -> None:
        # A primary that has not answered within a quarter of the probe timeout
        # is treated as failing (a frozen host fails nothing by itself):
        # sessions stop going to it and the loop looks for a promotion.
        primary = self.publisher.view.snapshot.primary
        if primary is not None and primary in hosts and not self.publisher.is_suspect(primary):
            log.info("primary %s is slow to answer its probe: looking for another", primary)
            self.failure(primary, None, "slow probe")

    # --- failures and waiting -----------------------------------------------------------
    def failure(self, host: str, exc: BaseException | None, reason: str = "unspecified") -> None:
        """``host`` failed: off the fast path until a later probe clears it; a round now."""
        self.failure_reports += 1
        if exc is not None:
            # The type and the reason only: an exception's text may hold SQL parameters.
            reason = classify(exc).words
            log.info("failure reported on %s: %s (%s)", host, reason, type(exc).__name__)
        loop = self._loop
        known = loop is not None and any(prober.host == host for prober in loop.probers)
        self.publisher.suspect(host, known, reason)
        if loop is not None:
            loop.wake()  # coalesced; before the loop runs, its first round is at once anyway

    async def next_publication(self, timeout: float) -> None:
        """Wait (at most ``timeout`` s) for the next publication; with a DCS, a caller
        waiting ends a hold (see DcsMode.wanted_now)."""
        if self.dcs is not None:
            self.dcs.wanted_now()
        await self.publisher.next_publication(timeout)
