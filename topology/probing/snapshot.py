"""Immutable cluster snapshots: each host's role, lag and timeline at one moment.

:func:`build_snapshot` is pure: it turns one round of probe results (and,
for hosts not answered yet, their previous state) into a :class:`Snapshot`.

Roles: ``primary`` (the one host writes should go to), ``replica`` (in
recovery), ``stale_primary`` (claims to be primary but lost: see below),
``foreign`` (answers, but belongs to another cluster: see below), ``down``
(the probe failed) and ``unknown`` (not probed yet).

Identity: ``system_identifier`` is the cluster's identifier (see
:mod:`topology.probing._identity` for how it is chosen: pinned, else learned from
the hosts and kept). A host reporting another identifier is ``foreign``:
never a primary or a replica, whatever it claims, so two primaries of two
clusters are no split brain. When the whole cluster was re-initialised
(every host that answers reports one new identifier), the snapshot adopts
it and the highest-timeline rule below starts over from the new primary.

Split brain: when several hosts claim to be primary, the highest timeline
wins and the others become stale primaries. The highest timeline ever seen
on a primary is remembered from snapshot to snapshot, so a host on a lower
timeline is never chosen as primary again, even once it is the only
claimant (for example an old primary thawed after its replica was promoted
and then lost). Claimants on the same timeline are a real split brain that
timelines cannot settle: the previous primary keeps the role if it is one
of them, otherwise the one with the highest WAL position, then the first
configured.

Lag: ``lag_bytes`` is the primary's current WAL position minus the
replica's replayed one (None while no primary is known); ``lag_seconds`` is
0 when the replica has replayed the primary's position, otherwise how long
ago the primary was first seen past the replica's position (see
:mod:`topology.probing.lag`: WAL without a commit on an idle primary does not make
a caught-up replica look minutes behind), bounded by the replica's clock
minus the commit time of the last replayed transaction; without a primary,
0 when the replica replayed all it received, else that commit-time bound
(None when unknown).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from topology.errors import ProbeError
from topology.probing._identity import cluster_identity
from topology.probing.lag import Marks, advance, seconds_behind
from topology.probing.result import ProbeResult

__all__ = ["HostState", "Role", "RoleChange", "Snapshot", "build_snapshot", "role_changes"]


class Role(str, enum.Enum):
    PRIMARY = "primary"
    REPLICA = "replica"
    STALE_PRIMARY = "stale_primary"
    FOREIGN = "foreign"
    DOWN = "down"
    UNKNOWN = "unknown"

    @property
    def words(self) -> str:
        return self.value.replace("_", " ")


@dataclass(frozen=True, slots=True)
class HostState:
    """One host in a snapshot. Times are seconds; ``checked_at`` is wall-clock.

    ``system_identifier``: the cluster identity the host reported (None when
    unknown: not probed, down, or not allowed to read it).
    """

    host: str
    role: Role = Role.UNKNOWN
    latency: float | None = None
    lsn: int | None = None
    lag_bytes: int | None = None
    lag_seconds: float | None = None
    timeline: int | None = None
    error: ProbeError | None = None
    checked_at: float | None = None
    system_identifier: int | None = None

    @property
    def up(self) -> bool:
        return self.role in (Role.PRIMARY, Role.REPLICA, Role.STALE_PRIMARY)

    def describe(self, max_timeline: int = 0, cluster_identifier: int | None = None) -> str:
        """Why this host is (not) the primary, in words, e.g. for NoPrimaryError."""
        if self.role is Role.FOREIGN:
            return (
                f"belongs to another cluster: system identifier {self.system_identifier},"
                f" the cluster's is {cluster_identifier}"
            )
        if self.role is Role.DOWN and self.error is not None:
            return f"down: {self.error.reason.words}"
        if self.role is Role.STALE_PRIMARY:
            return f"stale primary on timeline {self.timeline} (timeline {max_timeline} seen)"
        if self.role is Role.UNKNOWN:
            return "not probed yet"
        return self.role.words


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The cluster as one probe round saw it. Immutable; safe to share between tasks.

    ``primary`` is the primary's host string (None when none is known) and
    ``replicas`` the hosts in role replica, in configured order.
    ``max_timeline`` is the highest timeline ever seen on a primary (of this
    cluster identity). ``system_identifier`` is the cluster's identifier
    (None until a host reported one); ``foreign`` the hosts of another
    cluster. ``complete`` is False for a snapshot published in the middle of a round
    (a new primary found while slow hosts were still being probed).
    """

    hosts: tuple[HostState, ...]
    primary: str | None = None
    replicas: tuple[str, ...] = ()
    max_timeline: int = 0
    round: int = 0
    taken_at: float = 0.0
    complete: bool = True
    system_identifier: int | None = None
    pinned: bool = False  # system_identifier was given, not learned
    # The primary was named by the DCS (its leader key and its own member key
    # said primary + running), not yet confirmed over SQL: the next round
    # that probes it confirms or overrules it (see topology.dcs._confirm).
    dcs_named: bool = False
    # The primary's WAL positions over time, for lag_seconds (see topology.probing.lag).
    marks: Marks = field(default=(), repr=False, compare=False)
    _index: Mapping[str, HostState] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {state.host: state for state in self.hosts})

    @classmethod
    def empty(cls, hosts: Iterable[str]) -> Snapshot:
        """Every host unknown: the state before the first round."""
        return cls(hosts=tuple(HostState(host) for host in hosts))

    def __getitem__(self, host: str) -> HostState:
        return self._index[host]

    def get(self, host: str) -> HostState | None:
        return self._index.get(host)

    @property
    def primary_state(self) -> HostState | None:
        return None if self.primary is None else self._index[self.primary]

    def by_role(self, role: Role) -> tuple[HostState, ...]:
        return tuple(state for state in self.hosts if state.role is role)

    @property
    def foreign(self) -> tuple[str, ...]:
        """Hosts that answer but belong to another cluster (configured order)."""
        return tuple(state.host for state in self.by_role(Role.FOREIGN))

    def describe(self, state: HostState) -> str:
        """``state`` in words, against this snapshot's timeline and identity."""
        return state.describe(self.max_timeline, self.system_identifier)

    def causes(self) -> dict[str, str]:
        """Each host's state in words (used in NoPrimaryError / NoReplicaError)."""
        return {state.host: self.describe(state) for state in self.hosts}


