"""The promotion watch: replicas tell the probe loop the moment they leave recovery.

Between two rounds the probe connection of every replica is idle, and a
replica promoted then is seen only at the next round: up to ``interval``
later, and a frozen primary fails nothing by itself to start an earlier one.
So while the loop rests, each replica's probe connection runs one statement
(:func:`watch_statement`) that checks ``pg_is_in_recovery()`` every ``step``
seconds *on the server* and ends the moment it turns false, or when the rest
is over; the probe query follows at once. When the replica's WAL receiver,
running when the watch began, is gone (its upstream went away, or a
promotion under way stopped it), the checks come every millisecond for
``LOST_GRACE`` (0.3 s): a promotion then is seen at once; without one the
watch ends, and any watch that ends early wakes the loop, which finds the
primary gone (a primary that stopped or crashed, with no traffic to say
so). The news comes on a connection already open: no login, no round of
every host.

Why a ``DO`` block that commits after each check, not one long ``SELECT``:
a statement holds a snapshot while it runs, and on a standby without
``hot_standby_feedback`` the startup process then stops replaying WAL that
removes rows the snapshot might see (a recovery conflict) until the
statement ends: measured here, a 1 s ``SELECT`` loop kept the replica
150-350 kB behind under updates and vacuum, the ``DO`` loop 0. A ``COMMIT``
inside a ``DO`` block drops the portal's snapshot too (PostgreSQL 14+), so
a snapshot lives only during each check.

A backend in ``pg_sleep`` does not read its socket, so each probe
connection turns on ``client_connection_check_interval`` (100 ms,
PostgreSQL 14+) before its first watch (:data:`ARM_STATEMENT`): a watch
whose client went away ends within that, not at its end.

Cost, per replica and per process: the probe connection it already had (no
other), one statement per rest, and a server backend that wakes every
``step``. Each check costs the server 50-200 us of CPU (PL/pgSQL, the
commit, a cold cache after the sleep), measured from /proc/PID/schedstat on
PostgreSQL 15 here: 1.3-1.6 % of one core at the default 10 ms, 5.6 % at 1 ms
(docs/performance.md §5). The default is for fleets (20 processes: 40 % of
a core per replica); a few processes may choose 1 ms. PostgreSQL rounds a
latch wait up to whole milliseconds, so ``pg_sleep`` gets ``step - 0.5 ms``:
1 ms means a check every ~1.2 ms, not every 2.

:class:`Watches` owns the watch tasks of one probe loop. A round takes a
finished watch's result as that host's probe and leaves a host whose watch
still runs out (its state carries over: its news, if any, wakes the loop
at once). Cancelling a watch terminates its connection, so the loop cancels
them only when it closes or a host is removed. A rest shorter than
``MIN_REST`` (a burst of rounds during a failover) starts no watch of its
length: each replica is watched for ``BURST_WATCH`` instead, every
``FAST_STEP``, across the rounds, which leave a watched host out (measured:
a stopped primary's replica, probed by the burst's rounds, was seen writable
8-24 ms after the oracle's first commit; the watch sees it within ~1 ms).

Example::

    watches = Watches(step=0.01, wake=loop.wake)
    watches.start(probers_of_replicas, seconds=0.9)
    task = watches.take("db2:5432")  # None, BUSY, or a finished task
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Iterable
from typing import Final, Protocol

from topology.probing.result import ProbeResult

__all__ = ["ARM_STATEMENT", "BURST_WATCH", "BUSY", "MIN_REST", "Watches", "watch_statement"]

log = logging.getLogger("topology")

MIN_REST = 0.05  # a rest shorter than this runs no watch (bursts, fast rounds)
MARGIN = 0.02  # a watch ends this long before the round that follows it
SLEEP_SHORTFALL = 0.0005  # PostgreSQL waits whole milliseconds: see the docstring
EARLY = 0.03  # a watch ending this long before its time ended for a reason
# Once the replica's WAL receiver is gone, a promotion is likely (Patroni's, or
# the promotion itself stops the receiver): check every FAST_STEP for
# LOST_GRACE, then end the watch, so the loop looks at the primary.
FAST_STEP = 0.001
LOST_GRACE = 0.3
# While a failover is under way the loop rests only milliseconds between
# rounds: each replica is watched meanwhile, for this long, checking every
# FAST_STEP (a promotion is what the burst is waiting for; the cost lasts as
# long as the burst).
BURST_WATCH = 0.25
BUSY: Final = "busy"

# Every name is schema-qualified and no operator is written, as in the probe
# query (topology.probing.result): a search_path cannot redirect any of it. The two
# numbers are ours (settings), never a peer's.
_STATEMENT = """\
DO $topology_watch$
DECLARE
    stop pg_catalog.timestamptz := pg_catalog.timestamptz_pl_interval(
        pg_catalog.clock_timestamp(), pg_catalog.make_interval(secs => {seconds}));
    fed pg_catalog.bool := EXISTS (
        SELECT FROM pg_catalog.pg_stat_get_wal_receiver() w WHERE w.pid IS NOT NULL);
    lost pg_catalog.timestamptz;
