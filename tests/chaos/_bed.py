"""The chaos test bed: proxies in front of a real replicated cluster, a workload, the invariants.

:class:`Bed` puts one :class:`~tests.support.faultproxy.FaultProxy` in front of
every node of the session's :class:`compose.pg.ReplicatedCluster`; resolvers and
engines only know the proxies' addresses, so every byte between the app and a
server crosses a proxy whose fault the test switches.

:class:`Ledger` records what a workload of writes saw, and :meth:`Ledger.check`
asserts the invariants every chaos case states:

- bounded time: every request ended (answer or error) within ``DEADLINE``;
- typed errors: every error is a ctxdb, topology or SQLAlchemy error;
- no write acknowledged by a non-primary: every acknowledged INSERT ran on the
  primary's server (``inet_server_port()``);
- no lost acknowledged write: every INSERT whose COMMIT returned is on the primary;
- "safe to retry" is true: no row of a ``RetryableConnectionError`` is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import psycopg
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from compose.pg import ReplicatedCluster
from ctxdb import DBConnect, new_non_ctx_atomic_session
from ctxdb.errors import CtxDBError, RetryableConnectionError
from tests.support.faultproxy import FaultProxy
from topology import ClusterResolver
from topology.errors import TopologyError

DEADLINE = 10.0  # per request; generous: it only has to be finite
RECOVER = 20.0  # after the fault is lifted, a write must succeed within this
HOLD = 1.0  # how long a fault lasts in a case
MEMORY_BOUND = 32 << 20  # peak traced allocation growth during a case
TYPED = (CtxDBError, TopologyError, SQLAlchemyError)


@dataclass
class Bed:
    """A proxy per node of ``cluster``, in node order."""

    cluster: ReplicatedCluster
    proxies: list[FaultProxy]

    @property
    def hosts(self) -> list[str]:
        return [proxy.host for proxy in self.proxies]

    def proxy(self, role: str = "primary") -> FaultProxy:
        node = self.cluster.primary if role == "primary" else self.cluster.replicas[0]
        return self.proxies[self.cluster.nodes.index(node)]

    def table(self) -> str:
        name = f"chaos_{uuid.uuid4().hex[:12]}"
        self.cluster.query(
            self.cluster.primary, f"create table {name} (token text primary key, port int not null)"
        )
        return name

    def stored(self, table: str) -> set[str]:
        """Tokens on the primary, read directly (not through a proxy)."""
        node = self.cluster.primary
        with psycopg.connect(
            host="127.0.0.1", port=node.port, user="postgres", password=self.cluster.password,
            dbname="postgres", connect_timeout=5, autocommit=True,
        ) as conn:  # fmt: skip
            return {str(row[0]) for row in conn.execute(f"select token from {table}")}


@dataclass
class Ledger:
    """What a workload saw; see the module docstring for what :meth:`check` asserts."""

    table: str
    deadline: float = DEADLINE  # per request
    acked: dict[str, int] = field(default_factory=dict)  # token -> server port
    retry_safe: set[str] = field(default_factory=set)
    typed: list[str] = field(default_factory=list)
    untyped: list[str] = field(default_factory=list)
    late: list[str] = field(default_factory=list)
    slowest: float = 0.0  # seconds, the longest request (for the log, never asserted)

    async def write(self, master: DBConnect) -> bool:
        """One INSERT in its own transaction; True when its COMMIT returned."""
        token = uuid.uuid4().hex

        async def request() -> int:
            async with new_non_ctx_atomic_session(master) as session:
                result = await session.execute(
                    text(
                        f"insert into {self.table} values (:t, inet_server_port()) returning port"
                    ),
                    {"t": token},
                )
                port = int(result.scalar_one())
            return port  # the COMMIT returned: acknowledged

        started = time.monotonic()
        try:
            self.acked[token] = await asyncio.wait_for(request(), self.deadline)
            return True
        except asyncio.TimeoutError:
            self.late.append(token)
        except TYPED as exc:
            self.typed.append(f"{type(exc).__name__}: {str(exc)[:200]}")
            if isinstance(exc, RetryableConnectionError):
                self.retry_safe.add(token)
        except Exception as exc:
            self.untyped.append(f"{type(exc).__name__}: {str(exc)[:200]}")
        finally:
            self.slowest = max(self.slowest, time.monotonic() - started)
        return False

    async def write_until_ok(
        self, master: DBConnect, timeout: float = RECOVER, when: str = "after the fault"
    ) -> None:
        """Write until one is acknowledged (liveness), within ``timeout``."""
        deadline = time.monotonic() + timeout
        while not await self.write(master):
            assert time.monotonic() < deadline, (
                f"no write acknowledged within {timeout} s {when}: "
                f"{(self.typed + self.untyped)[-3:]}"
            )
            await asyncio.sleep(0.05)

    def summary(self) -> str:
        """One line for the log of a run (docs/reliability.md quotes these)."""
        kinds = sorted({line.split(":")[0] for line in self.typed + self.untyped})
        return (
            f"acked={len(self.acked)} typed={len(self.typed)} untyped={len(self.untyped)} "
            f"late={len(self.late)} retry_safe={len(self.retry_safe)} "
            f"slowest={self.slowest:.1f}s errors={kinds}"
        )

    def check(self, bed: Bed) -> None:
        print(f"CHAOS {self.summary()}")  # shown by pytest -rP; the docs quote a run
        stored = bed.stored(self.table)
        primary = bed.cluster.primary.port
        assert not self.late, (
            f"bounded time: {len(self.late)} request(s) outlived {self.deadline} s"
        )
        assert not self.untyped, f"typed errors only: {self.untyped[:3]}"
        wrong = {t: p for t, p in self.acked.items() if p != primary}
        assert not wrong, f"no write acknowledged by a non-primary: {wrong}"
        lost = set(self.acked) - stored
        assert not lost, f"no lost acknowledged write: {len(lost)} acknowledged, not stored"
        stored_anyway = self.retry_safe & stored
        assert not stored_anyway, (
            f"'safe to retry' must mean not stored: {len(stored_anyway)} were stored"
        )


async def workload(master: DBConnect, ledger: Ledger, stop: asyncio.Event) -> None:
    """Two writers in a loop until ``stop``; errors are recorded, never raised."""

    async def writer() -> None:
        while not stop.is_set():
            if not await ledger.write(master):
                await asyncio.sleep(0.05)  # an app's pause before its next try
            await asyncio.sleep(0.02)

    await asyncio.gather(writer(), writer())


def dead_tasks(cluster: ClusterResolver) -> list[str]:
    """The resolver's background tasks that are not alive (``stats().tasks``)."""
    return [f"{t.name}: {t.last_error}" for t in cluster.stats().tasks if not t.alive]


