"""One engine of a DBConnect, with its host, sessionmaker and checkout count."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

logger = logging.getLogger("ctxdb")


class EngineSlot:
    """An engine built for one host, current or retired.

    The pool events count checked-out connections. Once the slot is retired,
    a connection checked back in is invalidated (SQLAlchemy closes it, with
    a bounded graceful close then a terminate) instead of going back to the
    pool, so a retired engine never keeps an idle connection to its host.
    """

    __slots__ = ("checked_out", "disposed", "engine", "host", "retired", "session_maker")

    def __init__(
        self, host: str, engine: AsyncEngine, session_maker: async_sessionmaker[AsyncSession]
    ) -> None:
        self.host = host
        self.engine = engine
        self.session_maker = session_maker
        self.checked_out = 0
        self.retired = False
        self.disposed = False
        event.listen(engine.sync_engine, "checkout", self._on_checkout)
        event.listen(engine.sync_engine, "checkin", self._on_checkin)

    def __repr__(self) -> str:
        state = "retired" if self.retired else "current"
        return f"<EngineSlot {self.host} {state} checked_out={self.checked_out}>"

    def _on_checkout(self, dbapi_connection: Any, record: ConnectionPoolEntry, proxy: Any) -> None:
        self.checked_out += 1

    def _on_checkin(self, dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        self.checked_out -= 1
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
        except asyncio.TimeoutError:
            logger.warning(
                "disposing of the engine for %s timed out after %.1fs", self.host, timeout
            )
        except Exception:
            logger.warning("disposing of the engine for %s failed", self.host, exc_info=True)
        finally:
            self.disposed = True
