"""The view: what a cluster publishes, and the roles read from it.

The part of the flow after probing (``probes -> snapshot -> view -> roles``):
this module holds :class:`ClusterView` and :class:`ViewSource`; beside it,
``_publisher`` (one frozen view per change), ``_announce`` (listeners of
role changes), ``_episode`` (a primary lost and found, traced), and the role
resolvers that read only a :class:`ViewSource`: :mod:`.roles`
(``cluster.master``, ``cluster.replica``), :mod:`.picker` (a replica
strategy goes there), :mod:`.caught_up` (read-your-writes on replicas).

A :class:`ClusterView` is frozen. The cluster replaces it as a whole, in one
assignment, at every change: a new snapshot, a failure report, a stop. A
reader that took a view therefore sees one moment, never the snapshot of one
round with the suspects of another.

:class:`ViewSource` is all that ``cluster.master`` and ``cluster.replica``
(:mod:`topology.view.roles`) need of a cluster: read the view, wait for the next
publication, report a failure, listen. :class:`topology.ClusterResolver` is
one; anything else that publishes views (a test double, a DCS watch) can
drive the same role resolvers.

Concurrency: views are immutable, so any number of tasks may read one
without a lock; waits run on the event loop that runs the cluster.

Example::

    view = cluster.view
    if view.primary is not None and view.fresh_until > time.monotonic():
        host = view.primary  # what master() answers without waiting
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

from topology.probing.snapshot import Role, Snapshot

__all__ = ["ClusterView", "ViewSource"]


@dataclass(frozen=True, slots=True)
class ClusterView:
    """One published moment of a cluster (see the module docstring).

    ``snapshot``: the latest snapshot. ``primary``: the host ``master()``
    answers without waiting, the snapshot's primary unless a failure was
    reported on it since; None when there is none. ``fresh_until``: the
    :func:`time.monotonic` time after which the snapshot is too old for the
    fast path (0 while the cluster is stopped). ``suspects``: hosts reported
    failing and not seen answering since. ``remarks``: ``(source, words)``
    pairs that explain the view besides its hosts, e.g. a DCS that does not
    answer; errors such as :class:`topology.NoPrimaryError` include them.
    """

    snapshot: Snapshot
    primary: str | None = None
    fresh_until: float = 0.0
    suspects: frozenset[str] = frozenset()
    remarks: tuple[tuple[str, str], ...] = ()

    def stopped(self) -> ClusterView:
        """This view with no fast path: what readers see once the loop has stopped."""
        return replace(self, primary=None, fresh_until=0.0)


class ViewSource(Protocol):
    """What the role resolvers depend on (see the module docstring).

    Deadlines are :func:`time.monotonic` times. Waits never touch the
    network themselves and return at the deadline at the latest; they may be
    cancelled at any time.
    """

    wait_timeout: float
    """How long a resolver call waits for a usable view, in seconds."""

    @property
    def view(self) -> ClusterView:
        """The view last published; never waits."""
        ...

    async def ensure_started(self, deadline: float) -> None:
        """Start publishing on this event loop if not yet, and wait for a first view."""

    async def next_view(self, deadline: float) -> ClusterView:
        """Wait for the next publication (restarting a stopped source); returns the view."""
        ...

    def report_failure(self, host: str, exc: BaseException | None = None) -> None:
        """``host`` failed: take it off the fast path and look again (sync, never raises)."""

    def listen(self, role: Role, callback: Callable[[str | None], None]) -> Callable[[], None]:
        """Call ``callback(host)`` when the host for ``role`` changes; returns unsubscribe."""
        ...
