"""The role resolvers behind ``cluster.master`` and ``cluster.replica``.

Both are awaitable callables returning a host string, and they read a
cluster only through :class:`topology.view.ViewSource`: the published
:class:`~topology.view.ClusterView`, the wait for the next one, failure
reports and listeners. Their fast path reads one view (a few attribute
reads, no lock, no allocation besides the coroutine) while its snapshot is
fresh; otherwise they fall back to a bounded wait (the source's
``wait_timeout``): :func:`wait_primary` and :func:`wait_replica` start the
source if needed and wait for new views, never touching the network
themselves.

Each also offers ``report_failure(host, exc)`` (delegating to the source)
and ``add_listener(callback)``: ``callback(host)`` runs synchronously on the
event loop whenever the host this resolver would return changes (None
when there is none); it must not block, and its exceptions are logged and
swallowed. For the replica resolver that host is the replica it favours
(the first eligible one for its strategy, or the fallback primary): the
callback runs when the set of eligible replicas changes its head.

Example::

    host = await cluster.master()           # "10.0.0.1:5432"
    unsubscribe = cluster.master.add_listener(print)
"""

from __future__ import annotations

from collections.abc import Callable
from time import monotonic

from topology.errors import NoPrimaryError, NoReplicaError, ProbeError
from topology.probing.snapshot import Role
from topology.view import ClusterView, ViewSource
from topology.view.caught_up import CaughtUpFinder, parse_lsn
from topology.view.picker import ReplicaPicker

__all__ = [
    "MasterResolver",
    "ReplicaResolver",
    "no_primary",
    "resolve_primary",
    "wait_primary",
    "wait_replica",
]


class _RoleResolver:
    """What both role resolvers share: the source, its identity, failure reports."""

    __slots__ = ("_source",)
    _role = Role.PRIMARY

    def __init__(self, source: ViewSource) -> None:
        self._source = source

    @property
    def cluster(self) -> ViewSource:
        """The cluster this resolver reads (a :class:`topology.ClusterResolver`)."""
        return self._source

    @property
    def system_identifier(self) -> int | None:
        """The cluster's identifier: see :attr:`ClusterResolver.system_identifier`."""
        return self._source.view.snapshot.system_identifier

    def report_failure(self, host: str, exc: BaseException | None = None) -> None:
        """See :meth:`ClusterResolver.report_failure` (sync, never raises)."""
        self._source.report_failure(host, exc)

    def add_listener(self, callback: Callable[[str | None], None]) -> Callable[[], None]:
        """Call ``callback(host_or_None)`` on every change of the answer; returns unsubscribe."""
        return self._source.listen(self._role, callback)


class MasterResolver(_RoleResolver):
    """``await cluster.master()`` -> the primary's ``host:port``; may raise NoPrimaryError."""

    __slots__ = ()
    # Only the host last returned is valid: a session layer should retire
    # and cut connections to any previous answer (see ctxdb's resolver protocol).
    exclusive = True

    async def __call__(self) -> str:
        view = self._source.view
        host = view.primary
        if host is not None and view.fresh_until > monotonic():
            return host
        return await wait_primary(self._source)

    def candidates(self) -> tuple[str, ...]:
        """Hosts that may be promoted next: the replicas of the latest snapshot, unsuspected."""
        view = self._source.view
        return tuple(h for h in view.snapshot.replicas if h not in view.suspects)

    def __repr__(self) -> str:
        return f"<master resolver of {self._source!r}>"


