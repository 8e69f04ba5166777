"""The cluster's side of a DCS: what a pushed leader, a member list and the store's health change.

:class:`DcsAware` sits between :class:`topology._publisher.Publisher` and
:class:`topology.ClusterResolver`. It turns a :class:`topology.dcs.DcsWatch`
into a :class:`topology._dcs_follow.DcsFollower` whose three callbacks land
here:

* a member list: the hosts the probe loop probes from its next round on;
  whatever was held for a host that left goes with it (its suspicion, its
  probe and read-your-writes connections, a focus on it);
* a leader the store names that is not the primary: the primary is put in
  doubt (a failure report with a constant reason) so fast rounds start at
  once, probing only the named leader and the primary in doubt until the
  leader is the primary (at most ``_FOCUS_LIMIT`` seconds); the next probe
  of the primary clears the doubt if it still accepts writes, so SQL wins
  over the store;
* the store's health: while it answers, rounds every ``dcs_interval`` seconds
  and no probe connection kept between calm rounds; when it stops, rounds
  every ``interval`` on kept connections, at once.

Concurrency: everything runs on the cluster's event loop; nothing waits.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence

from topology._dcs_follow import DcsFollower
from topology._probe_loop import ProbeLoop
from topology._publisher import Publisher
from topology.caught_up import CaughtUpFinder
from topology.dcs import AddressMap, DcsWatch, translator
from topology.errors import ConfigurationError
from topology.hosts import HostAddress, parse_host
from topology.prober import HostProber
from topology.trace import Tracer

__all__ = ["DcsAware"]

log = logging.getLogger("topology")
# How long hurried rounds may probe only the leader a DCS named: a promotion
# takes well under this, and a DCS that named a host that never takes over
# must not keep the other hosts unprobed.
_FOCUS_LIMIT = 3.0


class DcsAware(Publisher):
    """The DCS behaviour of a cluster (see the module docstring); ClusterResolver is one."""

    hosts: tuple[HostAddress, ...]
    interval: float
    dcs_interval: float
    _names: tuple[str, ...]
    _source: ProbeLoop
    _caught_up: CaughtUpFinder
    _tracer: Tracer | None
    _dcs: DcsFollower | None
    _dcs_answers: bool
    _focus: tuple[str | None, frozenset[str]] | None = None
    _focus_until: float = 0.0

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
        )

    def _keeps_connections(self) -> bool:
        """Probe connections stay open unless the DCS answers and all is calm."""
        return not self._dcs_answers or self._wants_news()

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
            return
        # Until the named leader is the primary, hurried rounds probe it and
        # the primary in doubt only (see _focus_hosts); with no leader named,
        # the primary in doubt only, until the DCS names one.
        focus = frozenset(h for h in (host, primary) if h is not None)
        self._focus = (host, focus) if focus else None
        self._focus_until = time.monotonic() + _FOCUS_LIMIT
        if primary is not None and not self._is_suspect(primary):
            # A hint, not a verdict: the next probe of the primary clears it if
            # the primary still accepts writes (SQL wins over the DCS).
            # A constant reason: it becomes a metric attribute (error.type).
            reason = "the DCS names another leader" if host else "the DCS names no leader"
            log.warning("%s (%s), not %s: probing now", reason, host or "none", primary)
            self._failure(primary, None, reason)
        elif self.running:
            self._source.wake()

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
        self.pace.interval = self.dcs_interval if answers else self.interval
        if not answers and self.running:
            self._source.wake()  # it may be sleeping a dcs_interval: go back to SQL now
