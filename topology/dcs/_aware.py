"""The cluster's side of a DCS: what a pushed leader, a member list and the store's health change.

:class:`DcsAware` sits between :class:`topology.view._publisher.Publisher` and
:class:`topology.ClusterResolver`. It turns a :class:`topology.dcs.DcsWatch`
into a :class:`topology.dcs._follow.DcsFollower` whose callbacks land here:

* a member list: the hosts the probe loop probes from its next round on;
  whatever was held for a host that left goes with it (its suspicion, its
  probe and read-your-writes connections, a focus on it);
* a leader the store names that is not the primary: the primary is put in
  doubt (off the fast path, a constant reason) but nobody connects yet: for
  ``DcsPace.patience`` seconds (jittered) the cluster waits for the store
  to confirm the leader, then probes over SQL only the named leader and the
  primary in doubt (at most ``_FOCUS_LIMIT`` seconds more) at the DCS
  mode's fast pace;
* the leader's own member key saying primary + running (Patroni finished
  the promotion): that leader is published as the primary at once, marked
  ``dcs_named`` (:mod:`topology.dcs._confirm`), with no probe connection;
  SQL confirms it at the next calm round, and a failure report from the
  application (a read-only error) puts it in doubt: SQL wins over the store;
* with Patroni on etcd, the same from a peer's ``writable`` key: one
  process of the fleet wins a claim on the new leader's term, connects to
  it until it accepts writes and tells the others (:mod:`topology.dcs._claim`);
* the store's health: while it answers, calm rounds every ``dcs_interval``
  seconds; while it does not, every ``DcsPace.lost_interval`` (jittered, the
  first one at a random moment within it so a fleet that lost the store at
  one instant does not probe at once).

Connection budget: in DCS mode no probe connection is kept between rounds,
whether the store answers or not, except during the burst (``burst_window``)
of an episode the application started while the store answers (a failure
report, or a caller waiting for a primary during a hold); a failover under
way otherwise probes at ``DcsPace.fast_interval`` (jittered, no burst).

Concurrency: everything runs on the cluster's event loop; nothing waits.
"""

from __future__ import annotations

import logging
import random
import sys
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from topology.dcs import AddressMap, DcsWatch, translator
from topology.dcs._confirm import dcs_named
from topology.dcs._follow import DcsFollower
from topology.dcs._trust import TrustedWatch
from topology.errors import ConfigurationError
from topology.hosts import HostAddress, parse_host
from topology.pace import DcsPace
from topology.probing._probe_loop import ProbeLoop
from topology.probing.prober import HostProber
from topology.probing.snapshot import Role, Snapshot
from topology.trace import Tracer
from topology.view._publisher import Publisher
from topology.view.caught_up import CaughtUpFinder

if TYPE_CHECKING:
    from topology.dcs._claim import Confirmer

__all__ = ["DcsAware"]

log = logging.getLogger("topology")
# How long hurried rounds may probe only the leader a DCS named: a promotion
# takes well under this, and a DCS that named a host that never takes over
# must not keep the other hosts unprobed.
_FOCUS_LIMIT = 3.0
# Slow DCS-mode rounds of processes started together must not stay in step.
_DCS_JITTER = 0.2


