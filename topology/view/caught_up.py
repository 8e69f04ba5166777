"""Read-your-writes: find a replica that has replayed a given WAL position.

``cluster.replica.at_least(lsn, max_wait)`` answers, in order:

1. a qualifying replica whose replayed LSN in the current snapshot is
   already at or past ``lsn`` (no network);
2. otherwise a replica that, asked directly, has replayed it: the
   candidates are polled concurrently on connections of their own (not the
   background loop's) until ``max_wait`` runs out;
3. otherwise the primary, which always has the write.

``max_wait`` bounds the whole call (connects included), so a forged or
far-future position can delay a read by at most ``max_wait``, never more,
and never sends it to a host that is not a qualifying replica or the
primary.

Example::

    host = await cluster.replica.at_least("0/3000148", max_wait=0.05)
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass

from topology._supervise import Supervisor
from topology.errors import ConfigurationError, ResolverClosedError
from topology.hosts import ConnectOptions, parse_host
from topology.probing.drivers import ProbeDriver
from topology.probing.prober import HostProber
from topology.probing.snapshot import Snapshot
from topology.trace import ReadAfterWrite, ReadKind, Tracer

log = logging.getLogger("topology")

__all__ = [
    "CHECKS",
    "MAX_HOSTS",
    "POLL_EVERY",
    "CaughtUpFinder",
    "CaughtUpStats",
    "format_lsn",
    "parse_lsn",
]

POLL_EVERY = 0.005
CHECKS = "caught-up checks"  # their supervised name (topology._supervise)
# Replicas with a connection kept for these checks, at most: hosts come and
# go (DCS members, pod addresses); the least recently asked are let go first.
MAX_HOSTS = 16
_LSN = re.compile(r"[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}")


def parse_lsn(lsn: str | int) -> int:
    """``"16/B374D848"`` -> bytes since 0/0; ints pass through."""
    if isinstance(lsn, int):
        if lsn < 0:
            raise ConfigurationError(f"an LSN cannot be negative: {lsn}")
        return lsn
    # Hex digits only: int(..., 16) alone also takes a sign, '_' and blanks ("-1/0").
    if not isinstance(lsn, str) or not _LSN.fullmatch(lsn.strip()):
        raise ConfigurationError(f"not a PostgreSQL LSN: {lsn!r}")
    high, _, low = lsn.strip().partition("/")
    return (int(high, 16) << 32) + int(low, 16)


def format_lsn(position: int) -> str:
    return f"{position >> 32:X}/{position & 0xFFFFFFFF:X}"


@dataclass
class CaughtUpStats:
    """How reads after writes were served."""

    from_snapshot: int = 0  # a replica was already known to be caught up
    waited: int = 0  # a replica caught up while we asked
    to_primary: int = 0  # none did within max_wait: the primary served
    other_cluster: int = 0  # the position was of another cluster: ignored


class CaughtUpFinder:
    """Direct LSN checks on replicas, on probe connections kept for this purpose.

    Checks are single-flight per host: any number of concurrent ``ask``
    calls (every request that just wrote, under load) share the one check in
    flight on each replica, whose prober owns one connection. A caller that
    gives up stops waiting for the check but leaves it running to its own
    probe timeout, for the callers still waiting.

    Held state is bounded: :meth:`retain` lets go of the hosts that left the
    cluster, and at most ``MAX_HOSTS`` connections are kept (the least
    recently asked host's goes first). A check that raises (a bug) is
    reported to ``supervisor`` (logged once at ERROR, counted) and counts as
    "not caught up"; no new check starts until its backoff has passed.
    After :meth:`close`, every call raises :class:`ResolverClosedError`.
    """

    def __init__(
        self,
        options: ConnectOptions,
        driver: ProbeDriver,
        timeout: float,
        tracer: Tracer | None = None,
        supervisor: Supervisor | None = None,
    ) -> None:
        self._supervisor = supervisor or Supervisor(tracer)
        self._closed = False
        self._retiring: set[asyncio.Task[None]] = set()
        self._options = options
        self._tracer = tracer  # already guarded (topology.trace.guarded)
        self._driver = driver
        self._timeout = timeout
        self._probers: dict[str, HostProber] = {}
        self._checks: dict[str, asyncio.Task[int | None]] = {}
        self.stats = CaughtUpStats()

    def served(self, kind: ReadKind, host: str, started: float) -> str:
        """Count (and trace) how a read after a write was served; returns ``host``."""
        stats = self.stats
        if kind == "snapshot":
            stats.from_snapshot += 1
        elif kind == "waited":
            stats.waited += 1
        elif kind == "primary":
            stats.to_primary += 1
        else:
            stats.other_cluster += 1
        if self._tracer is not None:
            self._tracer(ReadAfterWrite(kind, host, time.monotonic() - started))
        return host

    def from_snapshot(
        self, snapshot: Snapshot, candidates: Iterable[str], target: int
    ) -> str | None:
        if self._closed:
            raise ResolverClosedError()
        for host in candidates:
            lsn = snapshot[host].lsn
            if lsn is not None and lsn >= target:
                return host
        return None

    async def ask(self, candidates: tuple[str, ...], target: int, deadline: float) -> str | None:
        """Poll ``candidates`` until one has replayed ``target`` or ``deadline`` passes."""
        while candidates:
            if self._closed:
                raise ResolverClosedError()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            if not self._supervisor.ready(CHECKS):  # a check died: wait out its backoff
                await asyncio.sleep(min(POLL_EVERY, remaining))
                continue
            checks = {host: self._check(host) for host in candidates}
            done, _ = await asyncio.wait(checks.values(), timeout=remaining)
            for host, task in checks.items():
                if task in done and not task.cancelled() and (task.result() or -1) >= target:
                    return host
            await asyncio.sleep(min(POLL_EVERY, max(deadline - time.monotonic(), 0)))
        return None

    def _check(self, host: str) -> asyncio.Task[int | None]:
        task = self._checks.get(host)
        if task is None or task.done():
            task = asyncio.create_task(self._supervised(host), name=f"topology-caught-up {host}")
            self._checks[host] = task
        return task

    async def _supervised(self, host: str) -> int | None:
        """:meth:`_replayed`, with a death reported and counted as "not caught up"."""
        try:
            return await self._replayed(host)
        except Exception as exc:
            self._supervisor.died(CHECKS, exc, f"the caught-up check of {host}")
            return None

    async def _replayed(self, host: str) -> int | None:
        prober = self._probers.pop(host, None)
        if prober is None:
            # No retries: the caller polls again, within its own deadline.
            prober = HostProber(
                parse_host(host), self._options, self._driver, timeout=self._timeout, retries=0
            )
        self._probers[host] = prober  # last asked: last to be let go
        self._bound()
        result = await prober.probe()
        return result.lsn if result.in_recovery else None

    def _bound(self) -> None:
        """Let go of the least recently asked hosts beyond ``MAX_HOSTS`` (idle ones only)."""
        excess = len(self._probers) - MAX_HOSTS
        for host in list(self._probers):
            if excess <= 0:
                return
            check = self._checks.get(host)
            if check is None or check.done():
                self._let_go(host)
                excess -= 1

    def retain(self, hosts: Iterable[str]) -> None:
        """Only ``hosts`` are the cluster's now: close the connections to the others.

        Never blocks: the connections close in tracked tasks (within the probe
        timeout); their checks in flight are cancelled.
        """
        kept = set(hosts)
        for host in [h for h in {*self._probers, *self._checks} if h not in kept]:
            self._let_go(host)

    def _let_go(self, host: str) -> None:
        check = self._checks.pop(host, None)
        if check is not None and not check.done():
            check.cancel()
        prober = self._probers.pop(host, None)
        if prober is not None:
            closing = asyncio.ensure_future(prober.close(self._timeout))
            self._retiring.add(closing)
            closing.add_done_callback(self._retiring.discard)

    @property
    def hosts(self) -> tuple[str, ...]:
        """The replicas this finder keeps a connection (or a check) for."""
        return tuple(dict.fromkeys([*self._probers, *self._checks]))

    async def close(self, timeout: float) -> None:
        """Cancel the checks and close every connection within ``timeout`` s; for good."""
        self._closed = True
        checks, self._checks = list(self._checks.values()), {}
        for task in checks:
            task.cancel()
        await asyncio.gather(*checks, return_exceptions=True)
        probers, self._probers = list(self._probers.values()), {}
        await asyncio.gather(*(prober.close(timeout) for prober in probers))
        if self._retiring:
            await asyncio.wait(self._retiring, timeout=timeout)
