"""DBConnect: one database, its current engine and sessionmaker, and the engine swap.

The engine swap is the heart of failover support: ``change_host(host)``
builds the new engine *first*, publishes it in one step under a (thread)
lock that is never held across an ``await``, and retires the old engine
outside the lock. A hung host therefore never blocks a swap or the
sessions that want the new engine.

Retiring an engine does not break sessions that were already handed out
(``ctxdb._engine_slot.Retirement``): they finish on it, and a background
``dispose()`` bounded by ``failover.dispose_timeout`` closes its idle connections.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from ._engine_slot import (
    ConnectStats,
    EngineCreatorFunc,
    EngineSlot,
    Retirement,
    SessionMakerCreatorFunc,
    build_slot,
    default_session_maker_creator,
)
from ._follow import AfterMove
from ._host_engines import DEFAULT_HOST_IDLE, DEFAULT_MAX_HOSTS, HostEngines
from ._route_owner import ConnectRouteOwner
from ._routing import HostRouter
from ._tasks import Supervisor
from ._token import Position
from .errors import NoHostError
from .resolver import Capabilities, Resolver, engine_creator_from_url
from .settings import Failover, gather
from .trace import EngineSwapped, ReadRouted, Tracer, safe

__all__ = ["AsyncFunc", "ConnectStats", "DBConnect", "EngineCreatorFunc", "SessionMakerCreatorFunc"]

logger = logging.getLogger("ctxdb")

AsyncFunc = Callable[["DBConnect"], Awaitable[None]]


class DBConnect:
    """A database: how to build its engine, and the engine in use now.

    Construction is cheap and connects nothing, so a module-level
    ``DBConnect`` is fine. The first session builds the engine for ``host``.

    Concurrency: all methods are safe to call from many tasks at once. The
    swap itself never awaits; ``before_create_session_handler`` runs before
    every new session and may call ``change_host``.

    Following hosts: with ``resolver=`` (``ctxdb.resolver``: its protocols
    are checked once, here) every new session asks the resolver for its
    host first, and with ``url=`` (plus ``engine_kwargs``) no
    ``engine_creator`` is needed; that URL may be the cluster's libpq
    multi-host URL, whose TLS settings, ``options`` and other libpq
    parameters reach asyncpg and psycopg engines alike
    (``ctxdb.engine_url``; ``sslpassword`` never shows in a repr).
    An exclusive resolver (a primary) gets one engine whose connections
    follow it (``ctxdb._routing``): when the answer changes, every connection
    to the old host is cut, sessions that sent nothing reconnect to the new
    one, and ``failover`` (:class:`ctxdb.Failover`: the wait for a new host,
    the warm-up, the spare connections to the resolver's ``candidates()``,
    the disposal's deadline) says what happens around the move. A non-exclusive resolver
    (replicas) gets one engine per host, for at most ``max_hosts`` hosts; one
    not named for ``host_idle_timeout`` s is disposed of once idle
    (``ctxdb._host_engines``). ``stats()`` counts changes of host and shows
    the background tasks (``ctxdb._tasks``: a death is logged once at ERROR).
    ``read_your_writes=True`` makes context sessions record where their
    commits end in the WAL; a replica DBConnect asked for a session with
    that ``position`` serves it only from a replica that replayed it,
    waiting at most ``read_your_writes_wait`` seconds before it falls back
    to the primary (see ``ctxdb.read_your_writes``). ``tracer`` receives
    ``ctxdb.trace`` events (swaps, cut connections, typed failures).

    Example::

        master = DBConnect(
            engine_creator=lambda host: create_async_engine(f"postgresql+asyncpg://u@{host}/db"),
            session_maker_creator=lambda engine: async_sessionmaker(engine),
            host="127.0.0.1:5432",
        )
    """

    def __init__(
        self,
        engine_creator: EngineCreatorFunc | None = None,
        session_maker_creator: SessionMakerCreatorFunc | None = None,
        host: str | None = None,
        before_create_session_handler: AsyncFunc | None = None,
        *,
        resolver: Resolver | None = None,
        url: str | None = None,
        engine_kwargs: dict[str, Any] | None = None,
        read_your_writes: bool = False,
        read_your_writes_wait: float = 0.05,
        failover: Failover | None = None,
        tracer: Tracer | None = None,
        max_hosts: int = DEFAULT_MAX_HOSTS,
        host_idle_timeout: float = DEFAULT_HOST_IDLE,
        **legacy: Any,
    ) -> None:
        self.failover = failover = gather(failover, legacy)
        if engine_creator is None:
            if url is None:
                raise ValueError("DBConnect needs an engine_creator or a url")
            engine_creator = engine_creator_from_url(url, engine_kwargs)
        self.context_key = str(uuid.uuid4())
        self._host = host
        self._engine_creator = engine_creator
        self._session_maker_creator = session_maker_creator or default_session_maker_creator
        self._before_create_session_handler = before_create_session_handler
        self._slot: EngineSlot | None = None
        self._swap_lock = threading.Lock()
        self._tracer = safe(tracer)
        # Every background task is supervised: a death is logged once and counted.
        self._tasks = Supervisor(self._tracer)
        self._retirement = Retirement(self._tasks, failover.dispose_timeout)
        self._retire = self._retirement.retire
        self._retiring = self._retirement.running
        self._swaps = 0
        self._terminated = 0
        # Non-exclusive resolvers (replica pickers): one engine per host named recently.
        self._by_host = HostEngines(
            self._build, self._retire, limit=max_hosts, idle_after=host_idle_timeout
        )
        self._track_writes = read_your_writes
        self._adopt(resolver, read_your_writes_wait, failover)

    def _adopt(self, resolver: Resolver | None, ryw_wait: float, failover: Failover) -> None:
        """What the resolver offers, checked once (ctxdb.resolver), and how to follow it."""
        self._resolver = resolver
        self._can = Capabilities.of(resolver, ryw_wait)
        self._exclusive = self._can.exclusive
        # An exclusive resolver (a primary): one engine whose connections follow it.
        self._routed = resolver is not None and self._can.exclusive
        # Its routers get this narrow view (ctxdb._route_owner), not the whole DBConnect.
        self._route_owner = ConnectRouteOwner(self)
        self._failover_wait = failover.wait
        candidates = self._can.candidates if failover.spares else None
        self._after_move = AfterMove(
            self._tasks,
            self._tracer,
            warm_up=failover.warm_up,
            candidates=candidates,
            wait=failover.wait,
        )
        self._unsubscribe: Callable[[], None] | None = None
        if self._can.add_listener is not None:
            # The answer changed: act now, not at the next session (routed DBConnects only).
            self._unsubscribe = self._can.add_listener(self._retarget)

    def __repr__(self) -> str:
        return f"<DBConnect host={self._host!r} key={self.context_key[:8]}>"

    # --- the current host and engine --------------------------------------
    @property
    def host(self) -> str | None:
        """The host new sessions go to (``None`` until one is known)."""
        return self._host

    @host.setter
    def host(self, host: str | None) -> None:
        self._host = host

    @property
    def tracks_writes(self) -> bool:
        """Whether sessions record their commits' WAL position (``read_your_writes``)."""
        return self._track_writes

    @property
    def tracer(self) -> Tracer | None:
        """Where ``ctxdb.trace`` events go (wrapped so that it never raises), or ``None``."""
        return self._tracer

    @property
    def swaps(self) -> int:
        """Changes of host so far (``stats().swaps``)."""
        return self._swaps

    @property
    def terminated(self) -> int:
        """Connections cut because their host was no longer the answer (``stats()``)."""
        return self._terminated

    def stats(self) -> ConnectStats:
        """A frozen copy of the counters and background tasks; safe to call from any task."""
        return ConnectStats(
            self._host,
            self._swaps,
            self._terminated,
            self.checked_out(),
            hosts=len(self._by_host),
            tasks=self._tasks.stats(),
        )

    @property
    def engine(self) -> AsyncEngine | None:
        """The engine in use now, if one was built."""
        slot = self._slot
        return slot.engine if slot else None

    # Upstream's attribute names, read by its own tests (and by tests written like them).
    @property
    def _engine(self) -> AsyncEngine | None:
        return self.engine

    @property
    def _session_maker(self) -> async_sessionmaker[AsyncSession] | None:
        slot = self._slot
        return slot.session_maker if slot else None

    def checked_out(self) -> int:
        """Connections checked out right now, over current and retired engines."""
        slot = self._slot
        current = sum(s.checked_out for s in {slot, *self._by_host.slots()} if s is not None)
        return current + self._retirement.checked_out()

    # --- swapping ------------------------------------------------------------
    async def connect(self, host: str) -> None:
        """Build a new engine for ``host`` and make it current (even for the same host).

        If ``engine_creator`` raises, the previous engine and host stay in use.
        """
        self._swap(host, only_if_changed=False)

    async def change_host(self, host: str) -> None:
        """Switch new sessions to ``host``; a no-op when it is the current host.

        The new engine is built before anything changes; the old one is
        retired in a background task (see the module docstring). Returns
        without waiting for that task.
        """
        self._swap(host, only_if_changed=True)

    def _swap(self, host: str, *, only_if_changed: bool) -> EngineSlot:
        """Build an engine for ``host`` and make it current; retire the previous one."""
        if not host:
            raise NoHostError("DBConnect: host must not be empty")
        current = self._slot
        if only_if_changed and current is not None and current.host == host:
            return current
        # Build outside the lock: user code may be slow, and a failure here
        # must leave the previous engine in place.
        new_slot = self._build(host)
        with self._swap_lock:
            old_host = self._host
            old_slot, self._slot, self._host = self._slot, new_slot, host
            swapped = old_slot is not None or (old_host is not None and old_host != host)
            self._swaps += swapped
        if swapped and self._tracer is not None:
            reason = "change_host" if only_if_changed else "connect"
            self._tracer(EngineSwapped(old_host, host, reason))
        if old_slot is not None:
            self._retire(old_slot)
        if old_host is None:
            logger.debug("%r sends new sessions to %s", self, host)
        elif old_host != host:
            logger.warning("%r now sends new sessions to %s (was %s)", self, host, old_host)
        return new_slot

    def _build(self, host: str) -> EngineSlot:
        engine = self._engine_creator(host)
        maker = self._session_maker_creator(engine)
        if not isinstance(engine, AsyncEngine):
            # A test double (upstream's own tests build DBConnects on mocks):
            # it has no events to hook, so it gets neither routing nor hooks.
            return EngineSlot(host, engine, maker)
        router = None
        if self._routed:
            router = HostRouter(
                engine,
                host,
                owner=self._route_owner,
                wait=self._failover_wait,
                tracer=self._tracer,
                tasks=self._tasks,
            )
        failed, wait = self._on_engine_failure, self._failover_wait
        return build_slot(
            host, engine, maker, on_failure=failed, router=router, wait=wait, tracer=self._tracer
        )

    def _on_engine_failure(self, host: str, exc: BaseException) -> None:
        if not self._exclusive:
            stale = self._by_host.pop(host)
            if stale is not None:
                self._retire(stale)
        if self._can.report_failure is not None:
            self._can.report_failure(host, exc)

    def _retarget(self, host: str | None) -> None:
        """Send new connections to ``host`` and cut every connection to the previous one.

        Sessions that have not sent anything yet, including those queued for
        the pool, reconnect to ``host`` at checkout; those mid-transaction on
        the old host fail at once with a typed error. Never waits.
        """
        slot = self._slot
        router = slot.router if slot is not None else None
        if router is None or router.target == host:
            return
        old = router.target
        live = router.live(old) if old is not None else 0
        reason = f"{old} is no longer the resolved host"
        cut = router.move(host, reason)
        self._host = host
        self._swaps += host is not None
        self._terminated += cut
        self._after_move.moved(self, router, old, cut, live, reason)

    # --- sessions ------------------------------------------------------------
    async def session_maker(
        self, position: Position | None = None
    ) -> async_sessionmaker[AsyncSession]:
        """The current sessionmaker, after running ``before_create_session_handler``.

        ``position``: where the caller's context last wrote (its
        ``SessionScope.position``); a read-your-writes resolver then picks a
        host that replayed it (see ``ctxdb.read_your_writes``).
        """
        if self._resolver is not None:
            host = await self._resolve(self._resolver, position)
            if not self._exclusive:
                return self._replica_slot(host).session_maker
            if self._slot is None:
                built = self._swap(host, only_if_changed=True)
                if built.router is not None:
                    self._after_move.keep_spares(built.router)
            else:
                self._retarget(host)
        if self._before_create_session_handler is not None:
            await self._before_create_session_handler(self)
        slot = self._slot
        if slot is None:
            if not self._host:
                raise NoHostError(
                    "DBConnect has no host (host is not set): pass host=..., call connect(host), "
                    "or set a before_create_session_handler that calls change_host()"
                )
            slot = self._swap(self._host, only_if_changed=True)
        return slot.session_maker

    async def _resolve(self, resolver: Resolver, position: Position | None) -> str:
        if position is not None and self._can.after_write is not None:
            # The caller's context wrote: only a replica that replayed it will do.
            host = await self._can.after_write(position)
        else:
            host = await resolver()
        if self._tracer is not None and not self._exclusive:
            self._tracer(ReadRouted(host, position is not None))
        return host

    def _replica_slot(self, host: str) -> EngineSlot:
        slot = self._by_host.get(host)  # prunes hosts beyond max_hosts or idle too long
        self._slot, self._host = slot, host
        return slot

    async def create_session(self, position: Position | None = None) -> AsyncSession:
        """A new session on the current engine (no connection is opened yet).

        ``position``: as for :meth:`session_maker`. The session records no
        WAL positions itself: ``db_session`` makes it do so in a context.
        """
        maker = await self.session_maker(position)
        return maker()

    async def close(self, timeout: float | None = None) -> None:
        """Dispose of the current engine and wait for retired ones, within ``timeout``.

        Later sessions build a new engine for the same host. Cancellation
        leaves the disposal running in the background.
        """
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._tasks.cancel("warm-up")
        with self._swap_lock:
            slots = {self._slot, *self._by_host.clear()} - {None}
            self._slot = None
        for slot in filter(None, slots):
            self._retire(slot)
        await self._retirement.wait(timeout)
