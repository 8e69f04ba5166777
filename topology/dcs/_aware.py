"""The cluster's side of a DCS: what a pushed leader, a member list and the store's health change.

:class:`DcsMode` is the collaborator a :class:`topology.ClusterResolver` with a
DCS owns. It runs a :class:`topology.dcs._follow.DcsFollower` over the
:class:`topology.dcs.DcsWatch` and is its listener; it changes the
published view (:class:`~topology.view._publisher.Publisher`) and the probe
loop (:class:`~topology.probing._probe_loop.ProbeLoop`), and the cluster's
steering (:mod:`topology._steering`) asks it, round by round, for the
pause, the focus and whether connections stay open:

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
* the store's health: while it answers, calm rounds every ``DcsPace.interval``
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
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from topology.dcs import DcsWatch
from topology.dcs._confirm import dcs_named
from topology.dcs._follow import DcsFollower
from topology.dcs._trust import TrustedWatch
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
    from topology.dcs.patroni import PatroniEtcd

__all__ = ["DcsMode"]

log = logging.getLogger("topology")
# How long hurried rounds may probe only the leader a DCS named: a promotion
# takes well under this, and a DCS that named a host that never takes over
# must not keep the other hosts unprobed.
_FOCUS_LIMIT = 3.0
# Slow DCS-mode rounds of processes started together must not stay in step.
_DCS_JITTER = 0.2


class DcsMode:
    """A cluster's DCS behaviour (see the module docstring); a :class:`DcsListener`.

    ``watch``: the store, already behind the trust model; ``publisher``,
    ``loop`` and ``caught_up``: the cluster's; ``make_prober``: makes the
    probe of a member the store adds; ``burst_window``: the timing's burst, kept
    only while the store answers.
    """

    def __init__(
        self,
        watch: DcsWatch,
        publisher: Publisher,
        loop: ProbeLoop,
        caught_up: CaughtUpFinder,
        make_prober: Callable[[HostAddress], HostProber],
        *,
        pace: DcsPace,
        burst_window: float,
        tracer: Tracer | None = None,
    ) -> None:
        self.settings = pace
        self.answers = False  # whether the store answers now
        self._publisher = publisher
        self._loop = loop
        self._caught_up = caught_up
        self._make_prober = make_prober
        self._etcd: PatroniEtcd | None = None  # the store, when it is Patroni on etcd
        self._burst_window = burst_window
        self._focus: tuple[str | None, frozenset[str]] | None = None
        self._focus_until = 0.0
        self._hold_until = 0.0  # monotonic: no SQL round before, unless asked (a report)
        self._lost_round_at = 0.0  # monotonic: the first round after the store was lost
        self._doubted: str | None = None  # the primary the store's news put in doubt
        self._ours: frozenset[str] = frozenset()  # hosts SQL has seen as members of this cluster
        self._named_at = 0.0  # monotonic: when the store's news last made a primary
        static = [prober.host for prober in loop.probers]
        self.follower = DcsFollower(
            watch, static, self, tracer=tracer, confirmer=self._confirmer(watch)
        )
        self.paced(False)  # until the store answers

    def _confirmer(self, dcs: DcsWatch) -> Confirmer | None:
        """Patroni on etcd: one process per fleet confirms a new leader (topology.dcs._claim),
        with this mode as its ClaimOwner."""
        inner = dcs.watch if isinstance(dcs, TrustedWatch) else dcs
        # The etcd client needs the [patroni] extra: SQL-only topology must
        # import without it, and without it no PatroniEtcd can exist.
        patroni = sys.modules.get("topology.dcs.patroni")
        if patroni is None or not isinstance(inner, patroni.PatroniEtcd):
            return None
        from topology.dcs._claim import Confirmer

        self._etcd = inner
        return Confirmer(inner.gateway, inner.prefix, self)

    # --- what the confirmer asks (a ClaimOwner) -----------------------------------------
    def prober(self, address: HostAddress) -> HostProber:
        """A new prober for ``address``, with the cluster's probe login."""
        return self._make_prober(address)

    def patience(self) -> float:
        """How long the confirmer waits for a new leader to accept writes."""
        return self.settings.patience

    def seen(self, key: str) -> bool:
        """Whether the watch has delivered ``key`` (a peer's claim); no network."""
        return self._etcd is not None and self._etcd.has_key(key)

    @property
    def _view(self) -> Snapshot:
        return self._publisher.view.snapshot

    # --- what the steering asks, round by round ---------------------------------------
    def linger(self) -> bool:
        """Probe connections are kept only during the burst of an episode the
        application started (its failure report) while the DCS answers."""
        return self.answers and self._publisher.pace.bursting()

    def paced(self, answers: bool) -> None:
        """The pace of DCS mode: calm, lost, and failover rounds (see topology.pace.DcsPace)."""
        pace, settings = self._publisher.pace, self.settings
        pace.interval = settings.interval if answers else settings.lost_interval
        pace.jitter = _DCS_JITTER if answers else settings.lost_jitter
        pace.fast_interval = settings.fast_interval if answers else settings.lost_fast_interval
        pace.fast_jitter = settings.fast_jitter
        # While the DCS is lost, no burst: a fleet bursting at once is the storm
        # to avoid. While it answers, only the application's failure reports
        # burst (a DCS push starts an episode without one: see leader()).
        pace.burst_window = self._burst_window if answers else 0.0

    def pause(self, pause: float) -> float:
        """The publisher's ``pause``, held while the DCS may still confirm a leader it
        named, and the first round after the store was lost at its own random moment."""
        started = self._loop.round_started_at
        if self.answers and self._hold_until > time.monotonic():
            return max(pause, self._hold_until - started)
        if not self.answers and self._lost_round_at > started:
            return self._lost_round_at - started
        return pause

    def wanted_now(self) -> None:
        """A caller waits for a publication: a hold ends, since the application needs
        an answer now; the named leader is probed at once, in a burst (a fleet
        with no traffic waits for the DCS's confirmation and connects nowhere)."""
        if self.answers and self._hold_until > time.monotonic():
            self._hold_until = 0.0
            self._publisher.pace.episode_started = time.monotonic()  # the burst starts now
            self._loop.wake()

    def admits(self, snapshot: Snapshot, round_started: float) -> bool:
        """Whether a round's ``snapshot`` may be published; remembers who SQL saw as ours."""
        current = self._view
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
            return False
        if not snapshot.dcs_named:
            seen = {s.host for s in snapshot.hosts if s.role in (Role.PRIMARY, Role.REPLICA)}
            if not seen <= self._ours:
                self._ours = self._ours | seen
        return True

    # --- what the store tells (a DcsListener) ---------------------------------------
    def confirm_wanted(self, host: str) -> bool:
        """Worth a claim: the store answers, names a host SQL saw as ours, not the primary."""
        return self.answers and host in self._ours and host != self._view.primary

    def members(self, names: Sequence[str]) -> None:
        """Probe these hosts from the next round on; forget what was held for the others."""
        addresses = [parse_host(name) for name in names]
        kept = {prober.host: prober for prober in self._loop.probers}
        self._loop.set_probers(
            [kept.get(str(address)) or self._make_prober(address) for address in addresses]
        )
        # What was held for the hosts that left goes with them: a suspect no
        # probe can clear any more would keep rounds fast for good, and
        # connections to pod addresses that never come back would pile up.
        current = frozenset(str(address) for address in addresses)
        self._publisher.forget(current)
        self._ours = self._ours & current
        self._caught_up.retain(current)
        if self._focus is not None and not self._focus[1] <= current:
            self._focus = None
        watch = self.follower.watch
        untrusted = watch.untrusted if isinstance(watch, TrustedWatch) else 0
        empty = (
            f"lists {untrusted} member(s), none trusted: see trust (hosts=, dcs_allow=)"
            if untrusted
            else "answers but lists no members: check the scope and the namespace"
        )
        self._publisher.remark(f"{watch.describe()} members", None if names else empty)
        self._loop.wake()

    def leader(self, host: str | None) -> None:
        """The store names ``host`` (None: nobody): the primary is put in doubt, and
        rounds wait a hold for the store's confirmation, then focus on both."""
        primary = self._view.primary
        if host is not None and host == primary:
            self._hold_until = 0.0
            return
        now = time.monotonic()
        if self._view.round == 0:
            hold = 0.0  # nothing known over SQL yet: probe at once
        elif self._hold_until <= now:  # later news within a hold does not extend it
            self._hold_until = now + self.settings.hold()
            hold = self._hold_until - now
        else:
            hold = self._hold_until - now
        # After the hold, rounds probe the named leader and the primary in
        # doubt only (see focus); with no leader named, the primary
        # in doubt only, until the DCS names one.
        focus = frozenset(h for h in (host, primary) if h is not None)
        self._focus = (host, focus) if focus else None
        self._focus_until = max(self._hold_until, now) + _FOCUS_LIMIT
        if primary is not None and not self._publisher.is_suspect(primary):
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
            pace = self._publisher.pace
            fresh = pace.episode_started is None
            known = any(prober.host == primary for prober in self._loop.probers)
            self._publisher.suspect(primary, known, reason)
            if fresh:  # an episode without a burst: the DCS's confirmation is awaited
                pace.episode_started = now - pace.burst_window
        if hold > 0:
            self._loop.reschedule()
        else:
            self._loop.wake()

    def leader_ready(self, host: str) -> None:
        """The leader's member key says primary + running: publish it, no connection."""
        publisher = self._publisher
        if publisher.is_suspect(host) or not self.answers:
            return  # the application or SQL doubts it: SQL decides
        former = self._view.primary
        snapshot = dcs_named(self._view, host, time.time(), self._ours)
        if snapshot is None:
            return  # not a host SQL has seen as one of ours, or already the primary
        self._hold_until = 0.0
        self._focus = None
        for doubted in {former, self._doubted} - {None, host}:
            assert doubted is not None
            publisher.clear_suspect(doubted)  # replaced, not failing: no fast rounds for it
        self._doubted = None
        log.warning(
            "the DCS says %s was promoted (leader, primary, running): following it now,"
            " SQL confirms it at the next round", host,
        )  # fmt: skip
        self._named_at = time.monotonic()
        publisher.publish(snapshot, self._named_at, frozenset())
        self._loop.reschedule()  # back to the calm pace: no round now

    def focus(self) -> frozenset[str] | None:
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
            (leader is not None and self._view.primary == leader)
            or not self.answers
            or time.monotonic() > self._focus_until
        ):
            self._focus = None
            return None
        return hosts

    def health(self, answers: bool, reason: str | None) -> None:
        """Whether the store answers: the pace follows, and the view says why not."""
        self.answers = answers
        source = self.follower.watch.describe()
        self._publisher.remark(source, None if answers else f"does not answer: {reason}")
        self.paced(answers)
        if not answers:
            # The whole fleet lost the store at one instant: each process
            # probes at its own moment within lost_interval, not all at once.
            lost = self.settings.lost_interval * random.uniform(0.0, 1.0)
            self._lost_round_at = time.monotonic() + lost
        self._loop.reschedule()