@dataclass(frozen=True, slots=True)
class RoleChange:
    host: str
    old: Role
    new: Role


def role_changes(old: Snapshot | None, new: Snapshot) -> list[RoleChange]:
    """Hosts whose role differs between two snapshots (unknown -> x excluded)."""
    if old is None:
        return []
    changes = []
    for state in new.hosts:
        before = old.get(state.host)
        if before is not None and before.role is not state.role and before.role is not Role.UNKNOWN:
            changes.append(RoleChange(state.host, before.role, state.role))
    return changes


@dataclass(slots=True)
class _Seen:
    """A host as this round saw it: a fresh probe result or a carried-over state."""

    host: str
    claims_primary: bool
    in_recovery: bool
    state: HostState
    result: ProbeResult | None


def _seen(item: ProbeResult | HostState) -> _Seen:
    if isinstance(item, HostState):
        claims = item.role in (Role.PRIMARY, Role.STALE_PRIMARY)
        return _Seen(item.host, claims, item.role is Role.REPLICA, item, None)
    if not item.ok:
        state = HostState(item.host, Role.DOWN, error=item.error, checked_at=item.checked_at)
        return _Seen(item.host, False, False, state, item)
    state = HostState(
        item.host,
        Role.REPLICA if item.in_recovery else Role.PRIMARY,
        latency=item.latency,
        lsn=item.lsn,
        timeline=item.timeline,
        checked_at=item.checked_at,
        system_identifier=item.system_identifier,
    )
    return _Seen(item.host, not item.in_recovery, bool(item.in_recovery), state, item)


def _judge_identity(seen: _Seen, identifier: int | None) -> _Seen:
    """Mark a host of another cluster foreign; re-judge a carried-over foreign one."""
    state = seen.state
    own = state.system_identifier
    if identifier is not None and own is not None and own != identifier and state.up:
        foreign = replace(state, role=Role.FOREIGN, lag_bytes=None, lag_seconds=None)
        return _Seen(seen.host, False, False, foreign, seen.result)
    if state.role is Role.FOREIGN and (identifier is None or own == identifier):
        # Foreign when last probed, one of ours since (a re-initialised
        # cluster): its role is unknown until its next answer.
        return _Seen(seen.host, False, False, HostState(seen.host), None)
    return seen


def _identity_answers(seen: Sequence[_Seen]) -> list[tuple[str, int, bool]]:
    """``(host, identifier, claims_primary)`` of the hosts that answered this round."""
    return [
        (s.host, s.state.system_identifier, s.claims_primary)
        for s in seen
        if s.result is not None and s.state.system_identifier is not None
    ]


def _choose_primary(
    claimants: Sequence[_Seen], max_timeline: int, previous: str | None
) -> _Seen | None:
    top = [seen for seen in claimants if (seen.state.timeline or 0) >= max_timeline]
    if not top:
        return None
    for seen in top:
        if seen.host == previous:
            return seen
    return max(top, key=lambda seen: seen.state.lsn or 0)  # max() keeps the first on ties


def _commit_lag(result: ProbeResult) -> float | None:
    """The replica's clock minus its last replayed commit: an upper bound of its lag."""
    if result.replay_timestamp is None or result.server_time is None:
        return None
    return max((result.server_time - result.replay_timestamp).total_seconds(), 0.0)


