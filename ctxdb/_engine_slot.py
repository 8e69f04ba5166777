"""One engine of a DBConnect, with its host, sessionmaker and checkout count.

Also the small pieces DBConnect builds engines and reports with: the
creator types, the default sessionmaker, the hooked slot and the frozen
``ConnectStats`` (background tasks are ``ctxdb._tasks``'s).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

from ._routing import HostRouter
from ._setup_guard import guard_connection_setup
from ._tasks import Supervisor, TaskInfo
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
    """What a ``DBConnect`` did since construction (``DBConnect.stats()``).

    ``hosts`` and ``tasks`` are left out of comparisons: they describe the
    moment, not what happened (a stats object compares as before).
    """

    host: str | None  # where new sessions go now
    swaps: int  # changes of host (engine swaps and routed moves)
    terminated: int  # connections cut because their host was no longer the answer
    checked_out: int  # connections checked out now, current and retired engines
    hosts: int = field(default=0, compare=False)  # per-host engines held (replicas)
    # Background tasks by kind: dispose, warm-up, spares, session-close (ctxdb._tasks).
    tasks: tuple[TaskInfo, ...] = field(default=(), compare=False)


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
        """Close the idle pooled connections and the router's spares, within ``timeout`` s.

        Both run side by side under the one deadline: the spares are
        terminated at once (no round trip), so a pool that waits on a frozen
        host never keeps them open. Never raises: a failure or a timeout (a
        hung host) is logged and the remaining pooled connections are left
        to the checkin hook and to the GC.
        """
        closing = [self.engine.dispose()]
        if self.router is not None:
            closing.append(self.router.close())
        try:
            outcomes = await asyncio.wait_for(
                asyncio.gather(*closing, return_exceptions=True), timeout
            )
        except asyncio.TimeoutError:
            logger.warning(
                "disposing of the engine for %s timed out after %.1fs", self.host, timeout
            )
        else:
            for outcome in outcomes:
                if isinstance(outcome, Exception):
                    logger.warning(
                        "disposing of the engine for %s failed", self.host, exc_info=outcome
                    )
        finally:
            self.disposed = True


class Retirement:
    """Engines taken out of use: disposed of in the background, counted until empty.

    A retired engine's idle connections are closed by a ``dispose()`` in a
    supervised task (kind ``dispose``, ``ctxdb._tasks``) bounded by
    ``timeout`` seconds; connections still checked out keep working until
    their session ends, and are closed at checkin instead of pooled, so no
    idle connection to the old host is left behind. Event loop thread only.
    """

    def __init__(self, tasks: Supervisor, timeout: float) -> None:
        self._tasks = tasks
        self.timeout = timeout
        self.running = tasks.running("dispose")  # the live set of disposals
        self._slots: set[EngineSlot] = set()

    def retire(self, slot: EngineSlot) -> None:
        """Take ``slot`` out of use and dispose of it in the background (once)."""
        if slot.retired:  # already retiring (evicted, then closed)
            return
        slot.retire()
        self._slots.add(slot)
        work = lambda: slot.dispose(self.timeout)  # noqa: E731
        self._tasks.spawn("dispose", work, f"ctxdb-dispose-{slot.host}")

    def checked_out(self) -> int:
        """Connections still checked out of retired engines (forgets finished ones)."""
        self._slots = {s for s in self._slots if s.checked_out or not s.disposed}
        return sum(s.checked_out for s in self._slots)

    async def wait(self, timeout: float | None) -> None:
        """Wait for the disposals running now, at most ``timeout`` (default: their own)."""
        pending = list(self.running)
        if pending:
            await asyncio.wait(pending, timeout=self.timeout if timeout is None else timeout)


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