class ReplicaResolver(_RoleResolver):
    """``await cluster.replica()`` -> a replica's ``host:port`` picked by the strategy.

    Falls back to the primary when no replica qualifies (if configured);
    raises NoReplicaError at once when nothing qualifies although hosts
    are up, and after ``wait_timeout`` when no host is usable at all.
    """

    __slots__ = ("_finder", "_picker")
    _role = Role.REPLICA
    # Answers rotate between replicas: a session layer keeps one engine per host.
    exclusive = False

    def __init__(self, source: ViewSource, picker: ReplicaPicker, finder: CaughtUpFinder) -> None:
        super().__init__(source)
        self._picker = picker
        self._finder = finder

    async def __call__(self) -> str:
        view = self._source.view
        if view.fresh_until > monotonic():
            try:
                return self._picker.pick(view.snapshot, view.suspects)
            except NoReplicaError:
                pass
        return await wait_replica(self._source, self._picker)

    async def at_least(
        self, lsn: str | int, max_wait: float = 0.05, system_identifier: int | None = None
    ) -> str:
        """A replica that has replayed ``lsn``, else the primary; see ``topology.view.caught_up``.

        Waits at most ``max_wait`` seconds for a replica to catch up (plus,
        when it falls back, the primary's own resolution). A position of
        another cluster (``system_identifier`` given and not this cluster's,
        e.g. written before the cluster was re-initialised) says nothing
        about this cluster's WAL: it is ignored, and any replica serves.
        """
        finder = self._finder
        started = monotonic()
        known = self.system_identifier
        if system_identifier is not None and known is not None and system_identifier != known:
            return finder.served("other_cluster", await self(), started)
        target = parse_lsn(lsn)
        view = self._source.view
        candidates = self._picker.eligible(view.snapshot, view.suspects)
        host = finder.from_snapshot(view.snapshot, candidates, target)
        if host is not None:
            return finder.served("snapshot", host, started)
        host = await finder.ask(candidates, target, started + max_wait)
        if host is not None:
            return finder.served("waited", host, started)
        return finder.served("primary", await resolve_primary(self._source), started)

    def __repr__(self) -> str:
        return f"<replica resolver of {self._source!r}>"


# --- the slow paths: bounded waits for a usable view ---------------------------
async def resolve_primary(source: ViewSource) -> str:
    """What ``master()`` answers: the fresh primary at once, else :func:`wait_primary`."""
    view = source.view
    if view.primary is not None and view.fresh_until > monotonic():
        return view.primary
    return await wait_primary(source)


async def wait_primary(source: ViewSource) -> str:
    """Wait up to ``wait_timeout`` for a fresh, unsuspected primary; else NoPrimaryError."""
    deadline = monotonic() + source.wait_timeout
    await source.ensure_started(deadline)
    while True:
        view = source.view
        if view.primary is not None and view.fresh_until > monotonic():
            return view.primary
        if deadline - monotonic() <= 0:
            raise no_primary(view, source.wait_timeout)
        await source.next_view(deadline)


async def wait_replica(source: ViewSource, picker: ReplicaPicker) -> str:
    """Pick a replica; wait (up to ``wait_timeout``) only while no host is usable at all."""
    deadline = monotonic() + source.wait_timeout
    await source.ensure_started(deadline)
    while True:
        view = source.view
        snapshot = view.snapshot
        if view.fresh_until > monotonic():
            try:
                return picker.pick(snapshot, view.suspects)
            except NoReplicaError:
                usable = snapshot.replicas or (
                    snapshot.primary is not None and snapshot.primary not in view.suspects
                )
                if usable or monotonic() >= deadline:
                    raise
        elif monotonic() >= deadline:
            raise NoReplicaError("no fresh snapshot", snapshot.causes())
        await source.next_view(deadline)


def no_primary(view: ClusterView, waited: float) -> NoPrimaryError:
    """The error for "no primary after ``waited`` s", with every host's reason from ``view``."""
    snapshot = view.snapshot
    causes: dict[str, str | BaseException] = {}
    for state in snapshot.hosts:
        if state.role is Role.DOWN and isinstance(state.error, ProbeError):
            causes[state.host] = state.error
        elif state.role is Role.PRIMARY and state.host in view.suspects:
            causes[state.host] = "primary, reported failing and not confirmed since"
        else:
            causes[state.host] = snapshot.describe(state)
    hosts = len(causes)
    causes.update(view.remarks)
    return NoPrimaryError(f"no primary among {hosts} hosts after {waited:g} s", causes)