def _lag_seconds(result: ProbeResult, lag_bytes: int | None, marks: Marks) -> float | None:
    if lag_bytes is None:  # no primary: replayed all it received?
        caught_up = result.receive_lsn is not None and (result.lsn or 0) >= result.receive_lsn
        return 0.0 if caught_up else _commit_lag(result)
    if lag_bytes == 0:
        return 0.0
    by_commit = _commit_lag(result)
    behind = None if result.lsn is None else seconds_behind(marks, result.lsn, result.checked_at)
    if behind is None or by_commit is None:
        return by_commit if behind is None else behind
    return min(behind, by_commit)


def _reference_lsn(primary: HostState | None, seen: Sequence[_Seen]) -> int | None:
    """What replica lag is measured against: the primary's position, or, when no
    primary answered, the furthest replica's (a lagging replica must not pass
    for a caught-up one just because the primary could not be probed)."""
    if primary is not None:
        return primary.lsn
    replayed = [s.state.lsn for s in seen if s.in_recovery and s.state.lsn is not None]
    return max(replayed, default=None)


def _replica_state(
    seen: _Seen, reference_lsn: int | None, has_primary: bool, marks: Marks
) -> HostState:
    result = seen.result
    if result is None:  # carried over from the previous snapshot: keep its lag
        return seen.state
    lag_bytes = None
    if reference_lsn is not None and result.lsn is not None:
        lag_bytes = max(reference_lsn - result.lsn, 0)
    if has_primary:
        lag_seconds = _lag_seconds(result, lag_bytes, marks)
    else:  # measured against the furthest replica: only "replayed all it received" is 0
        lag_seconds = _lag_seconds(result, None, ())
    return replace(seen.state, lag_bytes=lag_bytes, lag_seconds=lag_seconds)


def _marks(previous: Snapshot | None, winner: _Seen | None, start_over: bool) -> Marks:
    """The primary's WAL marks: restarted with each new primary or cluster identity."""
    if previous is None or start_over:
        kept: Marks = ()
    else:
        kept = previous.marks
    if winner is None:
        return kept
    if previous is None or previous.primary != winner.host:
        kept = ()
    result = winner.result
    if result is None or result.lsn is None:
        return kept
    return advance(kept, result.lsn, result.checked_at)


def _host_states(seen: Sequence[_Seen], winner: _Seen | None, marks: Marks) -> list[HostState]:
    """Each host's state once ``winner`` is the primary: other claimants are stale
    primaries, and each replica's lag is measured (against ``marks`` for its seconds)."""
    primary_state = None if winner is None else winner.state
    if primary_state is not None and primary_state.role is not Role.PRIMARY:
        primary_state = replace(primary_state, role=Role.PRIMARY, lag_bytes=None, lag_seconds=None)
    reference_lsn = _reference_lsn(primary_state, seen)
    states: list[HostState] = []
    for s in seen:
        if s is winner:
            assert primary_state is not None
            states.append(primary_state)
        elif s.claims_primary:
            states.append(replace(s.state, role=Role.STALE_PRIMARY))
        elif s.in_recovery:
            states.append(_replica_state(s, reference_lsn, primary_state is not None, marks))
        else:
            states.append(s.state)
    return states


def build_snapshot(
    items: Sequence[ProbeResult | HostState],
    previous: Snapshot | None = None,
    *,
    round: int = 0,
    taken_at: float = 0.0,
    complete: bool = True,
    system_identifier: int | None = None,
) -> Snapshot:
    """Build the snapshot of one round (pure; see the module docstring for the rules).

    ``items`` holds one entry per configured host, in order: a fresh
    :class:`ProbeResult`, or the host's :class:`HostState` from the previous
    snapshot when it has not answered yet in this round.
    ``system_identifier`` pins the cluster's identity (hosts reporting
    another one are foreign); None learns it (see :mod:`topology.probing._identity`).
    """
    seen = [_seen(item) for item in items]
    known = previous.system_identifier if previous is not None else None
    identity = cluster_identity(
        _identity_answers(seen), known, system_identifier, len(seen), complete
    )
    seen = [_judge_identity(s, identity.identifier) for s in seen]
    # A re-initialised cluster starts its timelines (and WAL positions) over.
    start_over = previous is None or identity.changed
    claimants = [s for s in seen if s.claims_primary]
    kept = None if start_over else previous
    max_timeline = max(
        [0 if kept is None else kept.max_timeline] + [s.state.timeline or 0 for s in claimants]
    )
    winner = _choose_primary(claimants, max_timeline, None if kept is None else kept.primary)
    marks = _marks(previous, winner, start_over)
    states = _host_states(seen, winner, marks)
    return Snapshot(
        hosts=tuple(states),
        primary=winner.host if winner is not None else None,
        replicas=tuple(state.host for state in states if state.role is Role.REPLICA),
        max_timeline=max_timeline,
        round=round,
        taken_at=taken_at,
        complete=complete,
        system_identifier=identity.identifier,
        pinned=system_identifier is not None,
        marks=marks,
    )
