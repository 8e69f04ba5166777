"""One engine of a DBConnect, with its host, sessionmaker and checkout count."""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

from ._failover import TERMINATED
from .errors import RetryableConnectionError

logger = logging.getLogger("ctxdb")


def terminate_driver_connection(driver_connection: Any) -> None:
    """Close a raw asyncpg or psycopg connection without a word to the server.

    asyncpg's ``terminate()`` drops the transport and fails pending calls.
    psycopg has no such call, so the socket is shut down underneath it: its
    pending read wakes up with end-of-file and raises.
    """
    if driver_connection is None:
        return
    try:
        terminate = getattr(driver_connection, "terminate", None)
        if callable(terminate):
            terminate()
            return
        pgconn = getattr(driver_connection, "pgconn", None)
        if pgconn is not None and pgconn.socket >= 0:
            with socket.fromfd(pgconn.socket, socket.AF_INET, socket.SOCK_STREAM) as dup:
                dup.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed
    except Exception:
        logger.warning("could not terminate a connection", exc_info=True)


class EngineSlot:
    """An engine built for one host, current or retired.

    The pool events count checked-out connections. Once the slot is retired,
    a connection checked back in is invalidated (SQLAlchemy closes it, with
    a bounded graceful close then a terminate) instead of going back to the
    pool, so a retired engine never keeps an idle connection to its host.
    """

    __slots__ = ("active", "disposed", "engine", "host", "refusing", "retired", "session_maker")

    def __init__(
        self, host: str, engine: AsyncEngine, session_maker: async_sessionmaker[AsyncSession]
    ) -> None:
        self.host = host
        self.engine = engine
        self.session_maker = session_maker
        self.active: set[ConnectionPoolEntry] = set()
        self.retired = False
        self.disposed = False
        # Set once the host is no longer valid (cut): no connection is handed out.
        self.refusing: str | None = None
        event.listen(engine.sync_engine, "checkout", self._on_checkout)
        event.listen(engine.sync_engine, "checkin", self._on_checkin)

    def __repr__(self) -> str:
        state = "retired" if self.retired else "current"
        return f"<EngineSlot {self.host} {state} checked_out={self.checked_out}>"

    @property
    def checked_out(self) -> int:
        return len(self.active)

    def _on_checkout(self, dbapi_connection: Any, record: ConnectionPoolEntry, proxy: Any) -> None:
        if self.refusing is not None:
            # A session made before the cut, only now getting its connection
            # (it waited for the pool): it must not reach the old host.
            raise RetryableConnectionError(
                f"connection to {self.host} refused ({self.refusing}): nothing was sent; "
                "it is safe to retry",
                host=self.host,
            )
        self.active.add(record)

    def _on_checkin(self, dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        self.active.discard(record)
        if self.retired and dbapi_connection is not None:
            record.invalidate()

    def retire(self) -> None:
        self.retired = True

    def terminate_active(self, reason: str) -> int:
        """Cut every checked-out connection at once, refuse any later checkout; return how many.

        For a host that is down, frozen or demoted: the requests waiting on
        those connections fail now (with ``reason`` in their error) instead
        of hanging until a TCP timeout. Never waits for the host.
        """
        self.refusing = reason
        records = list(self.active)
        for record in records:
            record.info[TERMINATED] = reason
            terminate_driver_connection(record.driver_connection)
        return len(records)

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
