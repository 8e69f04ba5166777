"""Apply what a DCS says to a cluster: hosts to probe, a new leader, the store's health.

:class:`DcsFollower` runs a :class:`topology.dcs.DcsWatch` and tells its
cluster, a :class:`DcsListener`, what changes, each only when it changes:

* ``members(hosts)``: the static hosts followed by the members' addresses;
* ``leader(host)``: the leader the store names (None: no leader), so the
  cluster probes at once instead of at its next round;
* ``leader_ready(host)``: the leader's own member key says it
  is ``primary`` (or ``master``) and ``running``, i.e. Patroni finished
  promoting it; called when that becomes true for a leader;
* a new leader SQL has not confirmed yet (``confirm_wanted(host)``): the
  ``confirmer`` (:mod:`topology.dcs._claim`) tries to confirm it for the
  fleet; a peer's ``writable`` key for the leader's term makes it ready too.
  When the leader key goes, the confirmer (if this process holds the role)
  looks for the next leader among the other members at once
  (:mod:`topology.dcs._scout`);
* ``health(answers, reason)``: whether the store answers (and why not), so the cluster can probe
  slowly while it does and fall back to SQL-only probing when it does not.

Logging: one WARNING when the store is lost, one when it answers again;
retries in between at DEBUG.

Concurrency: :meth:`run` runs in one task that the cluster owns and cancels;
everything runs on that event loop and nothing here blocks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from topology._within import within
from topology.dcs import DcsView, DcsWatch
from topology.trace import DcsAnswered, DcsLost, Tracer

if TYPE_CHECKING:  # the claim needs the [patroni] extra's etcd client
    from topology.dcs._claim import Confirmer

__all__ = ["DcsFollower", "DcsListener", "merged", "ready_leader"]

log = logging.getLogger("topology")
# What Patroni writes in a member key once it runs as the read-write leader:
# "primary" ("master" before Patroni 3). Not "promoted": Patroni sets it as
# soon as `pg_ctl promote -W` (no wait) returns, and a member key written then
# can name a server still in recovery (the application's first writes there
# failed read-only in test_drill_otel). A standby_leader is no read-write primary.
_PRIMARY_ROLES = frozenset({"primary", "master"})


def ready_leader(view: DcsView | None) -> str | None:
    """The leader's address if its own member key says primary + running, or a peer
    confirmed it accepting writes for the leader lock's term; else None."""
    if view is None or view.leader is None:
        return None
    for member in view.members:
        if member.name == view.leader:
            ready = member.role in _PRIMARY_ROLES and member.state == "running"
            confirmed = view.term > 0 and view.writable == (member.name, member.host)
            return member.host if (ready or confirmed) and member.host else None
    return None


def merged(static: Sequence[str], members: Sequence[str]) -> tuple[str, ...]:
    """The static hosts, then the members not among them, without duplicates."""
    return tuple(dict.fromkeys([*static, *members]))


class DcsListener(Protocol):
    """What a :class:`DcsFollower` tells its cluster (:mod:`topology.dcs._aware`).

    Each call runs on the follower's event loop and must return at once.
    """

    def members(self, hosts: Sequence[str]) -> None:
        """Probe these hosts: the static ones, then the members' addresses."""

    def leader(self, host: str | None) -> None:
        """The store names this leader now (None: no leader)."""

    def leader_ready(self, host: str) -> None:
        """The leader's own member key, or a peer's claim, says it accepts writes."""

    def confirm_wanted(self, host: str) -> bool:
        """Whether a new leader is worth confirming over SQL for the fleet."""
        ...

    def health(self, answers: bool, reason: str | None) -> None:
        """Whether the store answers now (``reason``: why not)."""


