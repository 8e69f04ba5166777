"""The independent poller of a drill: who accepts writes, seen without the library.

One plain asyncpg connection per member (not ctxdb, not topology), polled
every ``interval`` seconds. A poll is a real write test: on a primary it
assigns an XID (``txid_current()``) and commits it, which in Patroni's
synchronous mode also waits for the synchronous standby; on a standby it
only reads ``pg_is_in_recovery()``. Each member is polled by a task of its
own, so a frozen member never delays the others.

A standby is not polled every ``interval`` but watched: its connection
runs a ``DO`` block that checks ``pg_is_in_recovery()`` every ~1 ms on the
server (committing after each check, so it holds back no WAL replay) for up
to ``watch`` seconds, and the poll follows the moment it ends. So the first
commit on a promoted standby comes within about a millisecond plus a round
trip of the moment it could: the poller is the drills' oracle, not a
20 ms sampler, at no client CPU cost. Plain SQL of its own: no ctxdb, no
topology.

Only *changes* are recorded (a :class:`Transition` when a member's state or
timeline changes), each stamped with ``time.monotonic()`` taken when the
answer arrived: the first ``primary`` transition of a member is the moment
it was first seen accepting writes, to within one ``interval``.

The poller runs on an event loop of its own in a thread, so a busy
workload loop delays neither its polls nor its timestamps.

Timeouts: connect and each poll are bounded by ``timeout``; a poll that
times out terminates its connection (a frozen server never answers a polite
close) and counts as ``hung``. ``stop()`` cancels the tasks and terminates
the connections; it never waits on a server.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from compose.drill._deadline import timeout

# pg_is_in_recovery() is read once; the branches not taken are not evaluated,
# so txid_current() and pg_walfile_name() never run on a standby.
POLL_QUERY = """\
SELECT r.rec,
       CASE WHEN NOT r.rec THEN txid_current() END,
       CASE WHEN NOT r.rec
            THEN ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int
       END
FROM (SELECT pg_is_in_recovery() AS rec) r"""

PRIMARY, REPLICA, DOWN, HUNG = "primary", "replica", "down", "hung"
# Ends when recovery does, or after {seconds}; pg_sleep(0.0005) waits ~1.2 ms
# (PostgreSQL's latch waits round up to whole milliseconds).
WATCH = """\
DO $drill_watch$
DECLARE
    stop timestamptz := clock_timestamp() + make_interval(secs => {seconds});
BEGIN
    WHILE pg_is_in_recovery() AND clock_timestamp() < stop LOOP
        PERFORM pg_sleep(0.0005);
        COMMIT;
    END LOOP;
END
$drill_watch$"""


@dataclass(frozen=True)
class Transition:
    """``host`` entered ``state`` (on ``timeline``, for a primary) at monotonic ``t``."""

    t: float
    host: str
    state: str
    timeline: int | None = None


async def _until(predicate: Callable[[], bool], timeout: float, step: float = 0.01) -> None:
    """Wait until ``predicate()`` holds or ``timeout`` passed (state shared across threads)."""
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:  # noqa: ASYNC110 (no cross-thread Event)
        await asyncio.sleep(step)


class Poller:
    """Polls every host; see the module docstring. Start and stop it from one event loop."""

    def __init__(
        self,
        hosts: list[str],
        *,
        user: str,
        password: str,
        database: str = "postgres",
        interval: float = 0.02,
        timeout: float = 0.5,
        watch: float = 0.5,
        application_name: str = "ctxdb-drill-poller",
    ) -> None:
        self.hosts = list(hosts)
        self._connect_kwargs: dict[str, Any] = {
            "user": user,
            "password": password,
            "database": database,
            "server_settings": {"application_name": application_name},
        }
        self.interval = interval
        self.timeout = timeout
        self.watch = watch
        self.transitions: list[Transition] = []
        self.current: dict[str, Transition] = {}
        self._conns: dict[str, asyncpg.Connection] = {}
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None

    def __repr__(self) -> str:
        return f"Poller({', '.join(self.hosts)}, {len(self.transitions)} transitions)"

    # --- lifecycle -----------------------------------------------------------
    async def start(self, timeout: float = 10.0) -> None:
        """Start polling; return once every host was polled once (or after ``timeout``)."""
        self._thread = threading.Thread(target=self._thread_main, name="drill-poller", daemon=True)
        self._thread.start()
        await _until(lambda: len(self.current) >= len(self.hosts), timeout)

    async def stop(self) -> None:
        """Stop the polls and terminate every connection (never waits on a server)."""
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stopping.set)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 2 * self.timeout + 2)
            self._thread = None

    def _thread_main(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop, self._stopping = asyncio.get_running_loop(), asyncio.Event()
        tasks = [
            asyncio.create_task(self._poll_forever(host), name=f"drill-poller-{host}")
            for host in self.hosts
        ]
        try:
            await self._stopping.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks, timeout=2 * self.timeout + 1)
            for conn in self._conns.values():
                conn.terminate()
            self._conns.clear()

    # --- polling -------------------------------------------------------------
    async def _poll_forever(self, host: str) -> None:
        while True:
            state, timeline = await self._poll(host)
            now = time.monotonic()
            last = self.current.get(host)
            if last is None or (last.state, last.timeline) != (state, timeline):
                transition = Transition(now, host, state, timeline)
                self.transitions.append(transition)
                self.current = {**self.current, host: transition}  # readers see whole dicts
            if state == REPLICA and self.watch > 0:
                await self._wait_promotion(host)
            else:
                await asyncio.sleep(self.interval)

    async def _wait_promotion(self, host: str) -> None:
        """Until ``host`` leaves recovery, or ``watch`` s (see the module docstring)."""
        conn = self._conns.get(host)
        if conn is None:
            return
        try:
            async with timeout(self.watch + self.timeout):
                await conn.execute(WATCH.format(seconds=self.watch))
        except (TimeoutError, asyncio.TimeoutError, OSError):
            self._drop(host)  # the next poll says hung or down
        except (asyncpg.PostgresError, asyncpg.InterfaceError):
            self._drop(host)
            await asyncio.sleep(self.interval)

    async def _poll(self, host: str) -> tuple[str, int | None]:
        try:
            async with timeout(self.timeout):
                conn = self._conns.get(host)
                if conn is None or conn.is_closed():
                    address, port = host.rsplit(":", 1)
                    conn = await asyncpg.connect(
                        host=address, port=int(port), timeout=self.timeout, **self._connect_kwargs
                    )
                    self._conns[host] = conn
                in_recovery, _xid, timeline = await conn.fetchrow(POLL_QUERY)
        except (TimeoutError, asyncio.TimeoutError):
            self._drop(host)
            return HUNG, None
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            self._drop(host)
            return DOWN, None
        if in_recovery:
            return REPLICA, None
        return PRIMARY, int(timeline)

    def _drop(self, host: str) -> None:
        conn = self._conns.pop(host, None)
        if conn is not None:
            conn.terminate()

    # --- reading -------------------------------------------------------------
    def writable(self) -> list[Transition]:
        """Hosts whose latest poll accepted a write, highest timeline first."""
        found = [t for t in self.current.values() if t.state == PRIMARY]
        return sorted(found, key=lambda t: -(t.timeline or 0))

    async def wait_writable(self, timeout: float) -> Transition | None:
        """A host that accepts writes now (highest timeline), waiting up to ``timeout``."""
        await _until(lambda: bool(self.writable()), timeout)
        found = self.writable()
        return found[0] if found else None
