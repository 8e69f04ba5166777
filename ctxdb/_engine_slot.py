"""One engine of a DBConnect, with its host, sessionmaker and checkout count.

Also the small pieces DBConnect builds engines and reports with: the
creator types, the default sessionmaker, the hooked slot, background tasks
and the frozen ``ConnectStats``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

from ._routing import HostRouter
from ._setup_guard import guard_connection_setup
from .failover import FailureReporter, install_failover_hooks
from .trace import Tracer

logger = logging.getLogger("ctxdb")

EngineCreatorFunc = Callable[[str], AsyncEngine]
SessionMakerCreatorFunc = Callable[[AsyncEngine], async_sessionmaker[AsyncSession]]


def default_session_maker_creator(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """``async_sessionmaker(engine, expire_on_commit=False)``."""
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


@dataclass(frozen=True)
class ConnectStats:
    """What a ``DBConnect`` did since construction (``DBConnect.stats()``)."""

    host: str | None  # where new sessions go now
    swaps: int  # changes of host (engine swaps and routed moves)
    terminated: int  # connections cut because their host was no longer the answer
    checked_out: int  # connections checked out now, current and retired engines


Tasks = set[asyncio.Task[None]]


def spawn(tasks: Tasks, work: Callable[[], Coroutine[Any, Any, None]], name: str) -> None:
    """Run ``work()`` in a task kept in ``tasks`` until it ends; nothing without a loop.

    ``work`` is a factory, so no coroutine is made (and left un-awaited) when
    no event loop runs: then nothing is checked out that could be waited for.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    task = loop.create_task(work(), name=name)
    tasks.add(task)
    task.add_done_callback(tasks.discard)


def warm_count(router: HostRouter, wanted: int) -> int:
    """How many connections to open ahead for ``router``: ``wanted``, within the pool.

    Slots already being (re)connected by waiting sessions count against it,
    so a warm-up never competes with a request for the first connections.
    """
    pool = router.engine.sync_engine.pool
    size = getattr(pool, "size", None)
    limit = size() if callable(size) else wanted
    busy = getattr(pool, "checkedout", None)
    return min(wanted, limit) - (busy() if callable(busy) else 0)


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


def build_slot(
    host: str,
    engine: AsyncEngine,
    session_maker: async_sessionmaker[AsyncSession],
    *,
    on_failure: FailureReporter,
    router: HostRouter | None,
    wait: float,
    tracer: Tracer | None = None,
) -> EngineSlot:
    """A slot for a new ``engine``, hooked: failures reported, connection setup guarded.

    ``wait``: how long a routed connect asks the resolver again after the
    server closed a new connection (an unrouted engine does not retry).
    """
    target = (lambda: router.target) if router is not None else None
    install_failover_hooks(engine, host, on_failure, target=target, tracer=tracer)
    routed_wait = wait if router is not None else 0.0
    named = lambda: (router and router.target) or host  # noqa: E731
    guard_connection_setup(engine, named, routed_wait, tracer)
    return EngineSlot(host, engine, session_maker, router)
