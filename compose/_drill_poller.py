"""The independent poller of a drill: who accepts writes, seen without the library.

One plain asyncpg connection per member (not ctxdb, not topology), polled
every ``interval`` seconds. A poll is a real write test: on a primary it
assigns an XID (``txid_current()``) and commits it, which in Patroni's
synchronous mode also waits for the synchronous standby; on a standby it
only reads ``pg_is_in_recovery()``. Each member is polled by a task of its
own, so a frozen member never delays the others.

Only *changes* are recorded (a :class:`Transition` when a member's state or
timeline changes), each stamped with ``time.monotonic()`` taken when the
answer arrived: the first ``primary`` transition of a member is the moment
it was first seen accepting writes, to within one ``interval``.

Timeouts: connect and each poll are bounded by ``timeout``; a poll that
times out terminates its connection (a frozen server never answers a polite
close) and counts as ``hung``. ``stop()`` cancels the tasks and terminates
the connections; it never waits on a server.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any

import asyncpg

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


@dataclass(frozen=True)
class Transition:
    """``host`` entered ``state`` (on ``timeline``, for a primary) at monotonic ``t``."""

    t: float
    host: str
    state: str
    timeline: int | None = None


class Poller:
    """Polls every host; see the module docstring. Not thread-safe (one event loop)."""

    def __init__(
        self,
        hosts: list[str],
        *,
        user: str,
        password: str,
        database: str = "postgres",
        interval: float = 0.02,
        timeout: float = 0.5,
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
        self.transitions: list[Transition] = []
        self.current: dict[str, Transition] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._conns: dict[str, asyncpg.Connection] = {}
        self._changed = asyncio.Event()

    def __repr__(self) -> str:
        return f"Poller({', '.join(self.hosts)}, {len(self.transitions)} transitions)"

    # --- lifecycle -----------------------------------------------------------
    async def start(self, timeout: float = 10.0) -> None:
        """Start polling; return once every host was polled once (or after ``timeout``)."""
        self._tasks = [
            asyncio.create_task(self._poll_forever(host), name=f"drill-poller-{host}")
            for host in self.hosts
        ]
        deadline = time.monotonic() + timeout
        while len(self.current) < len(self.hosts) and time.monotonic() < deadline:
            self._changed.clear()
            with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), deadline - time.monotonic())

    async def stop(self) -> None:
        """Cancel the polls and terminate every connection (never waits on a server)."""
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=2 * self.timeout + 1)
        self._tasks = []
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
                self.current[host] = transition
                self.transitions.append(transition)
                self._changed.set()
            await asyncio.sleep(self.interval)

    async def _poll(self, host: str) -> tuple[str, int | None]:
        try:
            async with asyncio.timeout(self.timeout):
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

    async def wait_writable(self, timeout: float, *, after: float = 0.0) -> Transition | None:
        """The first primary transition later than ``after``, waiting up to ``timeout``.

        With ``after == 0`` any host currently writable will do.
        """
        deadline = time.monotonic() + timeout
        while True:
            if after:
                found = self.first_primary_after(after)
            else:
                current = self.writable()
                found = current[0] if current else None
            remaining = deadline - time.monotonic()
            if found is not None or remaining <= 0:
                return found
            self._changed.clear()
            with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    def first_primary_after(
        self, t: float, *, exclude: tuple[str, int | None] | None = None
    ) -> Transition | None:
        """The first transition to primary after ``t`` (optionally of another host/timeline)."""
        for transition in self.transitions:
            if transition.t <= t or transition.state != PRIMARY:
                continue
            if exclude is not None and (transition.host, transition.timeline) == exclude:
                continue
            return transition
        return None

    def primary_at(self, t: float) -> Transition | None:
        """The writable host with the highest timeline as of monotonic ``t``."""
        states: dict[str, Transition] = {}
        for transition in self.transitions:
            if transition.t > t:
                break
            states[transition.host] = transition
        writable = [s for s in states.values() if s.state == PRIMARY]
        return max(writable, key=lambda s: s.timeline or 0, default=None)

    def max_timeline_before(self, t: float) -> int:
        """The highest timeline seen accepting writes strictly before ``t``."""
        return max(
            (x.timeline or 0 for x in self.transitions if x.t < t and x.state == PRIMARY),
            default=0,
        )

    def lost_after(self, host: str, t: float) -> Transition | None:
        """The first transition of ``host`` out of primary after ``t``."""
        for transition in self.transitions:
            if transition.t > t and transition.host == host and transition.state != PRIMARY:
                return transition
        return None
