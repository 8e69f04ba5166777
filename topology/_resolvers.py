"""The resolver objects behind ``cluster.master`` and ``cluster.replica``.

Both are awaitable callables returning a host string. Their fast path
reads the cluster's published state (a few attribute reads, no lock, no
allocation besides the coroutine) while the snapshot is fresh; otherwise
they fall back to a bounded wait (``wait_timeout``): :func:`wait_primary`
and :func:`wait_replica` start the cluster if needed and wait for new
snapshots, never touching the network themselves.

Each also offers ``report_failure(host, exc)`` (delegating to the cluster)
and ``add_listener(callback)``: ``callback(host)`` runs synchronously on the
event loop whenever the host this resolver would return changes (None
when there is none); it must not block, and its exceptions are logged and
swallowed. For the replica resolver that host is the replica it favours
(the first eligible one for its strategy, or the fallback primary): the
callback runs when the set of eligible replicas changes its head.
"""

from __future__ import annotations

from collections.abc import Callable
from time import monotonic
from typing import TYPE_CHECKING

from topology._caught_up import parse_lsn
from topology.errors import NoPrimaryError, NoReplicaError, ProbeError
from topology.snapshot import Role

if TYPE_CHECKING:
    from topology.resolver import ClusterResolver

__all__ = ["MasterResolver", "ReplicaResolver", "wait_primary", "wait_replica"]


class MasterResolver:
    """``await cluster.master()`` -> the primary's ``host:port``; may raise NoPrimaryError."""

    __slots__ = ("_cluster",)
    # Only the host last returned is valid: a session layer should retire
    # and cut connections to any previous answer (see ctxdb's resolver protocol).
    exclusive = True

    def __init__(self, cluster: ClusterResolver) -> None:
        self._cluster = cluster

    async def __call__(self) -> str:
        cluster = self._cluster
        host = cluster._primary_fast
        if host is not None and cluster._fresh_until > monotonic():
            return host
        return await wait_primary(cluster)

    @property
    def cluster(self) -> ClusterResolver:
        return self._cluster

    @property
    def system_identifier(self) -> int | None:
        """The cluster's identifier: see :attr:`ClusterResolver.system_identifier`."""
        return self._cluster.system_identifier

    def report_failure(self, host: str, exc: BaseException | None = None) -> None:
        """See :meth:`ClusterResolver.report_failure` (sync, never raises)."""
        self._cluster.report_failure(host, exc)

    def add_listener(self, callback: Callable[[str | None], None]) -> Callable[[], None]:
        """Call ``callback(new_primary_or_None)`` on every change; returns unsubscribe."""
        return self._cluster._master_listeners.add(callback)

    def candidates(self) -> tuple[str, ...]:
        """Hosts that may be promoted next: the replicas of the latest snapshot, unsuspected."""
        cluster = self._cluster
        return tuple(h for h in cluster._snapshot.replicas if h not in cluster._suspect_set)

    def __repr__(self) -> str:
        return f"<master resolver of {self._cluster!r}>"


