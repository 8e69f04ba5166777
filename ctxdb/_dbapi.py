"""DBAPI connections outside any pool: is one closed, give one up, close one, say why.

The small tools ``HostRouter`` (``ctxdb._routing``) uses on connections it
holds itself (spares, connects that lost a race) and on pooled ones it
inspects at checkout. Nothing here waits on the network: a close is a
terminate (no round trip), a check is a poll without a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
from typing import Any

from .errors import RetryableConnectionError
from .failover import describe, terminate_driver_connection

__all__ = ["abandon", "driver_of", "known_closed", "terminate_dbapi", "unreachable_error"]


def known_closed(driver_connection: Any) -> bool:
    """Whether an idle connection is known to be closed, without a round trip.

    asyncpg reads its socket all the time and knows at once. psycopg reads
    only when asked, so its socket is polled (no wait): an idle connection
    has nothing to read unless the server closed it or said why it will.
    """
    is_closed = getattr(driver_connection, "is_closed", None)  # asyncpg
    if callable(is_closed):
        return bool(is_closed())
    if getattr(driver_connection, "closed", False) is True:  # psycopg
        return True
    pgconn = getattr(driver_connection, "pgconn", None)
    if pgconn is None:
        return False
    try:
        fd = pgconn.socket  # raises once libpq has dropped the socket
        if hasattr(select, "poll"):  # select() fails on descriptors over FD_SETSIZE
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            return bool(poller.poll(0))
        return bool(select.select([fd], [], [], 0)[0])
    except Exception:
        return True


def abandon(attempt: asyncio.Future[Any]) -> None:
    """Give up a connect: cancel it, and terminate whatever it opens or opened."""
    if attempt.done():
        _drop_late_connection(attempt)
    else:
        attempt.cancel()
        attempt.add_done_callback(_drop_late_connection)


def _drop_late_connection(attempt: asyncio.Future[Any]) -> None:
    """A connect nobody waits for any more: close what it opened, consume its error."""
    if attempt.cancelled():
        return
    if attempt.exception() is None:
        terminate_dbapi(attempt.result())


def driver_of(connection: Any) -> Any:
    return getattr(connection, "driver_connection", connection)


def terminate_dbapi(connection: Any) -> None:
    """Close a connection nobody uses (a spare, a late connect) without a round trip.

    psycopg's connection is finished too (its socket was shut down first, so
    nothing waits on the server): only a connection no task reads from may
    lose its file descriptor like this.
    """
    driver = driver_of(connection)
    terminate_driver_connection(driver)
    pgconn = getattr(driver, "pgconn", None)
    if pgconn is not None:
        with contextlib.suppress(Exception):  # already finished
            pgconn.finish()


def unreachable_error(
    host: str, error: BaseException | None, wait: float
) -> RetryableConnectionError:
    why = describe(error) if error is not None else "no answer"
    return RetryableConnectionError(
        f"could not connect to {host} ({why}) and found no other host within {wait:g} s: "
        "nothing was sent; it is safe to retry",
        host=host,
        orig=error,
    )
