"""One engine of a DBConnect, with its host, sessionmaker and checkout count."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

from ._routing import HostRouter

logger = logging.getLogger("ctxdb")


class EngineSlot:
    """An engine built for one host, current or retired.

    The pool events count checked-out connections. Once the slot is retired,
    a connection checked back in is invalidated (SQLAlchemy closes it, with
    a bounded graceful close then a terminate) instead of going back to the
    pool, so a retired engine never keeps an idle connection to its host.
    A slot with a ``router`` follows a resolver: its connections go to the
    router's target, and a checkout of one to another host reconnects it.
    """

    __slots__ = (
        "active",
        "disposed",
        "engine",
        "home",
        "retired",
        "router",
        "session_maker",
    )

    def __init__(
        self,
        host: str,
        engine: AsyncEngine,
        session_maker: async_sessionmaker[AsyncSession],
        router: HostRouter | None = None,
    ) -> None:
        self.home = host
        self.router = router
        self.engine = engine
        self.session_maker = session_maker
        self.active: set[ConnectionPoolEntry] = set()
        self.retired = False
        self.disposed = False
        if isinstance(engine, AsyncEngine):  # not a test double standing in for one
            event.listen(engine.sync_engine, "checkout", self._on_checkout)
            event.listen(engine.sync_engine, "checkin", self._on_checkin)

    @property
    def host(self) -> str | None:
        """Where new connections go: the host it was built for, or the router's target."""
        return self.router.target if self.router is not None else self.home

    def __repr__(self) -> str:
        state = "retired" if self.retired else "current"
        return f"<EngineSlot {self.host} {state} checked_out={self.checked_out}>"

    @property
    def checked_out(self) -> int:
        return len(self.active)

    def _on_checkout(self, dbapi_connection: Any, record: ConnectionPoolEntry, proxy: Any) -> None:
        if self.router is not None:
            self.router.check(record)  # a stale host: the pool reconnects this slot
        self.active.add(record)

    def _on_checkin(self, dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        self.active.discard(record)
        if self.retired and dbapi_connection is not None:
            record.invalidate()

    def retire(self) -> None:
        self.retired = True

    async def dispose(self, timeout: float) -> None:
        """Close the idle pooled connections, within ``timeout`` seconds.

        Never raises: a failure or a timeout (a hung host) is logged and the
        remaining connections are left to the checkin hook and to the GC.
        """
        try:
            await asyncio.wait_for(self.engine.dispose(), timeout)
            if self.router is not None:
                await asyncio.wait_for(self.router.close(), timeout)
        except asyncio.TimeoutError:
            logger.warning(
                "disposing of the engine for %s timed out after %.1fs", self.host, timeout
            )
        except Exception:
            logger.warning("disposing of the engine for %s failed", self.host, exc_info=True)
        finally:
            self.disposed = True
