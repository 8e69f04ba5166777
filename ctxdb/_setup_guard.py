"""A connection lost while SQLAlchemy sets it up: typed, and reconnected when routed.

After the driver connects, SQLAlchemy runs its dialect's first statements
on the new connection (asyncpg: the JSON codecs; the first connection
also reads the server version) in the pool's ``connect`` hooks. Those run
outside the DBAPI error translation, so a server that goes away in that
moment (stopped, or cut by a failover) surfaces as a raw driver error such
as asyncpg's ``InterfaceError: connection is closed``, which no
``handle_error`` hook sees and no application expects.

Nothing of the caller's was sent then. So :func:`guard_connection_setup`
wraps the pool's ``connect()`` (every checkout goes through it, both a new
connection and the reconnect of an invalidated slot):

* a routed engine (``retry_within`` > 0) checks out again until that many
  seconds have passed; its router sends the new connection to the host
  named now, and waits for the resolver if that host refuses;
* otherwise, or when the time is up, the caller gets
  :class:`~ctxdb.errors.RetryableConnectionError` (psycopg's setup errors
  already arrive typed so, through the failover hooks; asyncpg's do not).
  A router that found no reachable host within its own wait raises after
  this deadline too, so its error passes unchanged.

Any other error (a wrong password, the pool's own timeout, errors already
typed) passes unchanged. Runs in SQLAlchemy's greenlet, like the pool.

Example::

    guard_connection_setup(engine, lambda: "db1:5432", retry_within=5.0)  # seconds
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import await_only

from ._classify import lost_connecting
from .errors import ConnectionLostError, RetryableConnectionError
from .failover import describe, trace_failure
from .trace import ConnectRetried, Tracer

__all__ = ["guard_connection_setup"]

logger = logging.getLogger("ctxdb")

# Between checkouts after a lost setup: the router's own connect waits on the
# resolver, so this only keeps a host that keeps closing from spinning the loop.
_PAUSE = 0.005


def lost_during_setup(exc: BaseException) -> bool:
    """Whether ``exc``, raised by a checkout (not yet typed), means the host went away.

    Judged as every error is (:mod:`ctxdb._classify`): a SQLSTATE alone
    when there is one, so an error of a user's connect hook (a unique
    violation, say) passes unchanged whatever its DETAIL says.
    """
    if isinstance(exc, sa_exc.TimeoutError):  # the pool's own limit: not the host
        return False
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    return lost_connecting(exc)


def guard_connection_setup(
    engine: AsyncEngine,
    host: Callable[[], str],
    retry_within: float,
    tracer: Tracer | None = None,
) -> None:
    """Wrap ``engine``'s pool so a connection lost during setup is retried or typed.

    ``host()`` names the host new connections go to, for the error;
    ``retry_within`` (seconds, 0 for none) bounds the retries of one checkout.
    ``tracer`` gets ``ConnectRetried`` per retry and ``RetrySafeFailure``
    for the error this guard raises.
    """
    pool = engine.sync_engine.pool
    checkout = pool.connect

    def connect() -> Any:
        deadline = time.monotonic() + retry_within
        while True:
            try:
                return checkout()
            except Exception as exc:
                # Already typed by the failover hooks (psycopg's setup errors
                # pass through them), or raw (asyncpg's do not).
                typed = isinstance(exc, ConnectionLostError)
                if not typed and not lost_during_setup(exc):
                    raise
                if time.monotonic() < deadline:
                    logger.debug("a connection was lost during setup (%s): again", describe(exc))
                    if tracer is not None:
                        tracer(ConnectRetried(host(), "lost during setup"))
                    await_only(asyncio.sleep(_PAUSE))
                    continue
                if typed:
                    raise
                where = host()
                lost = RetryableConnectionError(
                    f"the connection to {where} was lost while it was being set up "
                    f"({describe(exc)}): nothing was sent; it is safe to retry",
                    host=where,
                    orig=exc,
                )
                trace_failure(tracer, lost, "lost during setup")
                raise lost from exc

    pool.connect = connect  # type: ignore[method-assign]
