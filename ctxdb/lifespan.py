"""App lifespan: start the resolvers, and close every DBConnect and resolver in bounded time.

Framework-free: a *resolver* here is anything with ``await start()`` and
``await close(timeout)`` (``topology.ClusterResolver`` is one; ctxdb never
imports topology). The framework spellings are thin:

* FastAPI / Starlette / Litestar: ``lifespan=db_lifespan(...)``, a callable
  taking the app and returning an async context manager;
* aiohttp: ``app.cleanup_ctx.append(aiohttp_cleanup_ctx(...))`` in
  :mod:`ctxdb.aiohttp`; Litestar's plugin in :mod:`ctxdb.litestar` too.

Timeouts: startup starts every resolver concurrently and waits at most
``start_timeout`` seconds (a resolver that is not ready by then fails the
startup, and whatever did start is closed again). Shutdown closes every
DBConnect and every resolver concurrently, each given ``close_timeout``,
and gives up waiting ``grace`` seconds after that: it returns within
``close_timeout + grace`` even if a host is frozen. A close that fails or
overruns is logged (``ctxdb`` logger), never raised: the other closes have
run, and a server shutting down has nobody to show the error to. Shutdown
finishes its closes even when the task running it is cancelled.

Example::

    cluster = ClusterResolver(hosts, user="app", password=..., database="app")
    master = DBConnect(resolver=cluster.master, url="postgresql+asyncpg://app@/app")
    app = FastAPI(lifespan=db_lifespan(connects=[master], resolvers=[cluster]))
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol

from .connect import DBConnect

__all__ = [
    "DEFAULT_CLOSE_TIMEOUT",
    "DEFAULT_START_TIMEOUT",
    "Lifecycle",
    "ManagedResolver",
    "db_lifespan",
    "managed",
]

logger = logging.getLogger("ctxdb")

DEFAULT_START_TIMEOUT = 30.0
DEFAULT_CLOSE_TIMEOUT = 5.0
GRACE = 1.0  # on top of close_timeout: what a close may take to notice its own deadline


class ManagedResolver(Protocol):
    """What the lifespan needs of a resolver (``topology.ClusterResolver`` fits)."""

    async def start(self) -> None: ...

    async def close(self, timeout: float = ...) -> None: ...


class Lifecycle:
    """What one app owns: its DBConnects and resolvers, and how long they may take.

    Not thread-safe: start and close it from the app's event loop.
    """

    def __init__(
        self,
        connects: Iterable[DBConnect] = (),
        resolvers: Iterable[ManagedResolver] = (),
        *,
        start_timeout: float = DEFAULT_START_TIMEOUT,
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
        grace: float = GRACE,
    ) -> None:
        self.connects: Sequence[DBConnect] = tuple(connects)
        self.resolvers: Sequence[ManagedResolver] = tuple(resolvers)
        self.start_timeout = start_timeout
        self.close_timeout = close_timeout
        self.grace = grace

    async def start(self) -> None:
        """Start every resolver concurrently, within ``start_timeout``; raise if one fails.

        On failure, timeout or cancellation, the starts still running are
        cancelled and everything is closed (within the close bound) before
        the error is raised.
        """
        if not self.resolvers:
            return
        tasks = [asyncio.ensure_future(resolver.start()) for resolver in self.resolvers]
        try:
            done, pending = await asyncio.wait(tasks, timeout=self.start_timeout)
        except asyncio.CancelledError:
            await self._abandon(tasks)
            raise
        failure: BaseException | None = None
        if pending:
            failure = TimeoutError(
                f"{len(pending)} resolver(s) not started within {self.start_timeout} s"
            )
        for task in done:
            if failure is None and not task.cancelled() and task.exception() is not None:
                failure = task.exception()
        if failure is not None:
            await self._abandon(tasks)
            raise failure

    async def _abandon(self, starts: Sequence[asyncio.Task[None]]) -> None:
        for task in starts:
            task.cancel()
        await asyncio.wait(starts, timeout=self.grace)
        await self.close()

    async def close(self) -> None:
        """Close every DBConnect and resolver concurrently; return within the bound.

        Survives cancellation of the caller: the closes run on, shielded,
        and the cancellation is raised once they ended or the bound passed.
        """
        closes: list[tuple[str, Awaitable[None]]] = [
            (repr(connect), connect.close(self.close_timeout)) for connect in self.connects
        ]
        closes += [
            (type(resolver).__name__, resolver.close(self.close_timeout))
            for resolver in self.resolvers
        ]
        if not closes:
            return
        tasks = {asyncio.ensure_future(close): name for name, close in closes}
        waiting = asyncio.ensure_future(
            asyncio.wait(tasks, timeout=self.close_timeout + self.grace)
        )
        try:
            await asyncio.shield(waiting)
        except asyncio.CancelledError:
            await asyncio.wait((waiting,), timeout=self.close_timeout + self.grace)
            raise
        finally:
            _report(tasks, self.close_timeout + self.grace)

    async def __aenter__(self) -> Lifecycle:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def lifespan(self, app: object) -> AbstractAsyncContextManager[Lifecycle]:
        """``lifespan(app)``: this lifecycle as a framework lifespan (the app is unused)."""
        return self


def _report(tasks: dict[asyncio.Task[None], str], bound: float) -> None:
    for task, name in tasks.items():
        if not task.done():
            task.cancel()
            logger.error("shutdown: %s did not close within %.1f s; abandoned", name, bound)
        elif not task.cancelled() and (exc := task.exception()) is not None:
            logger.error("shutdown: closing %s failed", name, exc_info=exc)


def managed(
    connects: Iterable[DBConnect] = (),
    resolvers: Iterable[ManagedResolver] = (),
    **timeouts: float,
) -> AbstractAsyncContextManager[Lifecycle]:
    """``async with managed(...)``: start the resolvers; on exit (also on error) close all.

    ``timeouts``: ``start_timeout``, ``close_timeout``, ``grace`` (see :class:`Lifecycle`).
    """
    return Lifecycle(connects, resolvers, **timeouts)


def db_lifespan(
    connects: Iterable[DBConnect] = (),
    resolvers: Iterable[ManagedResolver] = (),
    *,
    then: Callable[[Any], AbstractAsyncContextManager[Any]] | None = None,
    start_timeout: float = DEFAULT_START_TIMEOUT,
    close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
    grace: float = GRACE,
) -> Callable[[Any], AbstractAsyncContextManager[None]]:
    """A ``lifespan(app)`` for FastAPI, Starlette and Litestar.

    Starts the resolvers, then enters ``then(app)`` (the app's own lifespan,
    which may already use the database) and, on shutdown, leaves it before
    closing everything within ``close_timeout + grace`` seconds.

    Example::

        app = FastAPI(lifespan=db_lifespan([master, replica], [cluster], then=create_tables))
    """
    lifecycle = Lifecycle(
        connects, resolvers, start_timeout=start_timeout, close_timeout=close_timeout, grace=grace
    )

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        async with lifecycle:
            if then is None:
                yield
            else:
                async with then(app):
                    yield

    return lifespan