class DcsFollower:
    """Runs ``watch`` and tells ``listener`` what its views change (module docstring)."""

    def __init__(
        self,
        watch: DcsWatch,
        static_hosts: Sequence[str],
        listener: DcsListener,
        *,
        tracer: Tracer | None = None,
        translate: Callable[[str], str] | None = None,
        confirmer: Confirmer | None = None,
    ) -> None:
        self.watch = watch
        self.static_hosts = tuple(static_hosts)
        self.view: DcsView | None = None
        self.healthy = False
        self.outages = 0
        self.views = 0
        self._translate = translate  # the DCS's member addresses -> addresses to probe
        self._listener = listener
        self.confirmer = confirmer
        self._tracer = tracer  # already guarded
        self._first: asyncio.Event | None = None

    def start(self) -> asyncio.Task[None]:
        """Follow the store in a new task on the running loop (cancel it to stop).

        :meth:`wait_first_view` waits for this run's first view from the
        moment this returns.
        """
        self._first = asyncio.Event()
        task = asyncio.ensure_future(self._run())
        task.set_name("topology-dcs-follower")
        return task

    async def _run(self) -> None:
        confirmer = self.confirmer
        if confirmer is None:
            await self.watch.run(self._on_view, self._on_lost)
            return
        # The election and the watch run in tasks of their own: cancelled,
        # this task first lets the confirmer resign over the watch's etcd
        # client, then stops the watch (which closes that client).
        holding = asyncio.ensure_future(self._hold(confirmer))
        holding.set_name("topology-dcs-confirmer")
        watching = asyncio.ensure_future(self.watch.run(self._on_view, self._on_lost))
        watching.set_name("topology-dcs-watch")
        try:
            await asyncio.wait((watching,))
            watching.result()
        finally:  # a confirmation under way goes with the follower
            await confirmer.stop()
            for task in (holding, watching):
                task.cancel()
                await asyncio.wait((task,))

    async def _hold(self, confirmer: Confirmer) -> None:
        """Stand for the fleet's confirmer once the store has answered."""
        if self._first is not None:
            await self._first.wait()
        await confirmer.hold()

    async def wait_first_view(self, timeout: float) -> bool:
        """Wait (at most ``timeout`` s) until the store has answered once; True if it has."""
        if self.view is not None:
            return True
        first = self._first
        if first is None:
            return False
        try:
            await within(first.wait(), timeout)  # never loses a cancellation
        except asyncio.TimeoutError:
            return False
        return True

    def _on_view(self, view: DcsView) -> None:
        self.views += 1
        if self._translate is not None:
            view = view.translated(self._translate)
        if not self.healthy:
            self.healthy = True
            if self.outages:
                log.warning(
                    "the DCS answers again (%s): SQL probes slow down", self.watch.describe()
                )
                if self._tracer is not None:
                    self._tracer(DcsAnswered(self.watch.describe()))
            self._listener.health(True, None)
        old, self.view = self.view, view
        if self._first is not None:
            self._first.set()
        ready, was_ready = ready_leader(view), ready_leader(old)
        if not view.same_cluster_as(old):
            self._changed(old, view)
        if ready is not None and ready != was_ready:
            if self.confirmer is not None:
                self.confirmer.settled()
            log.info("the DCS says leader %s runs as the primary (%s)", view.leader, ready)
            self._listener.leader_ready(ready)

    def _changed(self, old: DcsView | None, view: DcsView) -> None:
        """The members or the leader changed: tell the cluster."""
        hosts = merged(self.static_hosts, view.hosts)
        if old is None or hosts != merged(self.static_hosts, old.hosts):
            log.info(
                "the DCS lists members %s: probing %s", ", ".join(view.hosts), ", ".join(hosts)
            )
            self._listener.members(hosts)
        if old is None or view.leader_host != old.leader_host:
            log.info("the DCS names leader %s (%s)", view.leader, view.leader_host)
            self._confirm(old, view)  # first: the fleet may be waiting on this process
            self._listener.leader(view.leader_host)

    def _confirm(self, old: DcsView | None, view: DcsView) -> None:
        """A new leader not ready yet: try to confirm it for the fleet (if wanted)."""
        host, confirmer, wanted = view.leader_host, self.confirmer, self._listener.confirm_wanted
        if old is None or confirmer is None:
            return
        if view.leader is None and old.leader is not None:  # the lock is free: look ahead
            confirmer.scout([
                (m.name, m.host) for m in view.members
                if m.name != old.leader and m.host and wanted(m.host)
            ])  # fmt: skip
            return
        if host is None or view.leader is None:
            return
        if ready_leader(view) is None and wanted(host):
            confirmer.start(view.term, view.leader, host)

    def _on_lost(self, reason: str) -> None:
        news = self.healthy or (self.outages == 0 and self.view is None)
        if not news:
            log.debug("the DCS still does not answer: %s", reason)
            return
        self.outages += 1
        self.healthy = False
        log.warning(
            "the DCS does not answer: %s; probing every host over SQL until it does", reason
        )
        if self._tracer is not None:
            self._tracer(DcsLost(self.watch.describe(), reason))
        self._listener.health(False, reason)