class ReplicaResolver:
    """``await cluster.replica()`` -> a replica's ``host:port`` picked by the strategy.

    Falls back to the primary when no replica qualifies (if configured);
    raises NoReplicaError at once when nothing qualifies although hosts
    are up, and after ``wait_timeout`` when no host is usable at all.
    """

    __slots__ = ("_cluster",)
    # Answers rotate between replicas: a session layer keeps one engine per host.
    exclusive = False

    def __init__(self, cluster: ClusterResolver) -> None:
        self._cluster = cluster

    async def __call__(self) -> str:
        cluster = self._cluster
        if cluster._fresh_until > monotonic():
            try:
                return cluster.picker.pick(cluster._snapshot, cluster._suspect_set)
            except NoReplicaError:
                pass
        return await wait_replica(cluster)

    @property
    def cluster(self) -> ClusterResolver:
        return self._cluster

    @property
    def system_identifier(self) -> int | None:
        """The cluster's identifier: see :attr:`ClusterResolver.system_identifier`."""
        return self._cluster.system_identifier

    def report_failure(self, host: str, exc: BaseException | None = None) -> None:
        """See :meth:`ClusterResolver.report_failure` (sync, never raises)."""
        self._cluster.report_failure(host, exc)

    async def at_least(
        self, lsn: str | int, max_wait: float = 0.05, system_identifier: int | None = None
    ) -> str:
        """A replica that has replayed ``lsn``, else the primary; see ``topology._caught_up``.

        Waits at most ``max_wait`` seconds for a replica to catch up (plus,
        when it falls back, the primary's own resolution). A position of
        another cluster (``system_identifier`` given and not this cluster's,
        e.g. written before the cluster was re-initialised) says nothing
        about this cluster's WAL: it is ignored, and any replica serves.
        """
        cluster = self._cluster
        known = cluster.system_identifier
        if system_identifier is not None and known is not None and system_identifier != known:
            cluster._caught_up.stats.other_cluster += 1
            return await self()
        target = parse_lsn(lsn)
        deadline = monotonic() + max_wait
        finder = cluster._caught_up
        candidates = cluster.picker.eligible(cluster._snapshot, cluster._suspect_set)
        host = finder.from_snapshot(cluster._snapshot, candidates, target)
        if host is None:
            host = await finder.ask(candidates, target, deadline)
        if host is not None:
            return host
        finder.stats.to_primary += 1
        return await cluster.master()

    def add_listener(self, callback: Callable[[str | None], None]) -> Callable[[], None]:
        """Call ``callback(favoured_host_or_None)`` on every change; returns unsubscribe."""
        return self._cluster._replica_listeners.add(callback)

    def __repr__(self) -> str:
        return f"<replica resolver of {self._cluster!r}>"


# --- the slow paths: bounded waits for a usable snapshot ---------------------------
async def wait_primary(cluster: ClusterResolver) -> str:
    """Wait up to ``wait_timeout`` for a fresh, unsuspected primary; else NoPrimaryError."""
    deadline = monotonic() + cluster.wait_timeout
    await cluster._ensure_started(deadline)
    while True:
        host = cluster._primary_fast
        if host is not None and cluster._fresh_until > monotonic():
            return host
        remaining = deadline - monotonic()
        if remaining <= 0:
            raise no_primary(cluster)
        if not cluster.running:
            await cluster._ensure_started(deadline)
        await cluster._next_publication(remaining)


async def wait_replica(cluster: ClusterResolver) -> str:
    """Pick a replica; wait (up to ``wait_timeout``) only while no host is usable at all."""
    deadline = monotonic() + cluster.wait_timeout
    await cluster._ensure_started(deadline)
    while True:
        snapshot = cluster._snapshot
        if cluster._fresh_until > monotonic():
            try:
                return cluster.picker.pick(snapshot, cluster._suspect_set)
            except NoReplicaError:
                usable = snapshot.replicas or (
                    snapshot.primary is not None and snapshot.primary not in cluster._suspect_set
                )
                if usable or monotonic() >= deadline:
                    raise
        elif monotonic() >= deadline:
            raise NoReplicaError("no fresh snapshot", snapshot.causes())
        if not cluster.running:
            await cluster._ensure_started(deadline)
        await cluster._next_publication(deadline - monotonic())


def no_primary(cluster: ClusterResolver) -> NoPrimaryError:
    """The error for "no primary", with every host's reason from the latest snapshot."""
    snapshot = cluster._snapshot
    causes: dict[str, str | BaseException] = {}
    for state in snapshot.hosts:
        if state.role is Role.DOWN and isinstance(state.error, ProbeError):
            causes[state.host] = state.error
        elif state.role is Role.PRIMARY and state.host in cluster._suspect_set:
            causes[state.host] = "primary, reported failing and not confirmed since"
        else:
            causes[state.host] = snapshot.describe(state)
    return NoPrimaryError(
        f"no primary among {len(causes)} hosts after {cluster.wait_timeout:g} s", causes
    )
