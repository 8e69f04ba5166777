"""A routed DBConnect as its HostRouter sees it: one :class:`~ctxdb._routing.RouteOwner`.

A ``HostRouter`` (``ctxdb._routing``) needs three things from the
``DBConnect`` that owns it: an engine for a host (only for its creator),
the resolver's answer now, and whom to tell that a host failed.
:class:`ConnectRouteOwner` gives it those, and nothing else of the DBConnect.
It keeps no state of its own: each call reads the DBConnect's engine
creator, resolver and capabilities as they are then.

Concurrency and timeouts: event loop thread only. ``engine_for`` and
``report_failure`` never await (both run user code: the engine creator,
the resolver's ``report_failure``). ``current_host`` awaits the resolver with no
deadline of its own: the router bounds it by ``Failover.wait``; the move
that follows never waits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncEngine

if TYPE_CHECKING:  # connect imports this module
    from .connect import DBConnect

__all__ = ["ConnectRouteOwner"]


class ConnectRouteOwner:
    """The :class:`~ctxdb._routing.RouteOwner` of ``db``'s routers (module docstring)."""

    __slots__ = ("_db",)

    def __init__(self, db: DBConnect) -> None:
        self._db = db

    def engine_for(self, host: str) -> AsyncEngine:
        """An engine for ``host`` from the DBConnect's engine creator (no I/O)."""
        return self._db._engine_creator(host)

    async def current_host(self) -> str:
        """The resolver's host now, with the DBConnect moved there (for routed connects)."""
        db = self._db
        assert db._resolver is not None  # only a DBConnect with a resolver builds routers
        host = await db._resolver()
        db._retarget(host)
        return host

    def report_failure(self, host: str, exc: BaseException) -> None:
        """Tell the resolver, if it listens (``ReportsFailures``), that ``host`` failed."""
        report = self._db._can.report_failure
        if report is not None:
            report(host, exc)
