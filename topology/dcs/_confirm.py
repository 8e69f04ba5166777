"""A primary named by the DCS, published before SQL confirms it: the pure rule.

When Patroni has promoted a member, its leader key names it and its own
member key says ``role: primary`` (``master`` before Patroni 3) and
``state: running``. :func:`dcs_named` turns the snapshot last published
into one where that host is the primary (``dcs_named=True``), so a fleet
of processes follows the push without opening a connection at the
failover instant; the next SQL probe of the host confirms or overrules it
(SQL wins over the store: a failure report from the application, e.g. a
read-only error, puts the host in doubt and SQL probing takes over).

What the store may do is bounded: only a host that SQL has already seen as
a member of this cluster (a replica or the primary, with this cluster's
identity) can be named, or one down or not probed since that SQL saw as
one earlier (a member restarted after a failover); never a host SQL never
saw as ours, a foreign or a stale one (a stale primary is one on a
timeline below the highest seen). The former
primary's state becomes ``unknown`` (not probed since the store named
another) until its next probe.

Pure; no I/O, no clock but the ``taken_at`` it is given.
"""

from __future__ import annotations

from dataclasses import replace

from topology.probing.snapshot import HostState, Role, Snapshot

__all__ = ["dcs_named"]


def _eligible(state: HostState | None, snapshot: Snapshot, known: frozenset[str]) -> bool:
    """Seen over SQL as a replica (or the primary) with this cluster's identity: now,
    or, for a host down or not probed since (a member restarted), in ``known``."""
    if state is None:
        return False
    if state.role in (Role.DOWN, Role.UNKNOWN):
        return state.host in known
    if state.role not in (Role.REPLICA, Role.PRIMARY):
        return False  # foreign, or a stale primary
    identifier = snapshot.system_identifier
    return identifier is None or state.system_identifier in (None, identifier)


def dcs_named(
    snapshot: Snapshot, host: str, taken_at: float, known: frozenset[str] = frozenset()
) -> Snapshot | None:
    """``snapshot`` with ``host`` as its primary, marked ``dcs_named``; None if not eligible.

    ``known``: the hosts SQL has seen as members of this cluster at some
    point. None also when ``host`` is the primary already (nothing to publish).
    """
    if snapshot.primary == host or not _eligible(snapshot.get(host), snapshot, known):
        return None
    states = []
    for state in snapshot.hosts:
        if state.host == host:
            states.append(
                replace(state, role=Role.PRIMARY, error=None, lag_bytes=None, lag_seconds=None)
            )
        elif state.host == snapshot.primary or state.role is Role.STALE_PRIMARY:
            # Not probed since the store named another leader: unknown, not
            # a claimant (a carried-over claimant would compete with the new one).
            states.append(HostState(state.host, system_identifier=state.system_identifier))
        else:
            states.append(state)
    replicas = tuple(s.host for s in states if s.role is Role.REPLICA)
    return replace(
        snapshot,
        hosts=tuple(states),
        primary=host,
        replicas=replicas,
        taken_at=taken_at,
        complete=False,
        dcs_named=True,
        marks=(),
    )