BEGIN
    WHILE pg_catalog.pg_is_in_recovery()
          AND pg_catalog.timestamptz_lt(pg_catalog.clock_timestamp(), stop) LOOP
        IF fed AND lost IS NULL AND NOT EXISTS (
                SELECT FROM pg_catalog.pg_stat_get_wal_receiver() w WHERE w.pid IS NOT NULL) THEN
            lost := pg_catalog.clock_timestamp();
        END IF;
        EXIT WHEN lost IS NOT NULL AND pg_catalog.timestamptz_lt(
            pg_catalog.timestamptz_pl_interval(lost, pg_catalog.make_interval(secs => {grace})),
            pg_catalog.clock_timestamp());
        PERFORM pg_catalog.pg_sleep(CASE WHEN lost IS NULL THEN {sleep} ELSE {fast} END);
        COMMIT;
    END LOOP;
END
$topology_watch$"""
# A backend in pg_sleep reads nothing from its socket: without this check a
# watch whose client is gone (terminated, crashed) would run to its end. The
# server arms the check when a statement starts, so it is set once per
# connection, before its first watch. PostgreSQL before 14 lacks the setting
# (undefined_object): the watches then run to their end.
CLIENT_CHECK_MS = 100
ARM_STATEMENT = f"""\
DO $topology_watch$
BEGIN
    PERFORM pg_catalog.set_config('client_connection_check_interval', '{CLIENT_CHECK_MS}', false);
EXCEPTION WHEN undefined_object THEN NULL;
END
$topology_watch$"""


def watch_statement(seconds: float, step: float) -> str:
    """The ``DO`` block that ends with recovery or after ``seconds`` (a check every ``step``)."""
    sleep = max(step - SLEEP_SHORTFALL, 0.0001)
    return _STATEMENT.format(
        seconds=f"{max(seconds, 0.0):.6f}",
        sleep=f"{sleep:.6f}",
        fast=f"{FAST_STEP - SLEEP_SHORTFALL:.6f}",
        grace=f"{LOST_GRACE:.3f}",
    )


class Watchable(Protocol):
    """What a watch needs of a prober (:class:`topology.probing.prober.HostProber` has it)."""

    host: str

    @property
    def connected(self) -> bool: ...

    @property
    def held(self) -> bool: ...

    async def watch(self, seconds: float, step: float) -> ProbeResult | None: ...


class Watches:
    """The watch tasks of one probe loop, by host; see the module docstring.

    ``wake()`` is called (on the event loop) when a watch ends because its
    host left recovery. Not thread-safe: used from the loop's event loop.
    """

    def __init__(self, step: float, wake: Callable[[], None]) -> None:
        self.step = step
        self._wake = wake
        self._tasks: dict[str, asyncio.Task[ProbeResult | None]] = {}
        self.ended_at: dict[str, float] = {}  # when each finished watch read its row
        self._due: dict[str, float] = {}  # when each running watch ends if nothing happens
        self.started = 0
        self.promotions = 0  # watches that ended because their host left recovery
        self.early = 0  # watches that ended early otherwise (an upstream lost, an error)

    def __contains__(self, host: str) -> bool:
        return host in self._tasks

    def start(
        self, probers: Iterable[Watchable], seconds: float, step: float | None = None
    ) -> None:
        """Watch each of ``probers`` not watched yet for ``seconds``, a check every
        ``step`` (default: this object's) seconds. Never blocks."""
        if seconds < MIN_REST - MARGIN:
            return
        for prober in probers:
            if prober.host in self._tasks or not prober.connected or prober.held:
                continue
            task = asyncio.ensure_future(prober.watch(seconds, step or self.step))
            task.set_name(f"topology-watch-{prober.host}")
            task.add_done_callback(functools.partial(self._ended, prober.host))
            self._tasks[prober.host] = task
            self._due[prober.host] = time.monotonic() + seconds
            self.started += 1

    def _ended(self, host: str, task: asyncio.Task[ProbeResult | None]) -> None:
        now = time.monotonic()
        if self._tasks.get(host) is task:  # not taken yet by a round (see take)
            self.ended_at[host] = now
        due = self._due.pop(host, now)
        if task.cancelled() or task.exception() is not None:
            return
        result = task.result()
        if result is not None and result.ok and result.in_recovery is False:
            self.promotions += 1
            log.debug("watch %s: the host left recovery", host)
            self._wake()
        elif now < due - EARLY:
            # Its upstream went away, it failed, or the server cut it short: a
            # round now says which (at most one extra round per rest).
            self.early += 1
            log.debug("watch %s ended %.0f ms early", host, (due - now) * 1000)
            self._wake()

    def take(self, host: str) -> asyncio.Task[ProbeResult | None] | str | None:
        """The host's finished watch (removed), ``BUSY`` while it runs, None without one."""
        task = self._tasks.get(host)
        if task is None:
            return None
        if not task.done():
            return BUSY
        del self._tasks[host]
        # Its done callback may not have run yet (callbacks are scheduled, not called).
        self.ended_at.setdefault(host, time.monotonic())
        return task

    def cancel(self, hosts: Iterable[str] | None = None) -> list[asyncio.Task[ProbeResult | None]]:
        """Cancel the watches of ``hosts`` (all by default); returns them, to be awaited."""
        names = list(self._tasks) if hosts is None else [h for h in hosts if h in self._tasks]
        cancelled = [self._tasks.pop(host) for host in names]
        for host in names:
            self._due.pop(host, None)
        for task in cancelled:
            task.cancel()
        return cancelled