@contextlib.contextmanager
def memory_bounded(bound: int = MEMORY_BOUND) -> Iterator[None]:
    """Assert that traced allocations never grew by more than ``bound`` bytes inside."""
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    try:
        yield
        _, peak = tracemalloc.get_traced_memory()
        assert peak - base < bound, f"memory bounded: peak grew by {(peak - base) >> 20} MiB"
    finally:
        if started:
            tracemalloc.stop()


async def under_fault(
    bed: Bed,
    master: DBConnect,
    inject: Callable[[], object],
    lift: Callable[[], object],
    hold: float = HOLD,
    deadline: float = DEADLINE,
) -> Ledger:
    """Write before, during (``hold`` s) and after a fault that ``inject`` starts and
    ``lift`` ends; then write until one is acknowledged. Memory is bounded throughout."""
    ledger = Ledger(bed.table(), deadline)
    await ledger.write_until_ok(master)  # warm: pools hold connections through the proxy
    stop = asyncio.Event()
    with memory_bounded():
        load = asyncio.create_task(workload(master, ledger, stop))
        try:
            await asyncio.sleep(0.2)
            inject()
            await asyncio.sleep(hold)
        finally:
            lift()
            stop.set()
            await asyncio.wait_for(load, deadline + 1)
        await ledger.write_until_ok(master)
    return ledger