class DcsAware(Publisher):
    """The DCS behaviour of a cluster (see the module docstring); ClusterResolver is one."""

    hosts: tuple[HostAddress, ...]
    interval: float
    dcs_interval: float
    dcs_pace: DcsPace
    burst_window: float
    _names: tuple[str, ...]
    _source: ProbeLoop
    _caught_up: CaughtUpFinder
    _tracer: Tracer | None
    _dcs: DcsFollower | None
    _dcs_answers: bool
    _focus: tuple[str | None, frozenset[str]] | None = None
    _focus_until: float = 0.0
    _hold_until: float = 0.0  # monotonic: no SQL round before, unless asked (a report)
    _lost_round_at: float = 0.0  # monotonic: the first round after the store was lost
    _doubted: str | None = None  # the primary the store's news put in doubt
    _ours: frozenset[str] = frozenset()  # hosts SQL has seen as members of this cluster
    _named_at: float = 0.0  # monotonic: when the store's news last made a primary

    @property
    def running(self) -> bool:
        raise NotImplementedError

    def _prober(self, address: HostAddress) -> HostProber:
        raise NotImplementedError

    def _failure(self, host: str, exc: BaseException | None, reason: str = "unspecified") -> None:
        raise NotImplementedError

    def _follower(self, dcs: DcsWatch, addresses: AddressMap | None) -> DcsFollower:
        if not isinstance(dcs, DcsWatch):
            raise ConfigurationError(f"dcs must be a topology.dcs.DcsWatch, not {dcs!r}")
        if addresses is not None and not (callable(addresses) or isinstance(addresses, Mapping)):
            raise ConfigurationError("dcs_addresses must be a mapping or a callable")
        return DcsFollower(
            dcs,
            self._names,
            set_hosts=self._set_hosts,
            dcs_leader=self._dcs_leader,
            dcs_health=self._dcs_health,
            tracer=self._tracer,
            translate=translator(addresses),
            leader_ready=self._leader_ready,
            confirmer=self._confirmer(dcs),
            confirm_wanted=self._confirm_wanted,
        )

    def _confirmer(self, dcs: DcsWatch) -> Confirmer | None:
        """Patroni on etcd: one process per fleet confirms a new leader (topology.dcs._claim)."""
        inner = dcs.watch if isinstance(dcs, TrustedWatch) else dcs
        # The etcd client needs the [patroni] extra: SQL-only topology must
        # import without it, and without it no PatroniEtcd can exist.
        patroni = sys.modules.get("topology.dcs.patroni")
        if patroni is None or not isinstance(inner, patroni.PatroniEtcd):
            return None
        from topology.dcs._claim import Confirmer

        patience = lambda: self.dcs_pace.patience  # noqa: E731
        return Confirmer(
            inner.gateway, inner.prefix, self._prober, patience, inner.has_key, self._leader_ready
        )

    def _confirm_wanted(self, host: str) -> bool:
        """Worth a claim: the store answers, names a host SQL saw as ours, not the primary."""
        return self._dcs_answers and host in self._ours and host != self.view.snapshot.primary

    def _keeps_connections(self) -> bool:
        """SQL-only: probe connections stay open. DCS mode: kept only during the burst of
        an episode the application started (its failure report) while the DCS answers."""
        return self._dcs is None or (self._dcs_answers and self.pace.bursting())

    def _dcs_paced(self, answers: bool) -> None:
        """The pace of DCS mode: calm, lost, and failover rounds (see topology.pace.DcsPace)."""
        pace, settings = self.pace, self.dcs_pace
        pace.interval = self.dcs_interval if answers else settings.lost_interval
        pace.jitter = _DCS_JITTER if answers else settings.lost_jitter
        pace.fast_interval = settings.fast_interval if answers else settings.lost_fast_interval
        pace.fast_jitter = settings.fast_jitter
        # While the DCS is lost, no burst: a fleet bursting at once is the storm
        # to avoid. While it answers, only the application's failure reports
        # burst (a DCS push starts an episode without one: see _dcs_leader).
        pace.burst_window = self.burst_window if answers else 0.0

    def _pause(self) -> float:
        """The Publisher's pause, held while the DCS may still confirm a leader it named,
        and the first round after the store was lost at its own random moment."""
        pause = super()._pause()
        started = self._source.round_started_at
        if self._dcs_answers and self._hold_until > time.monotonic():
            return max(pause, self._hold_until - started)
        if not self._dcs_answers and self._lost_round_at > started:
            return self._lost_round_at - started
        return pause

    def _set_hosts(self, names: Sequence[str]) -> None:
        addresses = [parse_host(name) for name in names]
        kept = {prober.host: prober for prober in self._source.probers}
        self.hosts = tuple(addresses)
        self._names = tuple(str(address) for address in addresses)
        self._source.set_probers(
            [kept.get(str(address)) or self._prober(address) for address in addresses]
        )
        # What was held for the hosts that left goes with them: a suspect no
        # probe can clear any more would keep rounds fast for good, and
        # connections to pod addresses that never come back would pile up.
        current = frozenset(self._names)
        self._forget(current)
        self._ours = self._ours & current
        self._caught_up.retain(current)
        if self._focus is not None and not self._focus[1] <= current:
            self._focus = None
        if self._dcs is not None:
            empty = "answers but lists no members: check the scope and the namespace"
            self._remark(f"{self._dcs.watch.describe()} members", None if names else empty)
        if self.running:
            self._source.wake()

    def _dcs_leader(self, host: str | None) -> None:
        primary = self.view.snapshot.primary
        if host is not None and host == primary:
            self._hold_until = 0.0
            return
        now = time.monotonic()
        if self.view.snapshot.round == 0:
            hold = 0.0  # nothing known over SQL yet: probe at once
        elif self._hold_until <= now:  # later news within a hold does not extend it
            self._hold_until = now + self.dcs_pace.hold()
            hold = self._hold_until - now
        else:
            hold = self._hold_until - now
        # After the hold, rounds probe the named leader and the primary in
        # doubt only (see _focus_hosts); with no leader named, the primary
        # in doubt only, until the DCS names one.
        focus = frozenset(h for h in (host, primary) if h is not None)
        self._focus = (host, focus) if focus else None
        self._focus_until = max(self._hold_until, now) + _FOCUS_LIMIT
        if primary is not None and not self._is_suspect(primary):
            # A hint, not a verdict: no round yet (the store's confirmation is
            # awaited); the next probe of the primary clears the doubt if it
            # still accepts writes (SQL wins over the DCS). A constant reason:
            # it becomes a metric attribute (error.type).
            reason = "the DCS names another leader" if host else "the DCS names no leader"
            log.warning(
                "%s (%s), not %s: waiting %.1f s for the DCS to confirm it, then probing",
                reason, host or "none", primary, hold,
            )  # fmt: skip
            self._doubted = primary
            fresh = self.pace.episode_started is None
            self._suspect(primary, primary in self._names, reason)
            if fresh:  # an episode without a burst: the DCS's confirmation is awaited
                self.pace.episode_started = now - self.pace.burst_window
        if self.running:
            if hold > 0:
                self._source.reschedule()
            else:
                self._source.wake()

    def _leader_ready(self, host: str) -> None:
        """The leader's member key says primary + running: publish it, no connection."""
        if self._is_suspect(host) or not self._dcs_answers:
            return  # the application or SQL doubts it: SQL decides
        former = self.view.snapshot.primary
        snapshot = dcs_named(self.view.snapshot, host, time.time(), self._ours)
        if snapshot is None:
            return  # not a host SQL has seen as one of ours, or already the primary
        self._hold_until = 0.0
        self._focus = None
        for doubted in {former, self._doubted} - {None, host}:
            assert doubted is not None
            self._clear_suspect(doubted)  # replaced, not failing: no fast rounds for it
        self._doubted = None
        log.warning(
            "the DCS says %s was promoted (leader, primary, running): following it now,"
            " SQL confirms it at the next round", host,
        )  # fmt: skip
        self._named_at = time.monotonic()
        self._publish(snapshot, self._named_at, frozenset())
        if self.running:
            self._source.reschedule()  # back to the calm pace: no round now

    async def _next_publication(self, timeout: float) -> None:
        """Wait for the next publication (see Publisher); a caller waiting for a primary
        during a hold ends it: the application needs an answer now, so the named
        leader is probed at once, in a burst (a fleet with no traffic waits for
        the DCS's confirmation and connects nowhere)."""
        if self._dcs_answers and self._hold_until > time.monotonic():
            self._hold_until = 0.0
            self.pace.episode_started = time.monotonic()  # the burst starts now
            if self.running:
                self._source.wake()
        await super()._next_publication(timeout)

    def _publish(self, snapshot: Snapshot, round_started: float, answered: frozenset[str]) -> None:
        """Publish (see Publisher), remembering which hosts SQL saw as members of ours."""
        current = self.view.snapshot
        if (
            not snapshot.dcs_named
            and current.dcs_named
            and round_started < self._named_at
            and snapshot.primary != current.primary
        ):
            # A round that began before the store's news (e.g. it found the
            # new leader still in recovery) must not undo it; the next one will
            # confirm or overrule it with probes made since.
            log.debug("a round older than the DCS's news of %s: not published", current.primary)
            return
        if not snapshot.dcs_named:
            seen = {s.host for s in snapshot.hosts if s.role in (Role.PRIMARY, Role.REPLICA)}
            if not seen <= self._ours:
                self._ours = self._ours | seen
        super()._publish(snapshot, round_started, answered)

    def _focus_hosts(self) -> frozenset[str] | None:
        """The hosts a hurried round probes, or None for all of them.

        Set when the DCS names a new leader (or none): that leader and the
        primary put in doubt (a probe of it is what lets SQL win over a wrong
        DCS). Over once the leader is the primary, the DCS stops answering,
        or after ``_FOCUS_LIMIT`` seconds (a DCS that named a host that never
        takes over must not keep the others unprobed).
        """
        if self._focus is None:
            return None
        leader, hosts = self._focus
        if (
            (leader is not None and self.view.snapshot.primary == leader)
            or not self._dcs_answers
            or time.monotonic() > self._focus_until
        ):
            self._focus = None
            return None
        return hosts

    def _dcs_health(self, answers: bool, reason: str | None = None) -> None:
        self._dcs_answers = answers
        if self._dcs is not None:
            source = self._dcs.watch.describe()
            self._remark(source, None if answers else f"does not answer: {reason}")
        self._dcs_paced(answers)
        if not answers:
            # The whole fleet lost the store at one instant: each process
            # probes at its own moment within lost_interval, not all at once.
            lost = self.dcs_pace.lost_interval * random.uniform(0.0, 1.0)
            self._lost_round_at = time.monotonic() + lost
        if self.running:
            self._source.reschedule()
