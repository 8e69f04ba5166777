"""One pool that follows the primary: each new connection goes to the host named now.

A ``DBConnect`` that follows an *exclusive* resolver (a primary) keeps one
engine for its whole life. Its pool never holds a session to a stale host:

* every connection is tagged with the host it reached (``record.info``);
* ``move(host)`` changes where new connections go, terminates every
  connection tagged with the old host (idle, checked out, being
  pre-pinged) and wakes connects still in flight to it;
* a checkout of a connection tagged with another host than the current one
  raises ``DisconnectionError``, so SQLAlchemy's pool reconnects that slot,
  to the current host. Sessions made before the move, and those queued
  for the pool, therefore land on the new primary without an error: only
  a request that had already sent something to the old host sees one;
* a connect that fails on the network reports the failure, asks the
  resolver for the next host, and connects there, within ``wait`` seconds;
* ``keep_spares(hosts)`` holds one idle connection to each host that may be
  promoted (not in the pool): a connect to that host takes it, so the
  first session after a promotion pays no connect.

Connections to a host other than the engine's own are made by the creator
of an engine that the owner's ``engine_for(host)`` built for that host (and
that never connects by itself), so per-host settings such as
``connect_args`` apply; the pool, its size and its event listeners stay
those of the one engine. The pool therefore bounds how many connections a
failover opens: at most its size (plus overflow), never a second pool.

Concurrency: everything runs on the engine's event loop; ``move`` never
awaits and never waits for a host. A connect racing a move is cancelled at
once (asyncpg and psycopg drop a half-open connection when cancelled).

Example::

    router = HostRouter(engine, "db1:5432", owner=owner, wait=5.0)  # owner: a RouteOwner
    router.move("db2:5432")  # from a resolver listener: cut db1, reconnect to db2
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import weakref
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.util import await_only, greenlet_spawn

from ._dbapi import abandon, driver_of, known_closed, terminate_dbapi, unreachable_error
from ._host_engines import Blueprints
from ._tasks import Supervisor
from .errors import RetryableConnectionError
from .failover import (
    HOST_TAG,
    TERMINATED,
    connect_failed_on_network,
    describe,
    report_to,
    terminate_driver_connection,
    trace_failure,
)
from .trace import ConnectRetried, SwapFollowed, Tracer

__all__ = ["HOST_TAG", "HostRouter", "RouteOwner"]

logger = logging.getLogger("ctxdb")

# A resolver that keeps naming a host we cannot reach: ask again after this pause.
_SAME_HOST_PAUSE = 0.02


class _Moved(Exception):
    """The target changed while a connect was in flight."""


class RouteOwner(Protocol):
    """What a ``HostRouter`` asks of the ``DBConnect`` it routes for (event loop only).

    ``engine_for(host)``: an engine for ``host``, used only for its creator;
    no I/O. ``current_host()``: the resolver's answer now, the owner moved
    there; the router bounds the wait for it by its own ``wait``.
    ``report_failure(host, exc)``: a connect to ``host`` failed on the
    network; synchronous, never blocks (a raise is logged, not propagated).
    """

    def engine_for(self, host: str) -> AsyncEngine: ...

    async def current_host(self) -> str: ...

    def report_failure(self, host: str, exc: BaseException) -> None: ...


class HostRouter:
    """Routes the new connections of one engine to ``target`` (see the module docstring).

    ``owner`` builds the per-host engines, names the next host and hears of
    failed hosts (:class:`RouteOwner`); ``wait`` bounds, in seconds, how
    long one connect looks for a reachable host. ``tracer`` gets
    ``SwapFollowed``, ``ConnectRetried`` and ``RetrySafeFailure``.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        host: str,
        *,
        owner: RouteOwner,
        wait: float,
        tracer: Tracer | None = None,
        tasks: Supervisor | None = None,
    ) -> None:
        self.engine = engine
        self._tracer = tracer
        self._moved_at: float | None = None  # set only with a tracer: SwapFollowed
        self.home = host
        self.target: str | None = host
        self._owner = owner
        self._wait = wait
        self._tasks = tasks if tasks is not None else Supervisor(tracer)
        # Per-host engines used only for their creator: bounded, pruned (_host_engines).
        self._blueprints = Blueprints(owner.engine_for, self._tasks, timeout=wait)
        self._records: weakref.WeakSet[ConnectionPoolEntry] = weakref.WeakSet()
        # Connected, not yet handed out: SQLAlchemy's connect hooks may still run.
        self._initializing: weakref.WeakSet[ConnectionPoolEntry] = weakref.WeakSet()
        self._moved: asyncio.Future[None] | None = None
        self._spares: dict[str, Any] = {}  # host -> an idle DBAPI connection, not pooled
        self._wanted: frozenset[str] = frozenset()  # the hosts the last keep_spares named
        self._opening: dict[str, asyncio.Task[None]] = {}
        self._closed = False  # closed: no spare is kept any more
        # The pool's creator, not the do_connect event: an engine made with
        # creator= or async_creator= (an IAM token, a cloud connector) never
        # fires do_connect, and its connections would go unrouted.
        pool = engine.sync_engine.pool
        self._home_creator = pool._invoke_creator
        pool._creator = self._connect  # type: ignore[assignment]  # returns a DBAPI connection

    def __repr__(self) -> str:
        return f"<HostRouter target={self.target!r} live={self.live()}>"

    def live(self, host: str | None = None) -> int:
        """Connections open now (to ``host`` only, when given)."""
        return sum(1 for record in self._records if _open_to(record, host))

    # --- moving -----------------------------------------------------------------
    def move(self, host: str | None, reason: str) -> int:
        """Send new connections to ``host`` (None: wait for the resolver); cut the old host.

        Returns how many connections to the old host were terminated. Never
        waits: requests using them fail now, typed by the failover hooks.
        """
        old, self.target = self.target, host
        if old == host:
            return 0
        if self._tracer is not None and host is not None:
            self._moved_at = time.monotonic()
        moved, self._moved = self._moved, None
        if moved is not None and not moved.done():
            moved.set_result(None)
        if old is None:
            return 0
        cut = 0
        for record in list(self._records):
            if _open_to(record, old):
                record.info[TERMINATED] = reason
                if record in self._initializing:
                    # SQLAlchemy is still setting it up (its own connect hooks): a
                    # cut there would surface as a raw driver error; the check at
                    # its checkout reconnects it instead, before anything is sent.
                    continue
                terminate_driver_connection(record.driver_connection)
                cut += 1
        return cut

    def check(self, record: ConnectionPoolEntry) -> None:
        """At checkout: reconnect a connection to another host, or one known to be closed.

        Raising ``DisconnectionError`` makes SQLAlchemy's pool invalidate
        the connection and open a new one in the same slot (through
        its creator, so to the target), before the session sends anything.
        """
        self._initializing.discard(record)
        tag = record.info.get(HOST_TAG)
        if tag != self.target or TERMINATED in record.info:
            raise sa_exc.DisconnectionError(
                f"connection to {tag} is stale (new connections go to {self.target})"
            )
        if known_closed(record.driver_connection):
            # The server closed it while it sat in the pool (asyncpg notices
            # at once): sending a statement on it would only fail.
            raise sa_exc.DisconnectionError(f"connection to {tag} was closed by the server")
        if self._moved_at is not None and self._tracer is not None and tag is not None:
            # The first session served by the new host since the swap.
            self._tracer(SwapFollowed(tag, time.monotonic() - self._moved_at))
            self._moved_at = None

    # --- connecting ---------------------------------------------------------------
    def _connect(self, record: ConnectionPoolEntry) -> Any:
        """The pool's creator: a connection to the target, found within ``wait`` seconds."""
        deadline = time.monotonic() + self._wait
        unreachable: str | None = None
        last_error: BaseException | None = None
        while True:
            host = self.target
            if host is None or host == unreachable:
                host = await_only(self._next_host(unreachable, last_error, deadline))
            connection = self._take_spare(host)
            if connection is None:
                try:
                    connection = await_only(self._open(host, record))
                except _Moved:
                    continue
                except Exception as error:
                    if not connect_failed_on_network(error):
                        raise  # a wrong password, a missing database: not the host's state
                    report_to(self._owner.report_failure, host, error)
                    if time.monotonic() >= deadline:
                        raise self._traced(unreachable_error(host, error, self._wait)) from error
                    if self._tracer is not None:
                        self._tracer(ConnectRetried(host, "connect failed"))
                    unreachable, last_error = host, error
                    continue
            if host != self.target:  # moved as the connect finished
                terminate_dbapi(connection)
                continue
            if record is not None:
                record.info[HOST_TAG] = host
                record.info.pop(TERMINATED, None)
                self._records.add(record)
                self._initializing.add(record)
            return connection

    # --- spares: one idle connection to each host that may be promoted -----------
    def keep_spares(self, hosts: Iterable[str]) -> None:
        """Keep one idle connection open to each of ``hosts`` (never the target).

        Opened in the background, each within ``wait`` seconds; a failure is
        logged at DEBUG and tried again at the next call. Spares to hosts no
        longer listed are terminated. A connect to a host with a spare takes
        the spare instead: a standby's session stays open through its
        promotion, and can write once it is over.
        """
        if self._closed:  # a resolver's late news: nobody would close what opens now
            return
        wanted = {host for host in hosts if host != self.target}
        self._wanted = frozenset(wanted)
        # The target's spare stays until a connect takes it: it was a
        # candidate a moment ago, and its promotion is what just happened.
        for host in [h for h in self._spares if h not in wanted and h != self.target]:
            terminate_dbapi(self._spares.pop(host))
        self._blueprints.keep_only({*wanted, *self._opening, self.target or ""})
        for host in wanted - self._spares.keys() - self._opening.keys():
            # Supervised, run again after a death (ctxdb._tasks): a spare is a lasting need.
            work = functools.partial(self._open_spare_later, host)
            task = self._tasks.spawn("spares", work, f"ctxdb-spare-{host}", restart=True)
            if task is not None:
                self._opening[host] = task
                task.add_done_callback(functools.partial(self._opened, host))

    async def _open_spare_later(self, host: str) -> None:
        await self._open_spare(host)  # looked up per run: a restart runs it anew

    async def _open_spare(self, host: str) -> None:
        try:
            creator = self._creator_for(host)
        except Exception as error:
            logger.debug("no spare connection to %s: %s", host, describe(error))
            return
        # Not asyncio.wait_for: cancelled as its connect completes (close() cancels
        # the spares being opened), it loses the connection, which nobody closes.
        attempt = asyncio.ensure_future(greenlet_spawn(creator, None))
        try:
            await asyncio.wait((attempt,), timeout=self._wait)
        except BaseException:
            abandon(attempt)
            raise
        if not attempt.done():
            abandon(attempt)
            logger.debug("no spare connection to %s within %g s", host, self._wait)
            return
        try:
            connection = attempt.result()
        except Exception as error:
            logger.debug("no spare connection to %s: %s", host, describe(error))
            return
        # No longer wanted while it was opening: nobody would ever close it.
        if host == self.target or host in self._spares or host not in self._wanted:
            terminate_dbapi(connection)
        else:
            self._spares[host] = connection

    def _opened(self, host: str, task: asyncio.Task[None]) -> None:
        self._opening.pop(host, None)

    def _take_spare(self, host: str) -> Any:
        connection = self._spares.pop(host, None)
        if connection is not None and known_closed(driver_of(connection)):
            terminate_dbapi(connection)
            return None
        return connection

    async def _next_host(
        self, unreachable: str | None, error: BaseException | None, deadline: float
    ) -> str:
        """The resolver's answer now; after a short pause when it names ``unreachable`` again."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise self._traced(unreachable_error(unreachable or "the primary", error, self._wait))
        try:
            host = await asyncio.wait_for(self._owner.current_host(), remaining)
        except Exception as exc:
            where = unreachable or "any host"
            nobody = RetryableConnectionError(
                f"could not connect to {where} and no other host was named within "
                f"{self._wait:g} s ({describe(exc)}): nothing was sent; it is safe to retry",
                host=unreachable,
                orig=exc,
            )
            raise self._traced(nobody) from exc
        if host == unreachable:
            await asyncio.sleep(min(_SAME_HOST_PAUSE, max(deadline - time.monotonic(), 0.0)))
        return host

    async def _open(self, host: str, record: ConnectionPoolEntry | None) -> Any:
        """Connect to ``host``; raise ``_Moved`` as soon as the target changes meanwhile."""
        creator = self._home_creator if host == self.home else self._creator_for(host)
        attempt = asyncio.ensure_future(greenlet_spawn(creator, record))
        loop = asyncio.get_running_loop()
        if self._moved is None or self._moved.done():
            self._moved = loop.create_future()
        try:
            await asyncio.wait((attempt, self._moved), return_when=asyncio.FIRST_COMPLETED)
        except BaseException:  # cancelled: the connection, if any, has no owner
            abandon(attempt)
            raise
        if attempt.done():
            return attempt.result()
        abandon(attempt)
        raise _Moved

    def _traced(self, error: RetryableConnectionError) -> RetryableConnectionError:
        trace_failure(self._tracer, error, "no reachable host")
        return error

    def _creator_for(self, host: str) -> Callable[[Any], Any]:
        return self._blueprints.creator(host)

    async def warm(self, count: int, timeout: float) -> None:
        """Open up to ``count`` pooled connections to the target, within ``timeout`` seconds.

        Connections are checked out together, so each opens its own; they go
        back to the pool at once. Failures are logged at DEBUG: a request
        that needs a connection will open it and see the error itself.
        """

        async def one() -> None:
            async with self.engine.connect():
                pass

        tasks = [asyncio.ensure_future(one()) for _ in range(count)]
        done, pending = await asyncio.wait(tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        for task in done:
            error = task.exception()
            if error is not None:
                logger.debug("warming %s failed: %s", self.target, describe(error))

    async def close(self) -> None:
        """Drop the spares and dispose of the engines built for their creators.

        The spares go first and without a round trip, so a cancelled or
        timed-out close (a frozen host elsewhere) never leaves one open; a
        spare still being opened is terminated when its connect ends.
        Waits at most ``wait`` s for those connects, then the blueprints'
        disposal (no connection of theirs: they only lend their creator).
        """
        self._closed = True
        self._wanted = frozenset()  # a spare that opens from now on is terminated
        for connection in self._spares.values():
            terminate_dbapi(connection)
        self._spares.clear()
        opening = list(self._opening.values())
        for task in opening:
            task.cancel()
        if opening:
            await asyncio.wait(opening, timeout=self._wait)
        await self._blueprints.close()


def _open_to(record: ConnectionPoolEntry, host: str | None) -> bool:
    if record.driver_connection is None:
        return False
    return host is None or record.info.get(HOST_TAG) == host
