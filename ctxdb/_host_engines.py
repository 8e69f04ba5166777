"""Per-host engines, bounded: hosts come and go, the maps that follow them do not grow.

A replica resolver names hosts that change over a process's life (DCS
membership, pod IPs). An engine and a pool kept for every host ever named
would only grow, so :class:`HostEngines` (a replica ``DBConnect``'s engines)
and :class:`Blueprints` (a ``HostRouter``'s per-host creators) hold at most
``limit`` hosts and forget the least recently named one beyond it;
``HostEngines`` also forgets a host not named for ``idle_after`` seconds
once no session holds a connection of its engine.

A forgotten engine is handed to a callback outside the lock, which retires
it: connections checked out at that moment finish their work and are closed
at checkin (``EngineSlot``), the idle ones are closed by a disposal in a
supervised task bounded by a timeout (``ctxdb._tasks``). A later request
for that host builds a new engine.

Concurrency: a (thread) lock guards the maps; it is never held across an
``await``, nor while an engine is built or disposed. Pruning happens at
lookups: a DBConnect nobody asks keeps what it has, which is bounded anyway.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncEngine

from ._tasks import Supervisor

if TYPE_CHECKING:  # _engine_slot imports _routing, which imports this module
    from ._engine_slot import EngineSlot

__all__ = ["DEFAULT_HOST_IDLE", "DEFAULT_MAX_HOSTS", "Blueprints", "HostEngines"]

DEFAULT_MAX_HOSTS = 64
DEFAULT_HOST_IDLE = 300.0
# A blueprint serves only a creator: few hosts need one at a time (the target, the spares).
_MAX_BLUEPRINTS = 16


class _Entry:
    __slots__ = ("slot", "used")

    def __init__(self, slot: EngineSlot, used: float) -> None:
        self.slot = slot
        self.used = used


class HostEngines:
    """One engine per host named recently, at most ``limit`` of them (module docstring).

    ``build(host)`` makes a slot (no I/O); ``retire(slot)`` takes a slot
    that was forgotten. ``clock`` (monotonic seconds) is injectable for tests.
    """

    def __init__(
        self,
        build: Callable[[str], EngineSlot],
        retire: Callable[[EngineSlot], None],
        *,
        limit: int = DEFAULT_MAX_HOSTS,
        idle_after: float = DEFAULT_HOST_IDLE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit < 1:
            raise ValueError(f"max_hosts must be at least 1, got {limit!r}")
        if idle_after <= 0:
            raise ValueError(f"host_idle_timeout must be positive seconds, got {idle_after!r}")
        self._build = build
        self._retire = retire
        self.limit = limit
        self.idle_after = idle_after
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()  # least recently named first

    def __len__(self) -> int:
        return len(self._entries)

    def hosts(self) -> list[str]:
        """The hosts with an engine now, least recently named first."""
        with self._lock:
            return list(self._entries)

    def slots(self) -> list[EngineSlot]:
        with self._lock:
            return [entry.slot for entry in self._entries.values()]

    def get(self, host: str) -> EngineSlot:
        """The engine for ``host``, built on first use; prunes the others."""
        now = self._clock()
        built: EngineSlot | None = None
        with self._lock:
            entry = self._entries.get(host)
        if entry is None:
            built = self._build(host)  # outside the lock: user code, may be slow
        with self._lock:
            entry = self._entries.get(host)
            if entry is None:
                assert built is not None
                entry = self._entries[host] = _Entry(built, now)
                built = None
            entry.used = now
            self._entries.move_to_end(host)
            forgotten = self._prune(now)
        if built is not None:
            forgotten.append(built)  # another task built this host's engine first
        for slot in forgotten:
            self._retire(slot)
        return entry.slot

    def _prune(self, now: float) -> list[EngineSlot]:
        """Under the lock: take out the hosts beyond ``limit`` and those idle too long."""
        forgotten: list[EngineSlot] = []
        while len(self._entries) > self.limit:
            # Even with sessions on it: they finish on the retired engine.
            forgotten.append(self._entries.popitem(last=False)[1].slot)
        for host, entry in list(self._entries.items()):
            if now - entry.used < self.idle_after:
                break  # the rest were named more recently
            if entry.slot.checked_out == 0:
                forgotten.append(self._entries.pop(host).slot)
        return forgotten

    def pop(self, host: str) -> EngineSlot | None:
        """Forget ``host`` (its engine failed); the caller retires what is returned."""
        with self._lock:
            entry = self._entries.pop(host, None)
        return None if entry is None else entry.slot

    def clear(self) -> list[EngineSlot]:
        """Forget every host; the caller retires what is returned."""
        with self._lock:
            entries, self._entries = list(self._entries.values()), OrderedDict()
        return [entry.slot for entry in entries]


class Blueprints:
    """Engines built only for their creator, one per host, at most ``limit`` of them.

    ``build(host)`` makes an engine that never connects by itself; a
    forgotten one is disposed of in a supervised task (kind ``dispose``)
    bounded by ``timeout`` seconds. Connections its creator already made
    belong to another pool and are not touched. Event loop thread only.
    """

    def __init__(
        self,
        build: Callable[[str], AsyncEngine],
        tasks: Supervisor,
        timeout: float,
        limit: int = _MAX_BLUEPRINTS,
    ) -> None:
        self._build = build
        self._tasks = tasks
        self._timeout = timeout
        self.limit = limit
        self._engines: OrderedDict[str, AsyncEngine] = OrderedDict()

    def __len__(self) -> int:
        return len(self._engines)

    def creator(self, host: str) -> Callable[[Any], Any]:
        """The DBAPI creator of ``host``'s engine (built on first use)."""
        engine = self._engines.get(host)
        if engine is None:
            engine = self._engines[host] = self._build(host)
            while len(self._engines) > self.limit:
                self._dispose(self._engines.popitem(last=False)[1])
        self._engines.move_to_end(host)
        return engine.sync_engine.pool._invoke_creator

    def keep_only(self, hosts: Iterable[str]) -> None:
        """Dispose of the engines of every host not in ``hosts``."""
        keep = set(hosts)
        for host in [h for h in self._engines if h not in keep]:
            self._dispose(self._engines.pop(host))

    def _dispose(self, engine: AsyncEngine) -> None:
        work = lambda: asyncio.wait_for(engine.dispose(), self._timeout)  # noqa: E731
        self._tasks.spawn("dispose", work, "ctxdb-dispose-blueprint")

    async def close(self) -> None:
        """Dispose of every engine now, each within the timeout."""
        engines, self._engines = list(self._engines.values()), OrderedDict()
        for engine in engines:
            await asyncio.wait_for(engine.dispose(), self._timeout)
